//! Drug evaluation at the end of a run (or merge): the Curves and Qc tables and report.html,
//! computed from the Wells table already written in the output directory.
//!
//! When the layout gives `Metadata_Compound`, `Metadata_Concentration` and `Metadata_Role`,
//! `Curves.<ext>` holds one drc LL.4 fit per plate, treated compound and readout, and
//! `Qc.<ext>` the control statistics (Z′, robust Z′, SSMD, …) per plate and readout. The
//! report is written in every run. Stale files from an earlier run in the same directory are
//! removed when the current run does not write them.

use std::path::Path;

use ipscope_stats::curve::Model;
use ipscope_stats::plate::{
    has_dose_layout, plate_curves, plate_curves_table, plate_qc_all, qc_table, readouts, ROLE,
};
use ipscope_table::{Format, WrittenFile};

use crate::{Error, Result};

pub use ipscope_report as report;

/// File name of the report in the output directory.
pub const REPORT_FILE: &str = "report.html";

fn stats_err(e: ipscope_stats::Error) -> Error {
    Error::Invalid(format!("drug evaluation: {e}"))
}

fn report_err(e: ipscope_report::Error) -> Error {
    Error::Invalid(format!("report: {e}"))
}

fn remove_stale(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Writes Curves/Qc (when the layout allows) into `out_dir`; returns what it wrote, for the
/// manifest. The report comes last, from [`write_report_and_manifest`].
pub fn write_analysis(out_dir: &Path, format: Format) -> Result<Vec<WrittenFile>> {
    let ext = format.extension();
    let run = ipscope_report::RunTables::read(out_dir).map_err(report_err)?;
    let wells = &run.wells;
    let mut written = Vec::new();
    let all = readouts(wells);
    let curves_path = out_dir.join(format!("Curves.{ext}"));
    if has_dose_layout(wells) {
        let curves = plate_curves(wells, &all, Model::Ll4).map_err(stats_err)?;
        let table = plate_curves_table(&curves).map_err(stats_err)?;
        written.push(ipscope_table::write_table(
            &curves_path,
            table.schema(),
            std::slice::from_ref(&table),
            format,
        )?);
    } else {
        remove_stale(&curves_path)?;
    }
    let qc_path = out_dir.join(format!("Qc.{ext}"));
    if ipscope_stats::input::has_column(wells, ROLE) {
        let qc = plate_qc_all(wells, &all).map_err(stats_err)?;
        let table = qc_table(&qc).map_err(stats_err)?;
        written.push(ipscope_table::write_table(
            &qc_path,
            table.schema(),
            std::slice::from_ref(&table),
            format,
        )?);
    } else {
        remove_stale(&qc_path)?;
    }
    Ok(written)
}

/// Writes report.html, whose provenance section shows `manifest` (plate QC filled in here),
/// then `manifest.json` with the report among its outputs.
pub fn write_report_and_manifest(
    manifest: &mut crate::manifest::Manifest,
    out_dir: &Path,
) -> Result<WrittenFile> {
    let mut run = ipscope_report::RunTables::read(out_dir).map_err(report_err)?;
    if ipscope_stats::input::has_column(&run.wells, ROLE) {
        let qc = plate_qc_all(&run.wells, &readouts(&run.wells)).map_err(stats_err)?;
        manifest.plate_qc = qc
            .iter()
            .map(|(readout, q)| {
                let mut v = serde_json::to_value(q).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("readout".into(), readout.clone().into());
                }
                v
            })
            .collect();
    }
    // The report shows the manifest as it stands before the report itself is added.
    run.manifest = serde_json::to_value(&*manifest).ok();
    let html = ipscope_report::render(&run, &ipscope_report::ReportOptions::default())
        .map_err(report_err)?;
    let report =
        ipscope_report::write_html(&out_dir.join(REPORT_FILE), &html).map_err(report_err)?;
    manifest
        .outputs
        .push(crate::manifest::OutputRecord::from_written(
            &report, out_dir,
        ));
    manifest.write(&out_dir.join("manifest.json"))?;
    Ok(report)
}
