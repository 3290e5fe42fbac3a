//! Run-level drug evaluation from the Wells table and its layout columns: the Curves table
//! (one dose-response fit per plate, compound and readout) and the Qc table (control
//! statistics per plate and readout).
//!
//! Layout columns: `Metadata_Compound`, `Metadata_Concentration` (numeric) and
//! `Metadata_Role` (`negative`, `positive`, `treated`, `empty`). A compound's curve is fitted
//! to its treated wells plus the plate's negative-control wells at dose 0 (the vehicle is the
//! untreated top of every series, as drc does with dose 0).

use ipscope_table::{RecordBatch, TableBuilder};

use crate::curve::{
    fit, relative_potency, CurveFit, EffectiveDose, JointFit, Model, RelativePotency,
};
use crate::input::{has_column, numeric, text};
use crate::qc::{control_qc, ControlQc};
use crate::Result;

pub const PLATE: &str = "Metadata_Plate";
pub const COMPOUND: &str = "Metadata_Compound";
pub const CONCENTRATION: &str = "Metadata_Concentration";
pub const ROLE: &str = "Metadata_Role";

/// Whether the Wells table has the layout columns the run-level analysis needs.
/// The concentration column must be numeric (a text column is a layout without doses).
pub fn has_dose_layout(wells: &RecordBatch) -> bool {
    [COMPOUND, ROLE].iter().all(|c| has_column(wells, c)) && numeric(wells, CONCENTRATION).is_ok()
}

/// Per-well readouts worth a curve: `Count_<Object>` (not the field counts) and every
/// `Median_…` measurement except positions (`Center`, `BoundingBox`, `Location`).
pub fn readouts(wells: &RecordBatch) -> Vec<String> {
    wells
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| {
            (n.starts_with("Count_") && !n.starts_with("Count_Fields"))
                || (n.starts_with("Median_")
                    && !["Center_", "BoundingBox", "Location"]
                        .iter()
                        .any(|p| n.contains(p)))
        })
        .collect()
}

/// One fitted curve with the points it was fitted to.
#[derive(Debug, Clone)]
pub struct PlateCurve {
    pub plate: String,
    pub compound: String,
    pub readout: String,
    pub doses: Vec<f64>,
    pub responses: Vec<f64>,
    pub fit: CurveFit,
}

/// Fits every (plate, treated compound, readout).
pub fn plate_curves(
    wells: &RecordBatch,
    readouts: &[String],
    model: Model,
) -> Result<Vec<PlateCurve>> {
    let plates = plate_keys(wells)?;
    let compounds = text(wells, COMPOUND)?;
    let conc = numeric(wells, CONCENTRATION)?;
    let roles = text(wells, ROLE)?;
    let mut series: Vec<(String, String)> = (0..wells.num_rows())
        .filter(|&i| roles[i].as_deref() == Some("treated"))
        .filter_map(|i| compounds[i].clone().map(|c| (plates[i].clone(), c)))
        .collect();
    series.sort();
    series.dedup();
    let mut out = Vec::new();
    for readout in readouts {
        let values = numeric(wells, readout)?;
        for (plate, compound) in &series {
            let (mut doses, mut responses) = (Vec::new(), Vec::new());
            for i in 0..wells.num_rows() {
                if &plates[i] != plate {
                    continue;
                }
                let treated = roles[i].as_deref() == Some("treated")
                    && compounds[i].as_deref() == Some(compound.as_str());
                let vehicle = roles[i].as_deref() == Some("negative");
                if treated {
                    doses.push(conc[i]);
                    responses.push(values[i]);
                } else if vehicle {
                    doses.push(0.0);
                    responses.push(values[i]);
                }
            }
            let fit = fit(&doses, &responses, model);
            out.push(PlateCurve {
                plate: plate.clone(),
                compound: compound.clone(),
                readout: readout.clone(),
                doses,
                responses,
                fit,
            });
        }
    }
    Ok(out)
}

fn plate_keys(wells: &RecordBatch) -> Result<Vec<String>> {
    if has_column(wells, PLATE) {
        Ok(text(wells, PLATE)?
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect())
    } else {
        Ok(vec![String::new(); wells.num_rows()])
    }
}

/// Control QC of every (plate, readout), with the role column's `negative`/`positive` wells.
pub fn plate_qc_all(wells: &RecordBatch, readouts: &[String]) -> Result<Vec<(String, ControlQc)>> {
    let plates = plate_keys(wells)?;
    let roles = text(wells, ROLE)?;
    let mut keys = plates.clone();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for readout in readouts {
        let values = numeric(wells, readout)?;
        for plate in &keys {
            let pick = |role: &str| -> Vec<f64> {
                (0..values.len())
                    .filter(|&i| &plates[i] == plate && roles[i].as_deref() == Some(role))
                    .map(|i| values[i])
                    .collect()
            };
            out.push((
                readout.clone(),
                control_qc(plate, &pick("negative"), &pick("positive")),
            ));
        }
    }
    Ok(out)
}

/// The Qc table: one row per (plate, readout).
pub fn qc_table(rows: &[(String, ControlQc)]) -> Result<RecordBatch> {
    let mut b = TableBuilder::new();
    let col = |f: &dyn Fn(&ControlQc) -> Option<f64>| rows.iter().map(|(_, q)| f(q)).collect();
    b.str(PLATE, rows.iter().map(|(_, q)| q.group.clone()).collect())
        .str("Readout", rows.iter().map(|(r, _)| r.clone()).collect())
        .doc("Wells column the statistics are computed on")
        .str(
            "Status",
            rows.iter().map(|(_, q)| q.status.clone()).collect(),
        )
        .doc("ok, or why the statistics are missing")
        .u64(
            "N_Negative",
            rows.iter().map(|(_, q)| q.negative.n as u64).collect(),
        )
        .u64(
            "N_Positive",
            rows.iter().map(|(_, q)| q.positive.n as u64).collect(),
        )
        .opt_f64("Mean_Negative", col(&|q| q.negative.mean))
        .opt_f64("SD_Negative", col(&|q| q.negative.sd))
        .doc("Sample standard deviation (n − 1)")
        .opt_f64("Median_Negative", col(&|q| q.negative.median))
        .opt_f64("MAD_Negative", col(&|q| q.negative.mad))
        .doc("Raw median absolute deviation (not scaled by 1.4826)")
        .opt_f64("Mean_Positive", col(&|q| q.positive.mean))
        .opt_f64("SD_Positive", col(&|q| q.positive.sd))
        .opt_f64("Median_Positive", col(&|q| q.positive.median))
        .opt_f64("MAD_Positive", col(&|q| q.positive.mad))
        .opt_f64("ZPrime", col(&|q| q.z_prime))
        .doc("Z' = 1 - 3 (SDp + SDn) / |mean p - mean n| (Zhang et al. 1999)")
        .opt_f64("RobustZPrime", col(&|q| q.robust_z_prime))
        .doc("Z' with medians and 1.4826 MAD")
        .opt_f64("SSMD", col(&|q| q.ssmd))
        .doc("(mean p - mean n) / sqrt(SDp^2 + SDn^2) (Zhang 2007)")
        .opt_f64("SignalToBackground", col(&|q| q.signal_to_background))
        .doc("Higher control mean / lower control mean")
        .opt_f64("SignalWindow", col(&|q| q.signal_window))
        .doc("(|mean p - mean n| - 3 (SDp + SDn)) / SD of the higher control")
        .opt_f64("CV_Negative", col(&|q| q.cv_negative))
        .doc("Coefficient of variation, percent")
        .opt_f64("CV_Positive", col(&|q| q.cv_positive))
        .doc("Coefficient of variation, percent");
    Ok(b.finish()?)
}

/// One row of a curves table: the group's labels and its fit.
#[derive(Debug, Clone)]
pub struct CurveRow<'a> {
    /// (column name, value) labels, e.g. `[("Metadata_Plate", "P1"), ("Metadata_Compound", "A")]`.
    pub labels: Vec<(&'a str, String)>,
    pub readout: String,
    pub fit: &'a CurveFit,
}

/// A row's potency against its reference curve.
#[derive(Debug, Clone, PartialEq)]
pub struct PotencyCell {
    /// Group (last label) of the reference curve.
    pub reference: String,
    /// `None` when either curve has no EC50.
    pub potency: Option<RelativePotency>,
}

/// Relative potency of every row (drc's `EDcomp` on a joint fit, see
/// [`crate::curve::relative_potency`]). Rows with the same readout and the same labels except
/// the last form one joint fit (e.g. the compounds of one plate and readout); the last label
/// names the curve. The reference is `reference` where that curve is among them, else the
/// first of them in row order. `None` for the reference rows themselves and for rows without
/// labels.
pub fn relative_potencies(rows: &[CurveRow], reference: Option<&str>) -> Vec<Option<PotencyCell>> {
    let context = |r: &CurveRow| -> Option<(Vec<String>, String)> {
        let (_, head) = r.labels.split_last()?;
        Some((
            head.iter().map(|l| l.1.clone()).collect(),
            r.readout.clone(),
        ))
    };
    let group = |r: &CurveRow| r.labels.last().map(|l| l.1.clone()).unwrap_or_default();
    let mut out = vec![None; rows.len()];
    let mut done = vec![false; rows.len()];
    for i in 0..rows.len() {
        if done[i] {
            continue;
        }
        let Some(key) = context(&rows[i]) else {
            continue;
        };
        let members: Vec<usize> = (i..rows.len())
            .filter(|&j| !done[j] && context(&rows[j]).as_ref() == Some(&key))
            .collect();
        for &j in &members {
            done[j] = true;
        }
        let reference_row = reference
            .and_then(|name| members.iter().copied().find(|&j| group(&rows[j]) == name))
            .unwrap_or(members[0]);
        let joint = JointFit::of(members.iter().map(|&j| rows[j].fit));
        let reference_name = group(&rows[reference_row]);
        for &j in &members {
            if j == reference_row {
                continue;
            }
            out[j] = Some(PotencyCell {
                reference: reference_name.clone(),
                potency: joint
                    .as_ref()
                    .and_then(|jf| relative_potency(rows[j].fit, rows[reference_row].fit, jf)),
            });
        }
    }
    out
}

/// The Curves table with each curve's potency relative to the first curve of its plate and
/// readout; see [`curves_table_with_reference`].
pub fn curves_table(label_names: &[&str], rows: &[CurveRow]) -> Result<RecordBatch> {
    curves_table_with_reference(label_names, rows, None)
}

/// The Curves table: labels, then `Readout`, `Model`, `Status`, `Reason`, the parameters with
/// SEs, EC50 with 95 % interval, ED10/ED90, GraphPad's HillSlope and LogEC50, residual SE/df,
/// and the relative potency against `reference` ([`relative_potencies`]).
pub fn curves_table_with_reference(
    label_names: &[&str],
    rows: &[CurveRow],
    reference: Option<&str>,
) -> Result<RecordBatch> {
    curves_table_with_potencies(label_names, rows, &relative_potencies(rows, reference))
}

/// The Curves table with the potencies given (one per row, e.g. from a joint fit with shared
/// parameters).
pub fn curves_table_with_potencies(
    label_names: &[&str],
    rows: &[CurveRow],
    potencies: &[Option<PotencyCell>],
) -> Result<RecordBatch> {
    if potencies.len() != rows.len() {
        return Err(crate::Error::Invalid(format!(
            "{} potencies for {} curves",
            potencies.len(),
            rows.len()
        )));
    }
    let rp = |f: &dyn Fn(&RelativePotency) -> f64| -> Vec<Option<f64>> {
        potencies
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.potency.as_ref()).map(f))
            .collect()
    };
    let mut b = TableBuilder::new();
    for name in label_names {
        b.str(
            name,
            rows.iter()
                .map(|r| {
                    r.labels
                        .iter()
                        .find(|l| l.0 == *name)
                        .map(|l| l.1.clone())
                        .unwrap_or_default()
                })
                .collect(),
        );
    }
    let p = |f: &dyn Fn(&CurveFit) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter().map(|r| f(r.fit)).collect()
    };
    let ed = |f: &dyn Fn(&CurveFit) -> Option<EffectiveDose>,
              g: &dyn Fn(&EffectiveDose) -> Option<f64>|
     -> Vec<Option<f64>> {
        rows.iter().map(|r| f(r.fit).and_then(|e| g(&e))).collect()
    };
    b.str("Readout", rows.iter().map(|r| r.readout.clone()).collect())
        .doc("Response column")
        .str(
            "Model",
            rows.iter()
                .map(|r| r.fit.model.name().to_string())
                .collect(),
        )
        .doc("drc model name")
        .str(
            "Status",
            rows.iter()
                .map(|r| r.fit.status.as_str().to_string())
                .collect(),
        )
        .doc("ok, extrapolated, flat, ambiguous, not_converged, too_few_points or invalid_input")
        .str(
            "Reason",
            rows.iter().map(|r| r.fit.reason.clone()).collect(),
        )
        .u64("N", rows.iter().map(|r| r.fit.n as u64).collect())
        .doc("Points fitted")
        .u64("DF", rows.iter().map(|r| r.fit.df as u64).collect())
        .doc("Residual degrees of freedom")
        .opt_f64("b", p(&|f| f.params.map(|p| p.b)))
        .doc("drc slope b")
        .opt_f64("SE_b", p(&|f| f.se.b))
        .opt_f64("c", p(&|f| f.params.map(|p| p.c)))
        .doc("drc lower limit c")
        .opt_f64("SE_c", p(&|f| f.se.c))
        .opt_f64("d", p(&|f| f.params.map(|p| p.d)))
        .doc("drc upper limit d")
        .opt_f64("SE_d", p(&|f| f.se.d))
        .opt_f64("e", p(&|f| f.params.map(|p| p.e)))
        .doc("drc inflection point e")
        .opt_f64("SE_e", p(&|f| f.se.e))
        .opt_f64("f", p(&|f| f.params.map(|p| p.f)))
        .doc("drc asymmetry f (LL.5; 1 otherwise)")
        .opt_f64("EC50", ed(&|f| f.ec50, &|e| Some(e.estimate)))
        .doc("ED50; null unless Status is ok or extrapolated")
        .opt_f64("SE_EC50", ed(&|f| f.ec50, &|e| e.se))
        .opt_f64("EC50_Lower", ed(&|f| f.ec50, &|e| e.lower))
        .doc("95 % interval, delta method, Student t on DF")
        .opt_f64("EC50_Upper", ed(&|f| f.ec50, &|e| e.upper))
        .opt_f64("ED10", ed(&|f| f.ed10, &|e| Some(e.estimate)))
        .doc("Dose moving the response 10 % of the way from d to c (drc relative ED)")
        .opt_f64("ED90", ed(&|f| f.ed90, &|e| Some(e.estimate)))
        .opt_f64("HillSlope", p(&|f| f.hill_slope))
        .doc("GraphPad HillSlope = -b")
        .opt_f64("LogEC50", p(&|f| f.log_ec50))
        .doc("GraphPad LogEC50 = log10(EC50)")
        .opt_f64("ResidualSE", p(&|f| f.residual_se))
        .opt_f64("PValue_NoEffect", p(&|f| f.p_no_effect))
        .doc("F-test of the curve against a constant")
        .opt_f64("RelativePotency", rp(&|r| r.ratio))
        .doc(
            "EC50 of RelativePotency_Reference / EC50 of this curve (> 1: more potent); drc \
             EDcomp(fit, c(50, 50)) on the joint fit of the plate's curves for this readout",
        )
        .opt_f64("RelativePotency_SE", rp(&|r| r.se))
        .doc("Delta method with the joint fit's covariance (residual variance pooled over curves)")
        .opt_f64("RelativePotency_CI_Low", rp(&|r| r.lower))
        .doc("95 % interval: ratio -/+ t(0.975, joint df) SE")
        .opt_f64("RelativePotency_CI_High", rp(&|r| r.upper))
        .opt_f64("RelativePotency_PValue", rp(&|r| r.p_value))
        .doc("t-test of ratio = 1")
        .opt_str(
            "RelativePotency_Reference",
            potencies
                .iter()
                .map(|c| c.as_ref().map(|c| c.reference.clone()))
                .collect(),
        )
        .doc("Curve the potency is relative to; null for the reference itself");
    Ok(b.finish()?)
}

/// The Curves table of [`plate_curves`].
pub fn plate_curves_table(curves: &[PlateCurve]) -> Result<RecordBatch> {
    let rows: Vec<CurveRow> = curves
        .iter()
        .map(|c| CurveRow {
            labels: vec![(PLATE, c.plate.clone()), (COMPOUND, c.compound.clone())],
            readout: c.readout.clone(),
            fit: &c.fit,
        })
        .collect();
    curves_table(&[PLATE, COMPOUND], &rows)
}
