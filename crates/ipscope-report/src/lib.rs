//! The self-contained HTML report of a run, built from its tables and manifest only.
//!
//! One file, no network: inline CSS, inline SVG charts and a few lines of inline script. It
//! shows provenance (manifest), plate QC (Z′ and control distributions per plate), plate
//! heatmaps of chosen metrics (96, 384 or 1536 wells), dose-response curves with their points
//! and 95 % confidence bands, colony grade composition and example overlays when the run has
//! them, and QC flags with the excluded fields. Every string from a table or the layout is
//! HTML-escaped.
//!
//! The curves and QC numbers come from `ipscope-stats` applied to the Wells table, the same
//! functions that write the run's Curves and Qc tables, so the report and the tables agree.

mod rescue;
mod sections;
mod svg;
mod traces;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ipscope_stats::curve::Model;
use ipscope_stats::input::{has_column, numeric, text};
use ipscope_stats::normalize::{normalize, parse_well, plate_shape, NormalizeOptions, WellPos};
use ipscope_stats::plate::{
    has_dose_layout, plate_curves, plate_qc_all, readouts, PlateCurve, PLATE, ROLE,
};
use ipscope_table::{RecordBatch, WrittenFile};

pub use sections::Overlay;
pub use svg::esc;
use svg::num;

/// What can go wrong while building the report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Table(#[from] ipscope_table::Error),
    #[error(transparent)]
    Stats(#[from] ipscope_stats::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Report options.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Wells columns to draw as plate heatmaps and control plots; empty: the object counts and
    /// the median mean intensities.
    pub metrics: Vec<String>,
    /// Readouts to draw dose-response curves for; empty: every readout with a fitted EC50
    /// (at most [`MAX_CURVE_READOUTS`]).
    pub curve_readouts: Vec<String>,
    /// Page title; default `ipscope report — <plate>`.
    pub title: Option<String>,
    /// Example overlays to embed; empty: the PNGs in `<out_dir>/overlays/`, if any.
    pub overlays: Vec<Overlay>,
}

/// Readouts drawn by default.
pub const MAX_CURVE_READOUTS: usize = 4;
const MAX_DEFAULT_METRICS: usize = 4;
const MAX_OVERLAYS: usize = 6;

/// A run's tables, read from its output directory.
pub struct RunTables {
    pub wells: RecordBatch,
    pub image: Option<RecordBatch>,
    pub errors: Option<RecordBatch>,
    /// manifest.json as JSON, when it exists.
    pub manifest: Option<serde_json::Value>,
    pub out_dir: PathBuf,
}

fn find_table(dir: &Path, name: &str) -> Option<PathBuf> {
    ["parquet", "arrow"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

fn read(path: &Path) -> Result<RecordBatch> {
    let (schema, batches) = ipscope_table::read_table(path)?;
    Ok(ipscope_table::concat(&schema, &batches)?)
}

impl RunTables {
    /// Reads `Wells` (required), `Image`, `Errors` and `manifest.json` from `out_dir`.
    pub fn read(out_dir: &Path) -> Result<RunTables> {
        let wells_path = find_table(out_dir, "Wells").ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no Wells.parquet or Wells.arrow (is this an ipscope output directory?)",
                out_dir.display()
            ))
        })?;
        let manifest_path = out_dir.join("manifest.json");
        let manifest = if manifest_path.is_file() {
            let text = fs::read_to_string(&manifest_path).map_err(|source| Error::Io {
                path: manifest_path.clone(),
                source,
            })?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", manifest_path.display())))?,
            )
        } else {
            None
        };
        Ok(RunTables {
            wells: read(&wells_path)?,
            image: find_table(out_dir, "Image").map(|p| read(&p)).transpose()?,
            errors: find_table(out_dir, "Errors")
                .map(|p| read(&p))
                .transpose()?,
            manifest,
            out_dir: out_dir.to_path_buf(),
        })
    }
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#08306b;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
nav{padding:6px 24px;background:#deebf7}nav a{margin-right:14px;color:#08306b}
section{background:#fff;margin:14px 24px;padding:10px 18px;border:1px solid #ddd;border-radius:6px}
h2{font-size:18px;margin:6px 0 10px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}th{background:#f0f0f0}
.charts{display:flex;flex-wrap:wrap;gap:12px}.t{font:bold 12px sans-serif}.ax{font:10px sans-serif;fill:#444}
.axis{stroke:#444}.flag{color:#a50f15}.ok{color:#006d2c}.muted{color:#777}code{font-size:12px}
img.overlay{max-width:320px;border:1px solid #ccc}
"#;

/// Builds the report's HTML.
pub fn render(run: &RunTables, options: &ReportOptions) -> Result<String> {
    let wells = &run.wells;
    let plate_name = if has_column(wells, PLATE) {
        let mut p: Vec<String> = text(wells, PLATE)?.into_iter().flatten().collect();
        p.sort();
        p.dedup();
        p.join(", ")
    } else {
        String::new()
    };
    let title = options
        .title
        .clone()
        .unwrap_or_else(|| format!("ipscope report — {plate_name}"));
    let all_readouts = readouts(wells);
    let metrics: Vec<String> = if options.metrics.is_empty() {
        let mut m: Vec<String> = all_readouts
            .iter()
            .filter(|r| r.starts_with("Count_") || r.contains("Intensity_MeanIntensity"))
            .cloned()
            .collect();
        m.truncate(MAX_DEFAULT_METRICS);
        m
    } else {
        for m in &options.metrics {
            numeric(wells, m)?;
        }
        options.metrics.clone()
    };

    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{CSS}</style></head><body>\
         <header><h1>{}</h1></header><nav><a href=\"#provenance\">Provenance</a><a href=\"#qc\">Plate QC</a>\
         <a href=\"#heatmaps\">Heatmaps</a><a href=\"#curves\">Dose-response</a><a href=\"#rescue\">Rescue</a>\
         <a href=\"#colonies\">Colonies</a><a href=\"#overlays\">Overlays</a><a href=\"#flags\">QC flags</a></nav>",
        esc(&title),
        esc(&title)
    );
    let mut flags: Vec<String> = Vec::new();
    provenance(&mut h, run);
    let has_roles = has_column(wells, ROLE);
    qc_section(&mut h, wells, &metrics, has_roles, &mut flags)?;
    heatmaps(&mut h, wells, &metrics)?;
    curves_section(&mut h, wells, &all_readouts, options, &mut flags)?;
    rescue::section(&mut h, run)?;
    traces::section(&mut h, run)?;
    if !sections::colonies(&mut h, run)? {
        colonies(&mut h, wells)?;
    }
    if !sections::overlays(&mut h, &options.overlays) {
        overlays(&mut h, &run.out_dir);
    }
    flags_section(&mut h, run, &flags)?;
    h.push_str(
        "<footer class=\"muted\" style=\"margin:14px 24px\">Self-contained: no network access. \
         Generated by ipscope-report.</footer>\
         <script>document.body.dataset.ready=\"1\";\
         window.addEventListener(\"load\",function(){var n=0;document.querySelectorAll(\"img.overlay\").forEach(function(i){\
         if(i.complete&&i.naturalWidth>0){n++;}});document.body.dataset.overlays=String(n);});\
         document.querySelectorAll(\"rect.well\").forEach(function(r){r.addEventListener(\"click\",function(){\
         var t=r.querySelector(\"title\");if(t){document.getElementById(\"picked\").textContent=t.textContent;}});});</script>\
         </body></html>\n",
    );
    Ok(h)
}

fn provenance(h: &mut String, run: &RunTables) {
    h.push_str("<section id=\"provenance\"><h2>Provenance</h2>");
    let Some(m) = &run.manifest else {
        h.push_str(
            "<p class=\"muted\">manifest.json is not in the output directory yet (this report was \
             written during the run, before the manifest); <code>ipscope report OUT</code> \
             afterwards embeds the full provenance.</p></section>",
        );
        return;
    };
    let s = |k: &str| m.get(k).map(json_text).unwrap_or_default();
    let _ = write!(
        h,
        "<table><tr><th>ipscope</th><td>{}</td></tr><tr><th>plate</th><td>{}</td></tr>\
         <tr><th>plate directory</th><td>{}</td></tr><tr><th>naming scheme</th><td>{}</td></tr>\
         <tr><th>started</th><td>{}</td></tr><tr><th>finished</th><td>{}</td></tr>\
         <tr><th>command line</th><td><code>{}</code></td></tr><tr><th>channels</th><td>{}</td></tr>\
         <tr><th>inputs</th><td>{} files</td></tr></table>",
        esc(&s("ipscope_version")),
        esc(&s("plate")),
        esc(&s("plate_dir")),
        esc(&s("naming_scheme")),
        esc(&s("started")),
        esc(&s("finished")),
        esc(&m
            .get("command_line")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(json_text).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()),
        esc(&m
            .get("channels")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(json_text).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()),
        m.get("inputs")
            .and_then(|v| v.as_array())
            .map_or(0, |a| a.len()),
    );
    if let Some(outputs) = m.get("outputs").and_then(|v| v.as_array()) {
        h.push_str("<h3>Outputs</h3><table><tr><th>file</th><th>rows</th><th>sha256</th></tr>");
        for o in outputs {
            let g = |k: &str| o.get(k).map(json_text).unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&g("path")),
                esc(&g("rows")),
                esc(&g("sha256"))
            );
        }
        h.push_str("</table>");
    }
    if let Some(w) = m.get("warnings").and_then(|v| v.as_array()) {
        for warning in w {
            let _ = write!(
                h,
                "<p class=\"flag\">warning: {}</p>",
                esc(&json_text(warning))
            );
        }
    }
    h.push_str("</section>");
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", json_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn plates_of(wells: &RecordBatch) -> Result<Vec<String>> {
    Ok(if has_column(wells, PLATE) {
        text(wells, PLATE)?
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect()
    } else {
        vec![String::new(); wells.num_rows()]
    })
}

fn qc_section(
    h: &mut String,
    wells: &RecordBatch,
    metrics: &[String],
    has_roles: bool,
    flags: &mut Vec<String>,
) -> Result<()> {
    h.push_str("<section id=\"qc\"><h2>Plate QC</h2>");
    if !has_roles {
        h.push_str(
            "<p class=\"muted\">The layout has no Metadata_Role column: no control wells, no Z′.</p></section>",
        );
        return Ok(());
    }
    let qc = plate_qc_all(wells, metrics)?;
    h.push_str(
        "<table id=\"qc-table\"><tr><th>plate</th><th>readout</th><th>status</th><th>n neg</th><th>n pos</th>\
         <th>Z′</th><th>robust Z′</th><th>SSMD</th><th>S/B</th><th>SW</th><th>CV neg %</th><th>CV pos %</th></tr>",
    );
    let o = |v: Option<f64>| v.map(num).unwrap_or_else(|| "–".into());
    for (readout, q) in &qc {
        let class = match q.z_prime {
            Some(z) if z >= 0.5 => "ok",
            _ => "flag",
        };
        if q.z_prime.is_some_and(|z| z < 0.5) {
            flags.push(format!(
                "plate {} {readout}: Z′ = {} < 0.5",
                q.group,
                o(q.z_prime)
            ));
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class} zprime\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.group),
            esc(readout),
            esc(&q.status),
            q.negative.n,
            q.positive.n,
            o(q.z_prime),
            o(q.robust_z_prime),
            o(q.ssmd),
            o(q.signal_to_background),
            o(q.signal_window),
            o(q.cv_negative),
            o(q.cv_positive)
        );
    }
    h.push_str("</table><h3>Control distributions</h3><div class=\"charts\">");
    let plates = plates_of(wells)?;
    let roles = text(wells, ROLE)?;
    for (readout, q) in &qc {
        let values = numeric(wells, readout)?;
        let pick = |role: &str| -> Vec<f64> {
            (0..values.len())
                .filter(|&i| plates[i] == q.group && roles[i].as_deref() == Some(role))
                .map(|i| values[i])
                .collect()
        };
        let title = format!(
            "{} {} — Z′ {}",
            q.group,
            short(readout),
            q.z_prime.map(num).unwrap_or_else(|| "–".into())
        );
        h.push_str(&svg::controls(&title, &pick("negative"), &pick("positive")));
    }
    h.push_str("</div>");
    // Edge effects from the normalisation of each metric.
    if has_column(wells, "Metadata_Well") {
        for m in metrics {
            let n = normalize(
                wells,
                &NormalizeOptions {
                    value: m,
                    control_col: ROLE,
                    neg: "negative",
                    pos: "positive",
                    by: has_column(wells, PLATE).then_some(PLATE),
                    well_col: "Metadata_Well",
                },
            );
            if let Ok(n) = n {
                for e in n.edges {
                    for f in e.flags {
                        flags.push(format!("plate {} {m}: {f}", e.group));
                    }
                }
            }
        }
    }
    h.push_str("</section>");
    Ok(())
}

fn short(readout: &str) -> String {
    readout
        .trim_start_matches("Median_")
        .replace("_Intensity_", " ")
        .replace('_', " ")
}

fn heatmaps(h: &mut String, wells: &RecordBatch, metrics: &[String]) -> Result<()> {
    h.push_str("<section id=\"heatmaps\"><h2>Plate heatmaps</h2><p class=\"muted\">Click a well: <span id=\"picked\">–</span></p><div class=\"charts\">");
    if !has_column(wells, "Metadata_Well") {
        h.push_str("<p class=\"muted\">no Metadata_Well column</p></div></section>");
        return Ok(());
    }
    let names = text(wells, "Metadata_Well")?;
    let positions: Vec<Option<WellPos>> = names
        .iter()
        .map(|w| w.as_deref().and_then(parse_well))
        .collect();
    let plates = plates_of(wells)?;
    let mut keys = plates.clone();
    keys.sort();
    keys.dedup();
    for plate in &keys {
        let rows: Vec<usize> = (0..plates.len())
            .filter(|&i| &plates[i] == plate && positions[i].is_some())
            .collect();
        let pos: Vec<WellPos> = rows.iter().filter_map(|&i| positions[i]).collect();
        let Some((nr, nc)) = plate_shape(&pos) else {
            let _ = write!(
                h,
                "<p class=\"flag\">plate {}: wells beyond a 1536-well plate, no heatmap</p>",
                esc(plate)
            );
            continue;
        };
        for m in metrics {
            let values = numeric(wells, m)?;
            let cells: Vec<(usize, usize, f64, String)> = rows
                .iter()
                .filter_map(|&i| {
                    positions[i].map(|p| {
                        (
                            p.row,
                            p.col,
                            values[i],
                            format!(
                                "{} {}: {}",
                                names[i].as_deref().unwrap_or(""),
                                m,
                                num(values[i])
                            ),
                        )
                    })
                })
                .collect();
            h.push_str(&svg::heatmap(
                &format!("{plate} {} ({} wells)", short(m), nr * nc),
                nr,
                nc,
                &cells,
            ));
        }
    }
    h.push_str("</div></section>");
    Ok(())
}

fn curves_section(
    h: &mut String,
    wells: &RecordBatch,
    all_readouts: &[String],
    options: &ReportOptions,
    flags: &mut Vec<String>,
) -> Result<()> {
    h.push_str("<section id=\"curves\"><h2>Dose-response</h2>");
    if !has_dose_layout(wells) {
        h.push_str(
            "<p class=\"muted\">The layout has no Metadata_Compound / Metadata_Concentration / \
             Metadata_Role columns: no dose-response curves in this run.</p></section>",
        );
        return Ok(());
    }
    let curves = plate_curves(wells, all_readouts, Model::Ll4)?;
    let chosen: Vec<String> = if options.curve_readouts.is_empty() {
        // Readouts with the most determined curves first, then the clearest dose effect.
        let mut scored: Vec<(usize, f64, String)> = Vec::new();
        for readout in all_readouts {
            let fits: Vec<&PlateCurve> = curves.iter().filter(|c| &c.readout == readout).collect();
            let ok = fits.iter().filter(|c| c.fit.status.has_ec50()).count();
            let worst_p = fits
                .iter()
                .filter(|c| c.fit.status.has_ec50())
                .filter_map(|c| c.fit.p_no_effect)
                .fold(0.0, f64::max);
            if ok > 0 {
                scored.push((ok, worst_p, readout.clone()));
            }
        }
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)));
        scored
            .into_iter()
            .take(MAX_CURVE_READOUTS)
            .map(|s| s.2)
            .collect()
    } else {
        options.curve_readouts.clone()
    };
    h.push_str(
        "<p>Model LL.4 (drc): f(x) = c + (d − c) / (1 + exp(b (ln x − ln e))), least squares; \
         bands are pointwise 95 % confidence intervals of the mean response (delta method). \
         Vehicle (negative-control) wells are the dose-0 points of every compound.</p><div class=\"charts\">",
    );
    for c in curves.iter().filter(|c| chosen.contains(&c.readout)) {
        let title = format!(
            "{} — {} (EC50 {})",
            c.compound,
            short(&c.readout),
            c.fit
                .ec50_value()
                .map(num)
                .unwrap_or_else(|| c.fit.status.as_str().to_string())
        );
        h.push_str(&svg::curve(&title, &c.doses, &c.responses, &c.fit));
    }
    h.push_str("</div>");
    curve_table(h, &curves);
    for c in &curves {
        if !c.fit.status.has_ec50() && chosen.contains(&c.readout) {
            flags.push(format!(
                "curve {} {}: {} ({})",
                c.compound,
                c.readout,
                c.fit.status.as_str(),
                c.fit.reason
            ));
        }
    }
    h.push_str("</section>");
    Ok(())
}

fn curve_table(h: &mut String, curves: &[PlateCurve]) {
    h.push_str(
        "<details><summary>All fits</summary><table id=\"curve-table\"><tr><th>plate</th><th>compound</th><th>readout</th>\
         <th>status</th><th>EC50</th><th>95 % CI</th><th>HillSlope</th><th>top d</th><th>bottom c</th>\
         <th>residual SE (df)</th><th>relative potency (95 % CI)</th><th>reason</th></tr>",
    );
    let potency = sections::potency_cells(curves);
    for (c, potency) in curves.iter().zip(&potency) {
        let f = &c.fit;
        let p = f.params;
        let ci = f
            .ec50
            .and_then(|e| e.lower.zip(e.upper))
            .map(|(l, u)| format!("{} – {}", num(l), num(u)))
            .unwrap_or_else(|| "–".into());
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{potency}</td><td>{}</td></tr>",
            esc(&c.plate),
            esc(&c.compound),
            esc(&c.readout),
            f.status.as_str(),
            f.ec50_value().map(num).unwrap_or_else(|| "–".into()),
            ci,
            f.hill_slope.map(num).unwrap_or_else(|| "–".into()),
            p.map(|p| num(p.d)).unwrap_or_else(|| "–".into()),
            p.map(|p| num(p.c)).unwrap_or_else(|| "–".into()),
            f.residual_se.map(num).unwrap_or_else(|| "–".into()),
            f.df,
            esc(&f.reason)
        );
    }
    h.push_str("</table></details>");
}

fn colonies(h: &mut String, wells: &RecordBatch) -> Result<()> {
    h.push_str("<section id=\"colonies\"><h2>Colony grades</h2>");
    let grade_cols: Vec<String> = wells
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n.to_ascii_lowercase().contains("grade") && numeric(wells, n).is_ok())
        .collect();
    if grade_cols.is_empty() || !has_column(wells, "Metadata_Well") {
        h.push_str("<p class=\"muted\">no colony data in this run</p></section>");
        return Ok(());
    }
    let names = text(wells, "Metadata_Well")?;
    let plates = plates_of(wells)?;
    let cols: Vec<Vec<f64>> = grade_cols
        .iter()
        .map(|c| numeric(wells, c))
        .collect::<ipscope_stats::Result<_>>()?;
    let bars: Vec<(String, Vec<(String, f64)>)> = (0..wells.num_rows())
        .map(|i| {
            (
                format!("{} {}", plates[i], names[i].as_deref().unwrap_or("")),
                grade_cols
                    .iter()
                    .zip(&cols)
                    .map(|(n, v)| (n.clone(), v[i]))
                    .collect(),
            )
        })
        .collect();
    h.push_str(&svg::stacked("Colony grade composition per well", &bars));
    h.push_str("</section>");
    Ok(())
}

/// base64 (standard alphabet, padded) for inline images.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn overlays(h: &mut String, out_dir: &Path) {
    h.push_str("<section id=\"overlays\"><h2>Example overlays</h2>");
    let dir = out_dir.join("overlays");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.truncate(MAX_OVERLAYS);
    let images: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter_map(|p| {
            fs::read(p).ok().map(|b| {
                (
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    b,
                )
            })
        })
        .collect();
    if images.is_empty() {
        h.push_str("<p class=\"muted\">no overlays in this run</p></section>");
        return;
    }
    h.push_str("<div class=\"charts\">");
    for (name, bytes) in images {
        let _ = write!(
            h,
            "<figure><img class=\"overlay\" alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
            esc(&name),
            base64(&bytes),
            esc(&name)
        );
    }
    h.push_str("</div></section>");
}

fn flags_section(h: &mut String, run: &RunTables, flags: &[String]) -> Result<()> {
    h.push_str("<section id=\"flags\"><h2>QC flags and excluded fields</h2>");
    if flags.is_empty() {
        h.push_str("<p class=\"ok\">No QC flags.</p>");
    } else {
        h.push_str("<ul>");
        for f in flags {
            let _ = write!(h, "<li class=\"flag\">{}</li>", esc(f));
        }
        h.push_str("</ul>");
    }
    let mut excluded: BTreeMap<(String, u64), String> = BTreeMap::new();
    if let Some(image) = &run.image {
        if has_column(image, "Status") && has_column(image, "Metadata_Well") {
            let status = text(image, "Status")?;
            let well = text(image, "Metadata_Well")?;
            let site = if has_column(image, "Metadata_Site") {
                numeric(image, "Metadata_Site")?
            } else {
                vec![f64::NAN; image.num_rows()]
            };
            for i in 0..image.num_rows() {
                if status[i].as_deref() != Some("ok") {
                    excluded.insert(
                        (well[i].clone().unwrap_or_default(), site[i] as u64),
                        status[i].clone().unwrap_or_default(),
                    );
                }
            }
        }
    }
    if let Some(errors) = &run.errors {
        if errors.num_rows() > 0 {
            let well = text(errors, "Metadata_Well")?;
            let site = numeric(errors, "Metadata_Site")?;
            let stage = text(errors, "Stage")?;
            let msg = text(errors, "Message")?;
            for i in 0..errors.num_rows() {
                excluded.insert(
                    (well[i].clone().unwrap_or_default(), site[i] as u64),
                    format!(
                        "{}: {}",
                        stage[i].as_deref().unwrap_or(""),
                        msg[i].as_deref().unwrap_or("")
                    ),
                );
            }
        }
    }
    if excluded.is_empty() {
        h.push_str("<p class=\"ok\" id=\"excluded\">No excluded fields.</p>");
    } else {
        let _ = write!(
            h,
            "<table id=\"excluded\"><tr><th>well</th><th>site</th><th>why</th></tr>"
        );
        for ((w, s), why) in &excluded {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{s}</td><td>{}</td></tr>",
                esc(w),
                esc(why)
            );
        }
        h.push_str("</table>");
    }
    sections::field_qc(h, run)?;
    h.push_str("</section>");
    Ok(())
}

/// Writes `html` to `path` atomically (temporary file in the same folder, then rename) and
/// returns its record for the manifest (rows = 0).
pub fn write_html(path: &Path, html: &str) -> Result<WrittenFile> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("html.tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(html.as_bytes()).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    fs::rename(&tmp, path).map_err(io_err)?;
    Ok(WrittenFile {
        path: path.to_path_buf(),
        rows: 0,
        bytes: html.len() as u64,
        sha256: ipscope_table::sha256_file(path)?,
    })
}

/// Reads the run in `out_dir` and writes its report to `path`.
pub fn write_report(out_dir: &Path, path: &Path, options: &ReportOptions) -> Result<WrittenFile> {
    let run = RunTables::read(out_dir)?;
    let html = render(&run, options)?;
    write_html(path, &html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    /// A 384-well plate whose layout text holds markup: 384 heatmap cells per metric, curves,
    /// and every table string escaped.
    #[test]
    fn plate_384_with_markup_in_the_layout() {
        use ipscope_table::{Format, TableBuilder};
        let mut wells = Vec::new();
        let (mut compound, mut conc, mut role, mut count) = (vec![], vec![], vec![], vec![]);
        for r in 0..16u8 {
            for c in 0..24 {
                wells.push(format!("{}{:02}", (b'A' + r) as char, c + 1));
                let (name, dose, kind) = match c {
                    0 => ("DMSO", 0.0, "negative"),
                    23 => ("STAURO", 1.0, "positive"),
                    _ => (
                        "<b>x</b>",
                        10f64.powf(-3.0 + 5.0 * (c - 1) as f64 / 21.0),
                        "treated",
                    ),
                };
                compound.push(name.to_string());
                conc.push(dose);
                role.push(kind.to_string());
                let x: f64 = if kind == "positive" { 1e3 } else { dose };
                let y = 20.0 + 80.0 / (1.0 + (1.3 * (x.ln() - 0.1f64.ln())).exp());
                count.push((y + ((r as usize * 24 + c) % 7) as f64 - 3.0).round() as u64);
            }
        }
        let mut b = TableBuilder::new();
        b.str("Metadata_Plate", vec!["P<1>".to_string(); wells.len()])
            .str("Metadata_Well", wells)
            .str("Metadata_Compound", compound)
            .f64("Metadata_Concentration", conc)
            .str("Metadata_Role", role)
            .u64("Count_Nuclei", count);
        let batch = b.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        ipscope_table::write_table(
            &dir.path().join("Wells.parquet"),
            batch.schema(),
            &[batch],
            Format::Parquet,
        )
        .unwrap();
        let run = RunTables::read(dir.path()).unwrap();
        let html = render(&run, &ReportOptions::default()).unwrap();
        assert_eq!(html.matches("class=\"well\"").count(), 384);
        assert!(html.contains("(384 wells)"));
        assert!(!html.contains("<b>x</b>") && !html.contains("P<1>"));
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(html.contains("class=\"curve\""));
        assert!(html.contains("no colony data in this run"));
        assert!(html.contains("no overlays in this run"));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
