//! Disease models at the end of a run (or merge): when the layout names a disease line and a
//! control line (`Metadata_Genotype` or `Metadata_CellLine`, see
//! [`ipscope_stats::disease::detect`]), the run writes
//!
//! - `Profiles.<ext>`: per-well mean profiles of the Nuclei table (positional features left
//!   out), mad_robustized per plate against the disease line's vehicle wells, variance
//!   threshold and blocklist feature selection (as pycytominer), with the run's cell counts;
//! - `Phenotype.<ext>`, `Rescue.<ext>`, `Compounds.<ext>`: [`ipscope_stats::rescue::score`]
//!   with the best-Z′ feature as the readout (plus the multivariate on-target score);
//! - `Similarity.<ext>`: per compound, copairs' phenotypic-activity mAP of the disease-line
//!   wells against the disease vehicle wells, with permutation p-values and BH q-values.
//!
//! All of it comes from tables already in the output directory, so a merge of shards computes
//! it from the merged tables. A plate that has a line column but cannot be scored (one line,
//! no vehicle wells of a line, no phenotype) gets no disease tables and a warning in the
//! manifest saying why; the run itself succeeds.

use std::path::Path;

use ipscope_stats::disease::{
    activity_table, build_profiles, detect, vehicle_activity, Design, Detection, ProfileOptions,
    ACTIVITY_SEED, NULL_SIZE,
};
use ipscope_stats::profile::{Aggregation, NormMethod, SelectOp};
use ipscope_stats::rescue::{compounds_table, phenotype_table, score, wells_table, RescueOptions};
use ipscope_table::{Format, RecordBatch, WrittenFile};

use crate::{Error, Result};

/// `[disease]` in the run configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiseaseConfig {
    /// Vehicle compound of the disease tables (`run --vehicle`); default: the one compound of
    /// the layout's `negative` wells at concentration 0, else `DMSO`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle: Option<String>,
}

/// The tables this module writes, in order.
pub const TABLES: [&str; 5] = ["Profiles", "Phenotype", "Rescue", "Compounds", "Similarity"];

/// FDR level of `below_corrected_p` in the Similarity table.
pub const FDR: f64 = 0.05;

/// The profile recipe of a run.
pub fn run_profile_options(design: &Design) -> ProfileOptions {
    ProfileOptions {
        aggregation: Aggregation::Mean,
        normalize: Some(NormMethod::MadRobustize),
        vehicle: design.vehicle.clone(),
        compound_col: "Metadata_Compound".into(),
        reference_line: Some(design.disease.clone()),
        line_col: design.line_col.clone(),
        feature_select: vec![
            SelectOp::VarianceThreshold {
                freq_cut: 0.05,
                unique_cut: 0.01,
            },
            SelectOp::Blocklist(None),
        ],
        drop_positional: true,
    }
}

/// The rescue options of a run.
pub fn run_rescue_options(design: &Design) -> RescueOptions {
    RescueOptions {
        line_col: design.line_col.clone(),
        disease: design.disease.clone(),
        control: design.control.clone(),
        vehicle: design.vehicle.clone(),
        ..Default::default()
    }
}

/// The five tables, ready to write.
pub struct DiseaseTables {
    /// (name, table) in [`TABLES`] order.
    pub tables: Vec<(&'static str, RecordBatch)>,
}

/// Computes the disease tables from `out_dir`'s Nuclei table and `wells` (its Wells table).
/// `Ok(Err(reason))` when the plate is a disease-model plate that cannot be scored;
/// `Ok(Ok(None))` when it is not one.
pub fn compute(
    out_dir: &Path,
    ext: &str,
    wells: &RecordBatch,
    config: &DiseaseConfig,
) -> Result<std::result::Result<Option<DiseaseTables>, String>> {
    let stats = |e: ipscope_stats::Error| Error::Invalid(format!("disease tables: {e}"));
    let design = match detect(wells, config.vehicle.as_deref()).map_err(stats)? {
        Detection::Absent => return Ok(Ok(None)),
        Detection::Skip(why) => return Ok(Err(why)),
        Detection::Ready(d) => d,
    };
    let nuclei = out_dir.join(format!("Nuclei.{ext}"));
    if !nuclei.is_file() {
        return Ok(Err(format!(
            "no {} to make profiles from",
            nuclei
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )));
    }
    let objects = ipscope_stats::input::read_any(&nuclei)
        .map_err(|e| Error::Invalid(format!("{}: {e}", nuclei.display())))?;
    let why = |e: ipscope_stats::Error| e.to_string();
    let result = (|| -> std::result::Result<DiseaseTables, String> {
        let built =
            build_profiles(&objects, Some(wells), &run_profile_options(&design)).map_err(why)?;
        let p = built.profiles;
        let r = score(&p, &run_rescue_options(&design)).map_err(why)?;
        let activity = vehicle_activity(
            &p,
            Some((&design.line_col, &design.disease)),
            "Metadata_Compound",
            &design.vehicle,
            NULL_SIZE,
            ACTIVITY_SEED,
        )
        .map_err(why)?;
        Ok(DiseaseTables {
            tables: vec![
                ("Profiles", p.to_batch().map_err(why)?),
                ("Phenotype", phenotype_table(&r.phenotype).map_err(why)?),
                ("Rescue", wells_table(&p, &r.wells).map_err(why)?),
                (
                    "Compounds",
                    compounds_table(&r.compounds, &r.hit_rule).map_err(why)?,
                ),
                ("Similarity", activity_table(&activity, FDR).map_err(why)?),
            ],
        })
    })();
    Ok(result.map(Some))
}

/// Writes the disease tables into `out_dir` when the layout allows (removing stale ones
/// otherwise); returns what it wrote.
pub fn write_tables(
    out_dir: &Path,
    format: Format,
    wells: &RecordBatch,
    config: &DiseaseConfig,
) -> Result<Vec<WrittenFile>> {
    let ext = format.extension();
    let mut written = Vec::new();
    match compute(out_dir, ext, wells, config)? {
        Ok(Some(t)) => {
            for (name, table) in &t.tables {
                written.push(ipscope_table::write_table(
                    &out_dir.join(format!("{name}.{ext}")),
                    table.schema(),
                    std::slice::from_ref(table),
                    format,
                )?);
            }
        }
        Ok(None) | Err(_) => {
            for name in TABLES {
                let path = out_dir.join(format!("{name}.{ext}"));
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
        }
    }
    Ok(written)
}

/// Why a disease-model plate has no disease tables in `out_dir` (None when it has them or is
/// not a disease-model plate), for the manifest's warnings.
pub fn note(
    out_dir: &Path,
    ext: &str,
    wells: &RecordBatch,
    config: &DiseaseConfig,
) -> Result<Option<String>> {
    if out_dir.join(format!("Compounds.{ext}")).is_file() {
        return Ok(None);
    }
    Ok(match compute(out_dir, ext, wells, config)? {
        Err(why) => Some(format!("disease tables not written: {why}")),
        Ok(_) => None,
    })
}
