//! Campaigns: many plates run (or merged) into one output tree partitioned by plate, plus
//! campaign-level tables and a campaign report.
//!
//! The tree is hive-style, `OUT/Metadata_Plate=<id>/Nuclei.parquet`, `…/Image.parquet`, … —
//! each partition is an ordinary run output (tables, report, manifest), and DuckDB
//! (`read_parquet('OUT/*/Nuclei.parquet', hive_partitioning = true)`), Polars
//! (`scan_parquet('OUT/*/Nuclei.parquet', hive_partitioning=True)`) and pyarrow
//! (`pyarrow.dataset`, `partitioning="hive"`) read the whole campaign as one data set. The
//! partition key equals the `Metadata_Plate` column inside the files.
//!
//! At the root of `OUT`, computed from the partitions' Wells tables only:
//! - `CampaignWells`: every plate's Wells rows, plates in partition-name order;
//! - `CampaignQc`: control QC per plate and readout, the plates side by side (with a role column);
//! - `CampaignNormalized`: every readout normalised per plate to that plate's controls
//!   (percent of control, NPI, z, robust z, B-score), so plates can be compared;
//! - `CampaignCurves`: one LL.4 fit per compound and readout, pooled over the replicate plates
//!   (treated wells of every plate plus every plate's negative controls at dose 0);
//! - `report.html` (per-plate heatmaps, QC and curves) and `campaign.json` (the plates, the
//!   sha256 of each plate's manifest, the tables with their sha256).
//!
//! A campaign mixes no parameter sets: every partition must come from the same ipscope
//! version, dependencies, parameters, channels and table format (see [`run_identity`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ipscope_stats::curve::Model;
use ipscope_stats::normalize::{normalize, NormalizeOptions};
use ipscope_stats::plate::{
    curves_table, has_dose_layout, plate_curves, plate_qc_all, qc_table, readouts, CurveRow, PLATE,
    ROLE,
};
use ipscope_table::{Format, RecordBatch, TableBuilder, WrittenFile};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;
use crate::pipeline::{hex, Event, Pipeline, RunOptions};
use crate::{Error, Result};

/// Name of the partition key (and of the column it equals).
pub const PARTITION_KEY: &str = "Metadata_Plate";
/// The campaign's own provenance file at the root of the output tree.
pub const CAMPAIGN_FILE: &str = "campaign.json";
/// Campaign tables at the root of the output tree (without extension).
pub const CAMPAIGN_TABLES: [&str; 4] = [
    "CampaignWells",
    "CampaignQc",
    "CampaignNormalized",
    "CampaignCurves",
];

/// `OUT/Metadata_Plate=<plate>`.
pub fn partition_dir(out: &Path, plate: &str) -> PathBuf {
    out.join(format!("{PARTITION_KEY}={plate}"))
}

/// A plate id must be one safe path component to name a partition.
fn check_plate_id(plate: &str, source: &Path) -> Result<()> {
    let bad = plate.is_empty()
        || plate.starts_with('.')
        || plate
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '=' | '\0') || c.is_control());
    if bad {
        return Err(Error::Invalid(format!(
            "{}: plate id {plate:?} cannot name a partition directory (no '/', '\\', '=', leading '.')",
            source.display()
        )));
    }
    Ok(())
}

/// The plate directories a user named: a directory is one plate; a regular file is a list
/// of plate directories, one per line (`#` comments and blank lines skipped, relative paths
/// taken from the list file's directory). With `dirs_of_plates`, a directory is instead a
/// directory of plate directories (its non-hidden subdirectories, sorted by name).
pub fn plate_dirs(args: &[PathBuf], dirs_of_plates: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg).map_err(|e| Error::io(arg, e))?;
        if meta.is_file() {
            let text = std::fs::read_to_string(arg).map_err(|e| Error::io(arg, e))?;
            let base = arg.parent().unwrap_or(Path::new(""));
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let p = base.join(line);
                if !p.is_dir() {
                    return Err(Error::Invalid(format!(
                        "{} line {}: {} is not a plate directory",
                        arg.display(),
                        n + 1,
                        p.display()
                    )));
                }
                out.push(p);
            }
        } else if dirs_of_plates {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(arg)
                .map_err(|e| Error::io(arg, e))?
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            if subs.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: holds no plate directories",
                    arg.display()
                )));
            }
            out.extend(subs);
        } else {
            out.push(arg.clone());
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid("no plate directories given".into()));
    }
    Ok(out)
}

/// What identifies a parameter set: version, dependencies, parameters, channels, format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunIdentity {
    pub ipscope_version: String,
    pub dependencies: std::collections::BTreeMap<String, String>,
    pub parameters: serde_json::Value,
    pub channels: serde_json::Value,
    pub format: String,
}

impl RunIdentity {
    pub fn of(m: &Manifest) -> RunIdentity {
        RunIdentity {
            ipscope_version: m.ipscope_version.clone(),
            dependencies: m.dependencies.clone(),
            parameters: serde_json::to_value(&m.parameters).unwrap_or_default(),
            channels: serde_json::to_value(&m.channels).unwrap_or_default(),
            format: m.format.clone(),
        }
    }

    /// sha256 of the identity's JSON (keys in a fixed order).
    pub fn hash(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        hex(&Sha256::digest(text.as_bytes()))
    }

    /// The first part that differs, in words.
    fn difference(&self, other: &RunIdentity) -> Option<String> {
        if self.ipscope_version != other.ipscope_version {
            return Some(format!(
                "ipscope version {} vs {}",
                other.ipscope_version, self.ipscope_version
            ));
        }
        if self.dependencies != other.dependencies {
            return Some("dependency versions".into());
        }
        if self.parameters != other.parameters {
            return Some("parameters".into());
        }
        if self.channels != other.channels {
            return Some("channels".into());
        }
        if self.format != other.format {
            return Some(format!("table format {} vs {}", other.format, self.format));
        }
        None
    }
}

/// Refuses `(manifest, dir)` pairs that do not share one [`RunIdentity`].
pub fn run_identity(items: &[(&Manifest, &Path)]) -> Result<RunIdentity> {
    let (first, first_dir) = items
        .first()
        .ok_or_else(|| Error::Invalid("no run outputs given".into()))?;
    let id = RunIdentity::of(first);
    for (m, dir) in &items[1..] {
        let other = RunIdentity::of(m);
        if let Some(what) = id.difference(&other) {
            return Err(Error::Invalid(format!(
                "{}: {what} differ from {} (run hash {} vs {}); only outputs of one parameter set and ipscope version can be combined",
                dir.display(),
                first_dir.display(),
                &other.hash()[..12],
                &id.hash()[..12],
            )));
        }
    }
    Ok(id)
}

/// One plate of a campaign.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignPlate {
    pub plate: String,
    /// The partition directory, relative to the campaign's output directory.
    pub dir: PathBuf,
    pub manifest_sha256: String,
    pub fields: usize,
    pub fields_failed: usize,
}

/// What a campaign run, merge or summary wrote.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    pub plates: Vec<CampaignPlate>,
    pub fields: usize,
    pub fields_failed: usize,
    pub nuclei: u64,
    pub out_dir: PathBuf,
    /// The campaign-level files at the root (tables, report, campaign.json).
    pub outputs: Vec<PathBuf>,
}

/// `campaign.json`.
#[derive(Debug, Clone, Serialize)]
struct CampaignRecord<'a> {
    ipscope_version: &'a str,
    command_line: &'a [String],
    run_hash: String,
    plates: &'a [CampaignPlate],
    outputs: Vec<crate::manifest::OutputRecord>,
}

pub(crate) fn visible_entries(dir: &Path) -> Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    Ok(std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .any(|e| !e.file_name().to_string_lossy().starts_with('.')))
}

/// Runs every plate in `plates` with `base`'s options into `OUT/Metadata_Plate=<id>/`, then
/// writes the campaign tables and report. With `base.resume`, plates whose partition holds
/// a finished run are kept and interrupted ones continue.
pub fn run_campaign(
    plates: &[PathBuf],
    base: &RunOptions,
    out_dir: &Path,
    format: Format,
    overwrite: bool,
    command_line: &[String],
    on_event: &(dyn Fn(&Event) + Sync),
) -> Result<CampaignSummary> {
    if visible_entries(out_dir)? && !overwrite && !base.resume {
        return Err(Error::Invalid(format!(
            "{}: output directory exists and is not empty; use --overwrite to replace its tables",
            out_dir.display()
        )));
    }
    // Discover every plate before running any, so a bad plate or a duplicate id fails fast.
    let mut pipelines = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in plates {
        let mut options = base.clone();
        options.plate_dir = dir.clone();
        let p = Pipeline::new(options)?;
        let id = p.plate().id.clone();
        check_plate_id(&id, dir)?;
        if !seen.insert(id.clone()) {
            return Err(Error::Invalid(format!(
                "{}: plate id {id} appears twice in the campaign; plate ids name the partitions and must differ",
                dir.display()
            )));
        }
        pipelines.push((id, p));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    for (id, p) in &pipelines {
        let part = partition_dir(out_dir, id);
        let finished = part.join("manifest.json").is_file() && !crate::partial::exists(&part);
        if base.resume && finished {
            continue;
        }
        p.run(&part, format, overwrite, command_line, on_event)?;
    }
    summarize(out_dir, command_line)
}

/// The partition directories under `out_dir`, sorted by name.
pub fn partitions(out_dir: &Path) -> Result<Vec<PathBuf>> {
    let prefix = format!("{PARTITION_KEY}=");
    let mut parts: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .map_err(|e| Error::io(out_dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    parts.sort();
    Ok(parts)
}

fn read_concat(paths: &[PathBuf], what: &str) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    let mut schema = None;
    for p in paths {
        let (s, b) = ipscope_table::read_table(p)?;
        schema.get_or_insert(s);
        batches.extend(b);
    }
    let schema = schema.ok_or_else(|| Error::Invalid(format!("campaign: no {what} tables")))?;
    ipscope_table::concat(&schema, &batches).map_err(|e| {
        Error::Invalid(format!(
            "campaign: the plates' {what} tables have different columns (other layouts or channels?): {e}"
        ))
    })
}

fn stats_err(e: ipscope_stats::Error) -> Error {
    Error::Invalid(format!("campaign statistics: {e}"))
}

/// Per-plate normalisation of every readout to the plate's own controls, long format.
fn normalized_table(wells: &RecordBatch, all: &[String]) -> Result<RecordBatch> {
    let plates = ipscope_stats::input::text(wells, PLATE).map_err(stats_err)?;
    let well_names = ipscope_stats::input::text(wells, "Metadata_Well").map_err(stats_err)?;
    let (mut plate, mut well, mut readout) = (Vec::new(), Vec::new(), Vec::new());
    let (mut value, mut poc, mut npi, mut z, mut rz, mut bs) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for r in all {
        let o = NormalizeOptions {
            value: r,
            control_col: ROLE,
            neg: "negative",
            pos: "positive",
            by: Some(PLATE),
            well_col: "Metadata_Well",
        };
        let n = normalize(wells, &o).map_err(stats_err)?;
        let v = ipscope_stats::input::numeric(wells, r).map_err(stats_err)?;
        for i in 0..wells.num_rows() {
            plate.push(plates[i].clone().unwrap_or_default());
            well.push(well_names[i].clone().unwrap_or_default());
            readout.push(r.clone());
            value.push(v[i]);
            poc.push(n.percent_of_control[i]);
            npi.push(n.npi[i]);
            z.push(n.z_score[i]);
            rz.push(n.robust_z[i]);
            bs.push(n.b_score[i]);
        }
    }
    let mut b = TableBuilder::new();
    b.str(PLATE, plate)
        .str("Metadata_Well", well)
        .str("Readout", readout)
        .doc("Wells column that is normalised")
        .f64("Value", value)
        .f64("PercentOfControl", poc)
        .doc("100 × value / mean of the plate's negative controls")
        .f64("NPI", npi)
        .doc("Normalised percent inhibition between the plate's negative and positive controls")
        .f64("ZScore", z)
        .doc("(value − mean of the plate's negative controls) / their SD")
        .f64("RobustZ", rz)
        .doc("(value − median of the plate's negative controls) / (1.4826 MAD)")
        .f64("BScore", bs)
        .doc("Median-polish residual / 1.4826 MAD of the plate's residuals (Brideau et al. 2003)");
    Ok(b.finish()?)
}

/// One fit per (compound, readout) pooled over every plate of the campaign.
fn pooled_curves(wells: &RecordBatch, all: &[String]) -> Result<RecordBatch> {
    let keep: Vec<usize> = wells
        .schema_ref()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() != PLATE)
        .map(|(i, _)| i)
        .collect();
    let pooled = wells
        .project(&keep)
        .map_err(|e| Error::Invalid(format!("campaign curves: {e}")))?;
    let curves = plate_curves(&pooled, all, Model::Ll4).map_err(stats_err)?;
    let rows: Vec<CurveRow> = curves
        .iter()
        .map(|c| CurveRow {
            labels: vec![("Metadata_Compound", c.compound.clone())],
            readout: c.readout.clone(),
            fit: &c.fit,
        })
        .collect();
    curves_table(&["Metadata_Compound"], &rows).map_err(stats_err)
}

fn write(path: &Path, batch: &RecordBatch, format: Format) -> Result<WrittenFile> {
    Ok(ipscope_table::write_table(
        path,
        batch.schema(),
        std::slice::from_ref(batch),
        format,
    )?)
}

/// Writes the campaign tables, report and `campaign.json` at the root of `out_dir` from the
/// partitions already there. The tables depend only on the partitions' tables, so the same
/// partitions give the same bytes.
pub fn summarize(out_dir: &Path, command_line: &[String]) -> Result<CampaignSummary> {
    let parts = partitions(out_dir)?;
    if parts.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no {PARTITION_KEY}=<id> partitions",
            out_dir.display()
        )));
    }
    let mut manifests = Vec::new();
    for p in &parts {
        let path = p.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let m = Manifest::read(&path)?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name != format!("{PARTITION_KEY}={}", m.plate) {
            return Err(Error::Invalid(format!(
                "{}: holds plate {} but the partition names another plate",
                p.display(),
                m.plate
            )));
        }
        manifests.push((m, hex(&Sha256::digest(&bytes)), p.clone()));
    }
    let id = run_identity(
        &manifests
            .iter()
            .map(|(m, _, p)| (m, p.as_path()))
            .collect::<Vec<_>>(),
    )?;
    let format: Format = id
        .format
        .parse()
        .map_err(|_| Error::Invalid(format!("campaign: unknown table format {:?}", id.format)))?;
    let ext = format.extension();
    let table_paths = |name: &str| -> Vec<PathBuf> {
        parts
            .iter()
            .map(|p| p.join(format!("{name}.{ext}")))
            .collect()
    };
    let wells = read_concat(&table_paths("Wells"), "Wells")?;
    let image = read_concat(&table_paths("Image"), "Image")?;
    let errors = read_concat(&table_paths("Errors"), "Errors")?;

    let path_of = |name: &str| out_dir.join(format!("{name}.{ext}"));
    let mut written = vec![write(&path_of("CampaignWells"), &wells, format)?];
    let all = readouts(&wells);
    let has_roles = ipscope_stats::input::has_column(&wells, ROLE);
    let mut stale = Vec::new();
    if has_roles {
        let qc = plate_qc_all(&wells, &all).map_err(stats_err)?;
        let qc = qc_table(&qc).map_err(stats_err)?;
        written.push(write(&path_of("CampaignQc"), &qc, format)?);
        let norm = normalized_table(&wells, &all)?;
        written.push(write(&path_of("CampaignNormalized"), &norm, format)?);
    } else {
        stale.extend(["CampaignQc", "CampaignNormalized"]);
    }
    if has_dose_layout(&wells) {
        let curves = pooled_curves(&wells, &all)?;
        written.push(write(&path_of("CampaignCurves"), &curves, format)?);
    } else {
        stale.push("CampaignCurves");
    }
    for name in stale {
        let p = path_of(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }

    let plates: Vec<CampaignPlate> = manifests
        .iter()
        .map(|(m, sha, p)| CampaignPlate {
            plate: m.plate.clone(),
            dir: p
                .strip_prefix(out_dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.clone()),
            manifest_sha256: sha.clone(),
            fields: m.images.len(),
            fields_failed: m.images.iter().filter(|s| s.status != "ok").count(),
        })
        .collect();
    let mut record = CampaignRecord {
        ipscope_version: &id.ipscope_version,
        command_line,
        run_hash: id.hash(),
        plates: &plates,
        outputs: written
            .iter()
            .map(|w| crate::manifest::OutputRecord::from_written(w, out_dir))
            .collect(),
    };
    let run = ipscope_report::RunTables {
        wells,
        image: Some(image.clone()),
        errors: Some(errors),
        manifest: serde_json::to_value(&record).ok(),
        out_dir: out_dir.to_path_buf(),
    };
    let report_err = |e: ipscope_report::Error| Error::Invalid(format!("campaign report: {e}"));
    let html = ipscope_report::render(&run, &ipscope_report::ReportOptions::default())
        .map_err(report_err)?;
    let report = ipscope_report::write_html(&out_dir.join(crate::analysis::REPORT_FILE), &html)
        .map_err(report_err)?;
    written.push(report);
    record.outputs = written
        .iter()
        .map(|w| crate::manifest::OutputRecord::from_written(w, out_dir))
        .collect();
    let json_path = out_dir.join(CAMPAIGN_FILE);
    let text = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::Invalid(format!("{}: {e}", json_path.display())))?;
    std::fs::write(&json_path, format!("{text}\n")).map_err(|e| Error::io(&json_path, e))?;

    let nuclei = manifests
        .iter()
        .map(|(m, _, _)| {
            m.outputs
                .iter()
                .find(|o| o.path == Path::new(&format!("Nuclei.{ext}")))
                .map_or(0, |o| o.rows)
        })
        .sum();
    let fields = image.num_rows();
    let fields_failed = plates.iter().map(|p| p.fields_failed).sum();
    let mut outputs: Vec<PathBuf> = written.iter().map(|w| w.path.clone()).collect();
    outputs.push(json_path);
    Ok(CampaignSummary {
        plates,
        fields,
        fields_failed,
        nuclei,
        out_dir: out_dir.to_path_buf(),
        outputs,
    })
}
