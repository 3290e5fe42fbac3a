//! `ipscope train`: fits a colony classifier (logistic regression on standardised colony
//! features, `ipscope::colony_model`) to a `Colonies` table and a CSV of labels, prints its
//! k-fold cross-validated accuracy and writes the model as JSON.
//!
//! Labels CSV: a `Grade` column (`undifferentiated`, `differentiating`, `too_small`) and the
//! colony's key, either `Metadata_Well,Metadata_Site,ObjectNumber` (stable across runs of
//! the same plate; `Metadata_Plate` too when the table holds several plates) or
//! `ImageNumber,ObjectNumber` (valid only for the run that wrote the table).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ipscope::colony_model::{default_features, ColonyModel};
use ipscope::core::assays::colonies::Grade;
use ipscope::table::arrow_array::cast::AsArray;
use ipscope::table::arrow_array::{Array, RecordBatch};
use ipscope::table::DataType;

#[derive(Args)]
pub struct Cmd {
    /// The Colonies table of a run (Colonies.parquet or .arrow).
    #[arg(long)]
    table: PathBuf,
    /// CSV with Grade and Metadata_Well,Metadata_Site,ObjectNumber (or ImageNumber,ObjectNumber).
    #[arg(long)]
    labels: PathBuf,
    /// Where to write the model (JSON).
    #[arg(short, long)]
    output: PathBuf,
    /// Folds of the cross-validation.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Feature columns to use (comma-separated); default: all colony features ipscope knows.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// A numeric column of the Colonies table as f64 (null → NaN), naming the file on error.
fn column_f64(b: &RecordBatch, name: &str, table: &Path) -> Result<Vec<f64>> {
    ipscope::stats::input::numeric(b, name).with_context(|| table.display().to_string())
}

fn column_str(b: &RecordBatch, name: &str) -> Option<Vec<String>> {
    let c = b.column_by_name(name)?;
    match c.data_type() {
        DataType::Utf8 => {
            let a = c.as_string::<i32>();
            Some((0..a.len()).map(|i| a.value(i).to_string()).collect())
        }
        DataType::LargeUtf8 => {
            let a = c.as_string::<i64>();
            Some((0..a.len()).map(|i| a.value(i).to_string()).collect())
        }
        _ => None,
    }
}

/// Splits one CSV line (no quoted commas in these files).
fn split(line: &str) -> Vec<String> {
    line.split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect()
}

/// The labels: key → grade, and whether keys are by image number.
fn read_labels(path: &Path) -> Result<(HashMap<String, Grade>, bool, bool)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split(
        lines
            .next()
            .ok_or_else(|| anyhow!("{}: empty labels file", path.display()))?,
    );
    let pos = |n: &str| header.iter().position(|h| h == n);
    let grade_col = pos("Grade").ok_or_else(|| anyhow!("{}: no Grade column", path.display()))?;
    let object =
        pos("ObjectNumber").ok_or_else(|| anyhow!("{}: no ObjectNumber column", path.display()))?;
    let by_image = pos("ImageNumber");
    let (well, site, plate) = (
        pos("Metadata_Well"),
        pos("Metadata_Site"),
        pos("Metadata_Plate"),
    );
    if by_image.is_none() && (well.is_none() || site.is_none()) {
        bail!(
            "{}: needs ImageNumber,ObjectNumber or Metadata_Well,Metadata_Site,ObjectNumber columns",
            path.display()
        );
    }
    let mut out = HashMap::new();
    for (i, line) in lines.enumerate() {
        let f = split(line);
        let cell = |k: usize| -> Result<&str> {
            f.get(k)
                .map(String::as_str)
                .ok_or_else(|| anyhow!("{} line {}: too few fields", path.display(), i + 2))
        };
        let g = cell(grade_col)?;
        let grade = Grade::parse(g).ok_or_else(|| {
            anyhow!(
                "{} line {}: grade {g:?} is not undifferentiated, differentiating or too_small",
                path.display(),
                i + 2
            )
        })?;
        let obj: u32 = cell(object)?.parse().map_err(|_| {
            anyhow!(
                "{} line {}: ObjectNumber is not a number",
                path.display(),
                i + 2
            )
        })?;
        let key = match by_image {
            Some(k) => format!("{}/{obj}", cell(k)?),
            None => {
                let p = match plate {
                    Some(k) => cell(k)?.to_string(),
                    None => String::new(),
                };
                let (w, s) = (well.unwrap_or(0), site.unwrap_or(0));
                format!("{p}/{}/{}/{obj}", cell(w)?, cell(s)?)
            }
        };
        out.insert(key, grade);
    }
    Ok((out, by_image.is_some(), plate.is_some()))
}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    let (schema, batches) = ipscope::table::read_table(&cmd.table)
        .with_context(|| format!("reading {}", cmd.table.display()))?;
    let b = ipscope::table::concat(&schema, &batches)
        .with_context(|| format!("reading {}", cmd.table.display()))?;
    let (labels, by_image, with_plate) = read_labels(&cmd.labels)?;
    let features = if cmd.features.is_empty() {
        default_features()
    } else {
        cmd.features.clone()
    };
    let cols: Vec<Vec<f64>> = features
        .iter()
        .map(|n| column_f64(&b, n, &cmd.table))
        .collect::<Result<_>>()?;
    let objects = column_f64(&b, "ObjectNumber", &cmd.table)?;
    let keys: Vec<String> = if by_image {
        let images = column_f64(&b, "ImageNumber", &cmd.table)?;
        images
            .iter()
            .zip(&objects)
            .map(|(i, o)| format!("{i}/{o}"))
            .collect()
    } else {
        let wells = column_str(&b, "Metadata_Well")
            .ok_or_else(|| anyhow!("{}: no Metadata_Well column", cmd.table.display()))?;
        let sites = column_f64(&b, "Metadata_Site", &cmd.table)?;
        let plates = if with_plate {
            column_str(&b, "Metadata_Plate")
                .ok_or_else(|| anyhow!("{}: no Metadata_Plate column", cmd.table.display()))?
        } else {
            vec![String::new(); b.num_rows()]
        };
        (0..b.num_rows())
            .map(|i| format!("{}/{}/{}/{}", plates[i], wells[i], sites[i], objects[i]))
            .collect()
    };
    let mut rows = Vec::new();
    let mut grades = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(g) = labels.get(k) {
            rows.push(cols.iter().map(|c| c[i]).collect::<Vec<f64>>());
            grades.push(*g);
        }
    }
    if rows.is_empty() {
        bail!(
            "none of the {} labels in {} matches a colony of {}",
            labels.len(),
            cmd.labels.display(),
            cmd.table.display()
        );
    }
    let cv = ColonyModel::cross_validate(&features, &rows, &grades, cmd.folds)
        .context("cross-validating the colony model")?;
    let mut model =
        ColonyModel::train(&features, &rows, &grades).context("training the colony model")?;
    model.cv_accuracy = Some(cv.accuracy);
    model.cv_folds = Some(cv.folds);
    model
        .save(&cmd.output)
        .with_context(|| format!("writing {}", cmd.output.display()))?;
    if cmd.json {
        println!(
            "{}",
            serde_json::json!({
                "labelled": rows.len(),
                "labels": labels.len(),
                "features": features,
                "cv_folds": cv.folds,
                "cv_accuracy": cv.accuracy,
                "model": cmd.output,
            })
        );
    } else {
        println!(
            "trained on {} labelled colonies ({} labels), {} features",
            rows.len(),
            labels.len(),
            features.len()
        );
        println!(
            "{}-fold cross-validated accuracy: {:.4} ({}/{})",
            cv.folds, cv.accuracy, cv.correct, cv.total
        );
        println!("model written to {}", cmd.output.display());
    }
    Ok(ExitCode::SUCCESS)
}
