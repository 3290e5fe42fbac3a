//! The disease-model section: drawn when the run wrote `Compounds` (with `Phenotype`,
//! `Profiles`, `Rescue` and optionally `Similarity`; see `ipscope::disease`).
//!
//! - Phenotype: control vs disease vehicle wells of the top-ranked features (strip plots with
//!   the mean and the Z′ of each feature).
//! - Per compound: % rescue of the primary readout (left axis, blue) and viable count relative
//!   to the disease vehicle (right axis, orange) on one log-dose axis, points and their LL.4
//!   fits, the cytotoxic level dashed.
//! - The ranked compound table with the hit rule written out, and the phenotypic-activity mAP
//!   with its permutation p- and BH q-value when the Similarity table exists.
//!
//! Every name from a table passes through [`esc`].

use std::fmt::Write as _;

use ipscope_stats::curve::{fit, predict, CurveFit, Model};
use ipscope_stats::disease::{detect, Detection};
use ipscope_stats::input::{has_column, numeric, text};
use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::{Array, RecordBatch};

use crate::svg::{esc, num};
use crate::{find_table, read, Result, RunTables};

/// Features drawn in the phenotype panel.
const TOP_FEATURES: usize = 3;
/// Compounds drawn as rescue/toxicity charts (the best ranked).
const MAX_CHARTS: usize = 24;
/// Viable fraction below which a dose counts as cytotoxic (the Compounds table's default).
const CYTOTOXIC_BELOW: f64 = 0.7;

fn bools(t: &RecordBatch, name: &str) -> Vec<bool> {
    match t.column_by_name(name).map(|c| c.as_boolean_opt().cloned()) {
        Some(Some(a)) => (0..a.len()).map(|i| a.is_valid(i) && a.value(i)).collect(),
        _ => vec![false; t.num_rows()],
    }
}

fn strings(t: &RecordBatch, name: &str) -> Result<Vec<String>> {
    Ok(text(t, name)?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// Linear map of [lo, hi] onto pixels [a, b].
#[derive(Clone, Copy)]
struct Scale {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl Scale {
    fn at(&self, v: f64) -> f64 {
        self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)
    }
}

fn padded(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo { 0.08 * (hi - lo) } else { 0.5 };
    Some((lo - pad, hi + pad))
}

/// Strip plot of one feature: disease and control vehicle wells, means as bars.
fn strip(title: &str, subtitle: &str, groups: &[(String, Vec<f64>, &str)]) -> String {
    let (w, h) = (300.0, 210.0);
    let Some((lo, hi)) = padded(groups.iter().flat_map(|g| g.1.iter().copied())) else {
        return String::new();
    };
    let y = Scale {
        lo,
        hi,
        a: h - 26.0,
        b: 38.0,
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="phenotype" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="8" y="14" class="t">{}</text><text x="8" y="26" class="ax">{}</text><line x1="60" y1="{:.2}" x2="60" y2="{:.2}" class="axis"/>"#,
        esc(title),
        esc(title),
        esc(subtitle),
        y.at(lo),
        y.at(hi)
    );
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = write!(
            s,
            r#"<text x="56" y="{:.2}" class="ax" text-anchor="end">{}</text>"#,
            y.at(v) + 3.0,
            num(v)
        );
    }
    for (k, (name, values, colour)) in groups.iter().enumerate() {
        let cx = 120.0 + 110.0 * k as f64;
        let _ = write!(
            s,
            r#"<text x="{cx}" y="{}" class="ax" text-anchor="middle">{} (n={})</text>"#,
            h - 8.0,
            esc(name),
            values.iter().filter(|v| v.is_finite()).count()
        );
        for (i, v) in values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let jitter = ((i * 37) % 17) as f64 - 8.0;
            let _ = write!(
                s,
                r#"<circle class="well-value" cx="{:.2}" cy="{:.2}" r="3" fill="{colour}" fill-opacity="0.7"><title>{}: {}</title></circle>"#,
                cx + 2.0 * jitter,
                y.at(*v),
                esc(name),
                num(*v)
            );
        }
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if !finite.is_empty() {
            let m = finite.iter().sum::<f64>() / finite.len() as f64;
            let _ = write!(
                s,
                r##"<line x1="{}" x2="{}" y1="{:.2}" y2="{:.2}" stroke="#000" stroke-width="2"/>"##,
                cx - 26.0,
                cx + 26.0,
                y.at(m),
                y.at(m)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Rescue (left axis) and viability (right axis) of one compound on a shared log-dose axis.
fn rescue_chart(
    title: &str,
    doses: &[f64],
    rescue: &[f64],
    rescue_fit: &CurveFit,
    viability: &[f64],
    viability_fit: &CurveFit,
) -> String {
    let (w, h) = (380.0, 250.0);
    let pos: Vec<f64> = doses.iter().copied().filter(|d| *d > 0.0).collect();
    let dlo = pos.iter().copied().fold(f64::INFINITY, f64::min);
    let dhi = pos.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !dlo.is_finite() || !dhi.is_finite() {
        return format!("<p>{}: no positive doses</p>", esc(title));
    }
    let (llo, lhi) = (dlo.log10() - 0.3, dhi.log10() + 0.3);
    let x = Scale {
        lo: llo,
        hi: lhi,
        a: 56.0,
        b: w - 52.0,
    };
    let grid: Vec<f64> = (0..=100)
        .map(|i| 10f64.powf(llo + (lhi - llo) * i as f64 / 100.0))
        .collect();
    let curve_of = |f: &CurveFit| -> Vec<(f64, f64)> {
        match f.params {
            Some(p) => grid
                .iter()
                .map(|&d| (d, predict(f.model, &p, d)))
                .filter(|(_, v)| v.is_finite())
                .collect(),
            None => Vec::new(),
        }
    };
    let rc = curve_of(rescue_fit);
    let vc = curve_of(viability_fit);
    let (rlo, rhi) = padded(
        rescue
            .iter()
            .copied()
            .chain(rc.iter().map(|p| p.1))
            .chain([0.0, 100.0]),
    )
    .unwrap_or((-10.0, 110.0));
    let (vlo, vhi) = padded(
        viability
            .iter()
            .copied()
            .chain(vc.iter().map(|p| p.1))
            .chain([0.0, 1.0]),
    )
    .unwrap_or((-0.1, 1.1));
    let (top, bottom) = (26.0, h - 34.0);
    let yr = Scale {
        lo: rlo,
        hi: rhi,
        a: bottom,
        b: top,
    };
    let yv = Scale {
        lo: vlo,
        hi: vhi,
        a: bottom,
        b: top,
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="rescue-curve" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="8" y="14" class="t">{}</text>"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{}" y1="{bottom}" x2="{}" y2="{bottom}" class="axis"/><line x1="{}" y1="{bottom}" x2="{}" y2="{top}" class="axis"/><line x1="{}" y1="{bottom}" x2="{}" y2="{top}" class="axis"/>"#,
        x.a, x.b, x.a, x.a, x.b, x.b
    );
    let mut k = llo.ceil() as i32;
    while (k as f64) <= lhi {
        let _ = write!(
            s,
            r#"<text x="{:.2}" y="{}" class="ax" text-anchor="middle">{}</text>"#,
            x.at(k as f64),
            bottom + 14.0,
            num(10f64.powi(k))
        );
        k += 1;
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="ax" text-anchor="middle">dose</text>"#,
        (x.a + x.b) / 2.0,
        h - 4.0
    );
    for v in [0.0, 50.0, 100.0] {
        if v >= rlo && v <= rhi {
            let _ = write!(
                s,
                r##"<text x="{}" y="{:.2}" class="ax" text-anchor="end" fill="#08519c">{v}%</text>"##,
                x.a - 4.0,
                yr.at(v) + 3.0
            );
        }
    }
    for v in [0.0, 0.5, 1.0] {
        if v >= vlo && v <= vhi {
            let _ = write!(
                s,
                r##"<text x="{}" y="{:.2}" class="ax" fill="#d95f0e">{v}</text>"##,
                x.b + 4.0,
                yv.at(v) + 3.0
            );
        }
    }
    if CYTOTOXIC_BELOW >= vlo && CYTOTOXIC_BELOW <= vhi {
        let yc = yv.at(CYTOTOXIC_BELOW);
        let _ = write!(
            s,
            r##"<line class="cytotoxic-level" x1="{}" x2="{}" y1="{yc:.2}" y2="{yc:.2}" stroke="#d95f0e" stroke-opacity="0.5" stroke-dasharray="2 3"/>"##,
            x.a, x.b
        );
    }
    for (class, pts, scale, colour, f) in [
        ("fit-rescue", &rc, yr, "#08519c", rescue_fit),
        ("fit-viability", &vc, yv, "#d95f0e", viability_fit),
    ] {
        if pts.is_empty() {
            continue;
        }
        let p: Vec<String> = pts
            .iter()
            .map(|(d, v)| {
                format!(
                    "{:.2},{:.2}",
                    x.at(d.log10()),
                    scale.at(*v).clamp(top - 20.0, bottom + 20.0)
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="{class}" points="{}" fill="none" stroke="{colour}" stroke-width="2"{}/>"#,
            p.join(" "),
            // a fit without a determined midpoint is drawn dashed
            if f.status.has_ec50() {
                ""
            } else {
                r#" stroke-dasharray="4 3""#
            }
        );
    }
    for (i, &d) in doses.iter().enumerate() {
        if d <= 0.0 {
            continue;
        }
        let xd = x.at(d.log10());
        if rescue[i].is_finite() {
            let _ = write!(
                s,
                r##"<circle class="pt-rescue" cx="{xd:.2}" cy="{:.2}" r="3" fill="#08519c"><title>dose {}: {} % rescue</title></circle>"##,
                yr.at(rescue[i]),
                num(d),
                num(rescue[i])
            );
        }
        if viability[i].is_finite() {
            let yy = yv.at(viability[i]);
            let _ = write!(
                s,
                r##"<rect class="pt-viability" x="{:.2}" y="{:.2}" width="6" height="6" fill="#d95f0e" fill-opacity="0.8"><title>dose {}: viable {}</title></rect>"##,
                xd - 3.0,
                yy - 3.0,
                num(d),
                num(viability[i])
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" class="ax" fill="#08519c">● % rescue</text><text x="{}" y="{}" class="ax" fill="#d95f0e">■ viable / disease vehicle</text>"##,
        x.a + 4.0,
        top - 2.0,
        x.a + 90.0,
        top - 2.0
    );
    s.push_str("</svg>");
    s
}

/// Writes the section; `false` (nothing written) when the run has no Compounds table.
pub(crate) fn section(h: &mut String, run: &RunTables) -> Result<bool> {
    let dir = &run.out_dir;
    let Some(cpath) = find_table(dir, "Compounds") else {
        return Ok(false);
    };
    h.push_str("<section id=\"rescue\"><h2>Disease phenotype and rescue</h2>");
    let compounds = read(&cpath)?;
    let design = match detect(&run.wells, None)? {
        Detection::Ready(d) => Some(d),
        _ => None,
    };
    if let Some(d) = &design {
        let _ = write!(
            h,
            "<p>Disease line <b>{}</b> and control line <b>{}</b> ({}), vehicle <b>{}</b>.</p>",
            esc(&d.disease),
            esc(&d.control),
            esc(&d.line_col),
            esc(&d.vehicle)
        );
    }

    // Phenotype: top features, control vs disease vehicle wells of the profiles.
    let pheno = find_table(dir, "Phenotype").map(|p| read(&p)).transpose()?;
    let profiles = find_table(dir, "Profiles").map(|p| read(&p)).transpose()?;
    let mut primary: Option<String> = None;
    if let (Some(ph), Some(pr), Some(d)) = (&pheno, &profiles, &design) {
        let feats = strings(ph, "Feature")?;
        let rank = numeric(ph, "Rank")?;
        let zp = numeric(ph, "ZPrime")?;
        let cd = numeric(ph, "CohensD")?;
        let mut top: Vec<usize> = (0..feats.len()).filter(|&i| rank[i] >= 1.0).collect();
        top.sort_by(|&a, &b| rank[a].total_cmp(&rank[b]));
        top.truncate(TOP_FEATURES);
        primary = top.first().map(|&i| feats[i].clone());
        h.push_str("<h3>Phenotype (vehicle wells)</h3><div class=\"charts\" id=\"phenotype\">");
        if has_column(pr, &d.line_col) && has_column(pr, "Metadata_Compound") {
            let line = strings(pr, &d.line_col)?;
            let cmpd = strings(pr, "Metadata_Compound")?;
            for &i in &top {
                if !has_column(pr, &feats[i]) {
                    continue;
                }
                let v = numeric(pr, &feats[i])?;
                let pick = |l: &str| -> Vec<f64> {
                    (0..v.len())
                        .filter(|&r| line[r] == l && cmpd[r] == d.vehicle)
                        .map(|r| v[r])
                        .collect()
                };
                h.push_str(&strip(
                    &feats[i],
                    &format!("Z′ {}, Cohen's d {}", num(zp[i]), num(cd[i])),
                    &[
                        (d.disease.clone(), pick(&d.disease), "#d95f0e"),
                        (d.control.clone(), pick(&d.control), "#2c7fb8"),
                    ],
                ));
            }
        }
        h.push_str("</div>");
    }

    // Compound rows of the primary readout, in rank order.
    let names = strings(&compounds, "Metadata_Compound")?;
    let readout = strings(&compounds, "Readout")?;
    let primary = primary.unwrap_or_else(|| {
        readout
            .iter()
            .find(|r| r.as_str() != ipscope_stats::rescue::ON_TARGET)
            .cloned()
            .unwrap_or_default()
    });
    let rank = numeric(&compounds, "Rank")?;
    let mut rows: Vec<usize> = (0..names.len())
        .filter(|&i| readout[i] == primary)
        .collect();
    rows.sort_by(|&a, &b| rank[a].total_cmp(&rank[b]));

    // Rescue and toxicity curves from the per-well table.
    let rescue_t = find_table(dir, "Rescue").map(|p| read(&p)).transpose()?;
    let rcol = format!("Rescue_Percent_{primary}");
    if let (Some(rt), Some(d)) = (&rescue_t, &design) {
        if has_column(rt, &rcol) && has_column(rt, "Metadata_Concentration") {
            let line = strings(rt, &d.line_col)?;
            let cmpd = strings(rt, "Metadata_Compound")?;
            let conc = numeric(rt, "Metadata_Concentration")?;
            let pct = numeric(rt, &rcol)?;
            let via = if has_column(rt, "Viability_Relative") {
                numeric(rt, "Viability_Relative")?
            } else {
                vec![f64::NAN; pct.len()]
            };
            let _ = write!(
                h,
                "<h3>Rescue and toxicity per compound</h3><p class=\"muted\">% rescue of \
                 <code>{}</code> = 100 · (x − disease vehicle mean) / (control vehicle mean − \
                 disease vehicle mean); viable cells relative to the disease vehicle; lines are \
                 LL.4 fits, the dashed line the cytotoxic level ({}).</p><div class=\"charts\" id=\"rescue-curves\">",
                esc(&primary),
                CYTOTOXIC_BELOW
            );
            for &i in rows.iter().take(MAX_CHARTS) {
                let wells: Vec<usize> = (0..cmpd.len())
                    .filter(|&r| cmpd[r] == names[i] && line[r] == d.disease)
                    .collect();
                let x: Vec<f64> = wells.iter().map(|&r| conc[r]).collect();
                let y: Vec<f64> = wells.iter().map(|&r| pct[r]).collect();
                let v: Vec<f64> = wells.iter().map(|&r| via[r]).collect();
                let rf = fit(&x, &y, Model::Ll4);
                let vf = fit(&x, &v, Model::Ll4);
                h.push_str(&rescue_chart(&names[i], &x, &y, &rf, &v, &vf));
            }
            h.push_str("</div>");
        }
    }

    // Ranked table.
    let hit_rule = strings(&compounds, "HitRule")?;
    if let Some(rule) = hit_rule.first() {
        let _ = write!(h, "<p id=\"hit-rule\"><b>Hit rule:</b> {}</p>", esc(rule));
    }
    let sim = find_table(dir, "Similarity")
        .map(|p| read(&p))
        .transpose()?;
    let sim_rows: Vec<(String, f64, f64, f64)> = match &sim {
        Some(s) => {
            let n = strings(s, "Metadata_Compound")?;
            let m = numeric(s, "mean_average_precision")?;
            let p = numeric(s, "p_value")?;
            let q = numeric(s, "corrected_p_value")?;
            (0..n.len())
                .map(|i| (n[i].clone(), m[i], p[i], q[i]))
                .collect()
        }
        None => Vec::new(),
    };
    let col = |name: &str| -> Result<Vec<f64>> {
        if has_column(&compounds, name) {
            Ok(numeric(&compounds, name)?)
        } else {
            Ok(vec![f64::NAN; compounds.num_rows()])
        }
    };
    let (ec50, lo, hi) = (
        col("Rescue_EC50")?,
        col("Rescue_EC50_Lower")?,
        col("Rescue_EC50_Upper")?,
    );
    let (max, max_nt, tc50, tw, agree) = (
        col("MaxRescue_Percent")?,
        col("MaxRescueNonToxic_Percent")?,
        col("TC50")?,
        col("TherapeuticWindow")?,
        col("ReplicateAgreement")?,
    );
    let hit = bools(&compounds, "Hit");
    let toxic = bools(&compounds, "Cytotoxic");
    let _ = write!(
        h,
        "<table id=\"compounds\"><tr><th>Rank</th><th>Compound</th><th>Readout</th>\
         <th>EC50 (95 % CI)</th><th>Max rescue %</th><th>Max non-toxic %</th><th>TC50</th>\
         <th>TC50 / EC50</th><th>Replicate r</th><th>Cytotoxic</th><th>Hit</th>{}</tr>",
        if sim_rows.is_empty() {
            ""
        } else {
            "<th>Activity mAP</th><th>p</th><th>q (BH)</th>"
        }
    );
    for &i in &rows {
        let _ = write!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td>",
            if hit[i] { "hit" } else { "no-hit" },
            rank[i],
            esc(&names[i]),
            esc(&readout[i]),
            if ec50[i].is_finite() {
                format!("{} ({} – {})", num(ec50[i]), num(lo[i]), num(hi[i]))
            } else {
                "–".to_string()
            },
            num(max[i]),
            num(max_nt[i]),
            num(tc50[i]),
            num(tw[i]),
            num(agree[i]),
            if toxic[i] { "flag" } else { "ok" },
            if toxic[i] { "yes" } else { "no" },
            if hit[i] { "<b>yes</b>" } else { "no" }
        );
        if !sim_rows.is_empty() {
            match sim_rows.iter().find(|s| s.0 == names[i]) {
                Some((_, m, p, q)) => {
                    let _ = write!(
                        h,
                        "<td>{}</td><td>{}</td><td>{}</td>",
                        num(*m),
                        num(*p),
                        num(*q)
                    );
                }
                None => h.push_str("<td>–</td><td>–</td><td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    if !sim_rows.is_empty() {
        h.push_str(
            "<p class=\"muted\">Activity: copairs' mean average precision of retrieving the \
             compound's disease-line wells against the disease vehicle wells (cosine), \
             permutation p-value and Benjamini–Hochberg q-value (Similarity table).</p>",
        );
    }
    h.push_str("</section>");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_escapes_names_and_draws_every_value() {
        let s = strip(
            "<F>",
            "Z′ 0.5",
            &[
                ("<d>".into(), vec![1.0, 2.0, f64::NAN], "#000"),
                ("c&".into(), vec![3.0], "#111"),
            ],
        );
        assert!(!s.contains("<F>") && !s.contains("<d>") && s.contains("&lt;d&gt;"));
        assert!(s.contains("c&amp; (n=1)") && s.contains("&lt;d&gt; (n=2)"));
        assert_eq!(s.matches("class=\"well-value\"").count(), 3);
    }

    #[test]
    fn rescue_chart_shares_the_dose_axis() {
        let d = [0.1, 1.0, 10.0, 0.1, 1.0, 10.0];
        let r = [5.0, 50.0, 95.0, 6.0, 49.0, 96.0];
        let v = [1.0, 0.9, 0.3, 1.0, 0.95, 0.25];
        let s = rescue_chart(
            "X",
            &d,
            &r,
            &fit(&d, &r, Model::Ll4),
            &v,
            &fit(&d, &v, Model::Ll4),
        );
        assert_eq!(s.matches("class=\"pt-rescue\"").count(), 6);
        assert_eq!(s.matches("class=\"pt-viability\"").count(), 6);
        // a rescue point and a viability point of the same dose share their x
        let cx = s.split("class=\"pt-rescue\" cx=\"").nth(1).unwrap();
        let cx: f64 = cx[..cx.find('"').unwrap()].parse().unwrap();
        let rx = s.split("class=\"pt-viability\" x=\"").nth(1).unwrap();
        let rx: f64 = rx[..rx.find('"').unwrap()].parse().unwrap();
        assert!((rx + 3.0 - cx).abs() < 1e-9, "{cx} vs {rx}");
    }
}
