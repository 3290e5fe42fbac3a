//! `ipscope` subcommands for drug-evaluation statistics: `qc`, `normalize`, `curve`, `report`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ipscope::analysis::report;
use ipscope::stats::curve::{
    fit, fit_joint, relative_potency, CurveFit, JointFit, Model, RelativePotency,
};
use ipscope::stats::input::{distinct, group_keys, numeric, read_any};
use ipscope::stats::normalize::{normalize, NormalizeOptions};
use ipscope::stats::plate::{curves_table_with_potencies, qc_table, CurveRow, PotencyCell};
use ipscope::stats::qc::plate_qc;
use ipscope::table::arrow_array::{Float64Array, RecordBatch};
use ipscope::table::{Field, Format, TableBuilder};

/// The table, readout and control wells shared by `qc` and `normalize`.
#[derive(Args)]
pub struct ControlArgs {
    /// Table (CSV, Parquet or Arrow), e.g. an ipscope Wells table.
    table: PathBuf,
    /// Readout column.
    #[arg(long)]
    value: String,
    /// Column that names the controls (e.g. Metadata_Role).
    #[arg(long)]
    control_col: String,
    /// Value of the control column for negative controls (0 % NPI).
    #[arg(long)]
    neg: String,
    /// Value of the control column for positive controls (100 % NPI).
    #[arg(long)]
    pos: String,
    /// Group (plate) column; one group "all" without it.
    #[arg(long)]
    by: Option<String>,
}

/// What the positive control does, which names the control-normalised column.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlMode {
    /// Normalised percent inhibition (NPI).
    Inhibition,
    /// Normalised percent activation (NPA).
    Activation,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Plate QC from control wells: Z', robust Z', SSMD, signal/background, signal window, CVs.
    Qc {
        #[command(flatten)]
        controls: ControlArgs,
        /// Print a JSON list of objects (group, z_prime, …).
        #[arg(long)]
        json: bool,
        /// Also write the results: .parquet / .arrow table or .json.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Per-plate normalisation: percent of control, NPI, z-score, robust z, B-score; edge effects.
    Normalize {
        #[command(flatten)]
        controls: ControlArgs,
        /// Well-name column (B02, b2, …).
        #[arg(long, default_value = "Metadata_Well")]
        well_col: String,
        /// Output table (.parquet or .arrow): the input columns plus the normalised ones.
        #[arg(short, long)]
        output: PathBuf,
        /// Print the edge-effect report as JSON.
        #[arg(long)]
        json: bool,
        /// inhibition: the positive control inhibits, write `<value>_NPI`; activation: it
        /// activates, write `<value>_NPA`. Both are 100 (x − mean neg) / (mean pos − mean neg),
        /// 0 % at the negative and 100 % at the positive control.
        #[arg(long, value_enum, default_value = "inhibition")]
        mode: ControlMode,
    },
    /// Dose-response fits (drc models), per group, with SEs, EC50 95 % CI, ED10/50/90.
    Curve {
        /// Table (CSV, Parquet or Arrow).
        table: PathBuf,
        /// Dose column (numeric, ≥ 0; dose 0 allowed).
        #[arg(long)]
        dose: String,
        /// Response column.
        #[arg(long)]
        response: String,
        /// One curve per value of this column.
        #[arg(long)]
        group: Option<String>,
        /// ll4, ll3, ll2, ll5 or w1.4 (drc's LL.4, LL.3, LL.2, LL.5, W1.4).
        #[arg(long, default_value = "ll4")]
        model: String,
        /// Group whose EC50 the others' potencies are relative to (drc's EDcomp on the joint
        /// fit of all groups); default: the first group in sorted order.
        #[arg(long)]
        reference: Option<String>,
        /// Parameters common to all groups in one joint fit, comma-separated drc names (e.g.
        /// `c,d` for shared lower and upper limits, drc's `pmodels`); default: none shared.
        #[arg(long, value_delimiter = ',')]
        shared: Vec<String>,
        /// Print a JSON list of fits.
        #[arg(long)]
        json: bool,
        /// Also write the fits as a table (.parquet / .arrow) or .json.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Self-contained HTML report of a run's output directory.
    Report {
        /// Output directory of `ipscope run` (Wells table, manifest.json, …).
        out_dir: PathBuf,
        /// HTML file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Wells column for the heatmaps and control plots (repeatable).
        #[arg(long = "metric")]
        metrics: Vec<String>,
        /// Readout to draw dose-response curves for (repeatable).
        #[arg(long = "curve-readout")]
        curve_readouts: Vec<String>,
    },
}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Qc {
            controls:
                ControlArgs {
                    table,
                    value,
                    control_col,
                    neg,
                    pos,
                    by,
                },
            json,
            output,
        } => {
            let t = load(&table)?;
            let qc = plate_qc(&t, &value, &control_col, &neg, &pos, by.as_deref())
                .with_context(|| format!("plate QC of {}", table.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&qc)?);
            } else {
                let o = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
                println!(
                    "{:<16} {:>5} {:>5} {:>8} {:>10} {:>8} {:>8}  status",
                    "group", "n_neg", "n_pos", "Z'", "robust Z'", "SSMD", "S/B"
                );
                for q in &qc {
                    println!(
                        "{:<16} {:>5} {:>5} {:>8} {:>10} {:>8} {:>8}  {}",
                        q.group,
                        q.negative.n,
                        q.positive.n,
                        o(q.z_prime),
                        o(q.robust_z_prime),
                        o(q.ssmd),
                        o(q.signal_to_background),
                        q.status
                    );
                }
            }
            if let Some(out) = output {
                if is_json(&out) {
                    write_json(&out, &serde_json::to_value(&qc)?)?;
                } else {
                    let rows: Vec<_> = qc.iter().map(|q| (value.clone(), q.clone())).collect();
                    write_batch(&out, &qc_table(&rows)?)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Normalize {
            controls:
                ControlArgs {
                    table,
                    value,
                    control_col,
                    neg,
                    pos,
                    by,
                },
            well_col,
            output,
            json,
            mode,
        } => {
            let t = load(&table)?;
            let n = normalize(
                &t,
                &NormalizeOptions {
                    value: &value,
                    control_col: &control_col,
                    neg: &neg,
                    pos: &pos,
                    by: by.as_deref(),
                    well_col: &well_col,
                },
            )
            .with_context(|| format!("normalising {}", table.display()))?;
            let mut b = TableBuilder::new();
            for (field, array) in t.schema_ref().fields().iter().zip(t.columns()) {
                b.array(field.as_ref().clone(), array.clone());
            }
            for (suffix, values, doc) in [
                ("PercentOfControl", &n.percent_of_control, "100 x / mean(negative)"),
                match mode {
                    ControlMode::Inhibition => ("NPI", &n.npi, "Normalised percent inhibition 100 (mean neg - x) / (mean neg - mean pos): 0 % at the negative, 100 % at the positive (inhibitor) control; cellHTS2's NPI fraction is 1 - NPI / 100"),
                    ControlMode::Activation => ("NPA", &n.npi, "Normalised percent activation 100 (x - mean neg) / (mean pos - mean neg): 0 % at the negative, 100 % at the positive (activator) control"),
                },
                ("ZScore", &n.z_score, "(x - mean) / SD of the plate's sample wells"),
                ("RobustZ", &n.robust_z, "(x - median) / (1.4826 MAD) of the plate's sample wells"),
                ("BScore", &n.b_score, "Median-polish residual / (1.4826 MAD of residuals) (Brideau 2003)"),
            ] {
                b.array(
                    Field::new(format!("{value}_{suffix}"), ipscope::table::DataType::Float64, true),
                    Arc::new(Float64Array::from(
                        values
                            .iter()
                            .map(|v| (!v.is_nan()).then_some(*v))
                            .collect::<Vec<_>>(),
                    )),
                )
                .doc(doc);
            }
            write_batch(&output, &b.finish()?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&n.edges)?);
            } else {
                for e in &n.edges {
                    let o = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
                    println!(
                        "{}: {}x{} plate; edge - inner {} (p {}), row trend {}, column trend {}{}",
                        e.group,
                        e.rows,
                        e.cols,
                        o(e.edge_minus_inner),
                        o(e.edge_p_value),
                        o(e.row_trend),
                        o(e.col_trend),
                        if e.flags.is_empty() {
                            String::new()
                        } else {
                            format!("  FLAGS: {}", e.flags.join(", "))
                        }
                    );
                }
                println!("wrote {}", output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Curve {
            table,
            dose,
            response,
            group,
            model,
            reference,
            shared,
            json,
            output,
        } => {
            let model: Model = model.parse()?;
            let t = load(&table)?;
            let doses = numeric(&t, &dose)
                .with_context(|| format!("dose column of {}", table.display()))?;
            let responses = numeric(&t, &response)
                .with_context(|| format!("response column of {}", table.display()))?;
            let keys = group_keys(&t, group.as_deref())?;
            let groups = distinct(&keys);
            let points: Vec<(Vec<f64>, Vec<f64>)> = groups
                .iter()
                .map(|g| {
                    (0..doses.len())
                        .filter(|&i| &keys[i] == g)
                        .map(|i| (doses[i], responses[i]))
                        .unzip()
                })
                .collect();
            let mut fits: Vec<(String, CurveFit)> = groups
                .iter()
                .zip(&points)
                .map(|(g, (x, y))| (g.clone(), fit(x, y, model)))
                .collect();
            let shared_fit = if shared.is_empty() {
                None
            } else {
                let data: Vec<(&[f64], &[f64])> = points
                    .iter()
                    .map(|(x, y)| (x.as_slice(), y.as_slice()))
                    .collect();
                let separate: Vec<CurveFit> = fits.iter().map(|(_, f)| f.clone()).collect();
                let names: Vec<&str> = shared.iter().map(|s| s.trim()).collect();
                let joint = fit_joint(&data, &separate, model, &names).with_context(|| {
                    format!(
                        "joint fit of {} with shared {}",
                        table.display(),
                        names.join(", ")
                    )
                })?;
                for ((_, f), jf) in fits.iter_mut().zip(&joint.fits) {
                    *f = jf.clone();
                }
                Some(joint)
            };
            let reference = match reference {
                Some(r) => {
                    if !groups.contains(&r) {
                        bail!(
                            "--reference {r}: no such group (groups: {})",
                            groups.join(", ")
                        );
                    }
                    Some(r)
                }
                None => (groups.len() > 1).then(|| groups[0].clone()),
            };
            let reference_fit = reference
                .as_ref()
                .and_then(|r| fits.iter().find(|(g, _)| g == r).map(|(_, f)| f));
            let joint = match &shared_fit {
                Some(j) => Some(JointFit {
                    curves: j.fits.len(),
                    rss: j.rss,
                    df: j.df,
                    residual_se: j.residual_se,
                }),
                None => JointFit::of(fits.iter().map(|(_, f)| f)),
            };
            let reference_index = reference
                .as_ref()
                .and_then(|r| groups.iter().position(|g| g == r));
            let out: Vec<GroupFit> = fits
                .iter()
                .enumerate()
                .map(|(gi, (g, f))| GroupFit {
                    group: g.clone(),
                    readout: response.clone(),
                    fit: f,
                    reference: reference.clone(),
                    relative_potency: match (reference_fit, &joint, &shared_fit, reference_index) {
                        (_, _, _, Some(ri)) if ri == gi => None,
                        (_, _, Some(sf), Some(ri)) => sf.relative_potency(gi, ri),
                        (Some(r), Some(j), None, _) => relative_potency(f, r, j),
                        _ => None,
                    },
                })
                .collect();
            let as_json =
                serde_json::Value::Array(out.iter().map(GroupFit::to_json).collect::<Result<_>>()?);
            if json {
                println!("{}", serde_json::to_string_pretty(&as_json)?);
            } else {
                print_fits(&out, reference.as_deref(), joint.as_ref(), &shared);
            }
            if let Some(path) = output {
                if is_json(&path) {
                    write_json(&path, &as_json)?;
                } else {
                    let label = group.as_deref().unwrap_or("Group");
                    let rows: Vec<CurveRow> = fits
                        .iter()
                        .map(|(g, f)| CurveRow {
                            labels: vec![(label, g.clone())],
                            readout: response.clone(),
                            fit: f,
                        })
                        .collect();
                    let potencies: Vec<Option<PotencyCell>> = out
                        .iter()
                        .map(|g| match &g.reference {
                            Some(r) if r != &g.group => Some(PotencyCell {
                                reference: r.clone(),
                                potency: g.relative_potency,
                            }),
                            _ => None,
                        })
                        .collect();
                    write_batch(
                        &path,
                        &curves_table_with_potencies(&[label], &rows, &potencies)?,
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report {
            out_dir,
            output,
            metrics,
            curve_readouts,
        } => {
            let options = report::ReportOptions {
                metrics,
                curve_readouts,
                title: None,
                overlays: ipscope::analysis::overlays_in_dir(&out_dir),
            };
            let written = report::write_report(&out_dir, &output, &options)
                .with_context(|| format!("report of {}", out_dir.display()))?;
            println!("wrote {} ({} bytes)", written.path.display(), written.bytes);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One group's fit.
struct GroupFit<'a> {
    group: String,
    readout: String,
    fit: &'a CurveFit,
    /// EC50 of the reference group / EC50 of this group (> 1: more potent), from the joint fit.
    relative_potency: Option<RelativePotency>,
    reference: Option<String>,
}

impl GroupFit<'_> {
    /// The JSON object printed with `--json`: group, readout, the fit's fields, relative_potency.
    fn to_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(self.fit)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("group".into(), self.group.clone().into());
            obj.insert("readout".into(), self.readout.clone().into());
            let mut rp = serde_json::to_value(self.relative_potency)?;
            if let (Some(o), Some(r)) = (rp.as_object_mut(), &self.reference) {
                o.insert("reference".into(), r.clone().into());
            }
            obj.insert("relative_potency".into(), rp);
        }
        Ok(v)
    }
}

fn print_fits(
    fits: &[GroupFit],
    reference: Option<&str>,
    joint: Option<&JointFit>,
    shared: &[String],
) {
    let o = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.5}"));
    for g in fits {
        let f = g.fit;
        println!(
            "{} [{}]: {} {}",
            g.group,
            f.model,
            f.status.as_str(),
            f.reason
        );
        if let Some(p) = f.params {
            println!(
                "  b {} (SE {})  c {} (SE {})  d {} (SE {})  e {} (SE {}){}",
                o(Some(p.b)),
                o(f.se.b),
                o(Some(p.c)),
                o(f.se.c),
                o(Some(p.d)),
                o(f.se.d),
                o(Some(p.e)),
                o(f.se.e),
                if f.model == Model::Ll5 {
                    format!("  f {} (SE {})", o(Some(p.f)), o(f.se.f))
                } else {
                    String::new()
                }
            );
            println!(
                "  residual SE {} on {} df; n {} ({} dropped)",
                o(f.residual_se),
                f.df,
                f.n,
                f.n_dropped
            );
        }
        if let Some(ec) = f.ec50 {
            println!(
                "  EC50 {} (95% CI {} to {}); ED10 {}; ED90 {}; HillSlope {}; LogEC50 {}",
                o(Some(ec.estimate)),
                o(ec.lower),
                o(ec.upper),
                o(f.ed10.map(|e| e.estimate)),
                o(f.ed90.map(|e| e.estimate)),
                o(f.hill_slope),
                o(f.log_ec50)
            );
        }
        if let (Some(r), Some(name)) = (g.relative_potency, reference) {
            println!(
                "  potency relative to {name}: {} (SE {}, 95% CI {} to {}, p {:.3e} for ratio 1)",
                o(Some(r.ratio)),
                o(Some(r.se)),
                o(Some(r.lower)),
                o(Some(r.upper)),
                r.p_value
            );
        }
    }
    if let (Some(j), Some(_)) = (joint, reference) {
        println!(
            "joint fit ({} curves, {}): residual SE {} on {} df",
            j.curves,
            if shared.is_empty() {
                "separate parameters".to_string()
            } else {
                format!("shared {}", shared.join(", "))
            },
            o(Some(j.residual_se)),
            j.df
        );
    }
}

fn load(path: &Path) -> Result<RecordBatch> {
    read_any(path).with_context(|| format!("reading {}", path.display()))
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn write_batch(path: &Path, batch: &RecordBatch) -> Result<()> {
    let Some(format) = Format::from_path(path) else {
        bail!(
            "{}: write .parquet, .arrow or .json (the extension picks the format)",
            path.display()
        );
    };
    ipscope::table::write_table(path, batch.schema(), std::slice::from_ref(batch), format)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
