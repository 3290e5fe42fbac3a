//! Plate quality from the control wells: Z′ and its robust form, SSMD, signal/background,
//! signal window and coefficients of variation.
//!
//! - Z′ = 1 − 3 (σp + σn) / |μp − μn| (Zhang, Chung & Oldenburg 1999, J Biomol Screen 4:67),
//!   with sample standard deviations (n − 1).
//! - Robust Z′: the same with medians and 1.4826 · MAD (as in cellHTS2 and Birmingham et al.
//!   2009, Nat Methods 6:569).
//! - SSMD = (μp − μn) / sqrt(σp² + σn²) (Zhang 2007, Genomics 89:552), independent controls.
//! - Signal/background = μhigh / μlow, the control with the higher mean over the lower one
//!   (null unless both means are positive).
//! - Signal window = (|μp − μn| − 3 (σp + σn)) / σhigh (Sittampalam et al. 1997; Assay
//!   Guidance Manual, one replicate), σhigh the SD of the control with the higher mean.
//! - CV = 100 · σ / |μ| per control.
//!
//! MAD here is the raw median absolute deviation (not scaled); the robust statistics scale it.

use serde::Serialize;

use crate::input::{distinct, group_keys, numeric, text};
use crate::{Error, Result};

/// Consistency constant of the MAD for normal data.
pub const MAD_SCALE: f64 = 1.4826;

/// Descriptive statistics of one set of values (NaN left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Describe {
    pub n: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1); `None` for fewer than two values.
    pub sd: Option<f64>,
    pub median: Option<f64>,
    /// Raw median absolute deviation from the median.
    pub mad: Option<f64>,
    /// 100 · sd / |mean|.
    pub cv: Option<f64>,
}

/// Median of values sorted by total order (numpy's: mean of the two middle values).
pub(crate) fn median_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        None
    } else if n % 2 == 1 {
        Some(v[n / 2])
    } else {
        Some(0.5 * (v[n / 2 - 1] + v[n / 2]))
    }
}

/// Median of the finite values of `v`.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    median_of(&mut s)
}

/// numpy's median of values free of NaN (the middle value in IEEE total order, or the average
/// of the two middle ones); `None` for no values. Reorders `v`: a selection, not a sort.
pub(crate) fn median_of(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let (below, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return Some(upper);
    }
    // The lower middle value is the largest of those below the upper one.
    let lower = below.iter().copied().max_by(f64::total_cmp)?;
    Some((lower + upper) / 2.0)
}

/// Raw median absolute deviation of the non-NaN values of `v`.
pub fn mad(v: &[f64]) -> Option<f64> {
    let m = median(v)?;
    let dev: Vec<f64> = v
        .iter()
        .filter(|x| !x.is_nan())
        .map(|x| (x - m).abs())
        .collect();
    median(&dev)
}

impl Describe {
    /// Statistics of the non-NaN values of `values`, summed in sorted order so that the
    /// result does not depend on the order of the rows.
    pub fn of(values: &[f64]) -> Describe {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = (n > 0).then(|| v.iter().sum::<f64>() / n as f64);
        let sd = match (mean, n) {
            (Some(m), n) if n >= 2 => {
                Some((v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt())
            }
            _ => None,
        };
        let med = median_sorted(&v);
        Describe {
            n,
            mean,
            sd,
            median: med,
            mad: mad(&v),
            cv: match (sd, mean) {
                (Some(s), Some(m)) if m != 0.0 => Some(100.0 * s / m.abs()),
                _ => None,
            },
        }
    }
}

/// Plate-quality statistics of one group (plate) of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlQc {
    /// Value of the `--by` column, or `"all"`.
    pub group: String,
    /// `ok`, or why the statistics are missing (`no negative controls`, …).
    pub status: String,
    pub negative: Describe,
    pub positive: Describe,
    pub z_prime: Option<f64>,
    pub robust_z_prime: Option<f64>,
    pub ssmd: Option<f64>,
    pub signal_to_background: Option<f64>,
    pub signal_window: Option<f64>,
    pub cv_negative: Option<f64>,
    pub cv_positive: Option<f64>,
}

/// Z′ and friends from the two controls' values.
pub fn control_qc(group: &str, negative: &[f64], positive: &[f64]) -> ControlQc {
    let n = Describe::of(negative);
    let p = Describe::of(positive);
    let status = if n.n == 0 && p.n == 0 {
        "no negative or positive controls".to_string()
    } else if n.n == 0 {
        "no negative controls".to_string()
    } else if p.n == 0 {
        "no positive controls".to_string()
    } else if n.n < 2 || p.n < 2 {
        "fewer than two values in a control".to_string()
    } else {
        "ok".to_string()
    };
    let mut qc = ControlQc {
        group: group.to_string(),
        status,
        negative: n,
        positive: p,
        z_prime: None,
        robust_z_prime: None,
        ssmd: None,
        signal_to_background: None,
        signal_window: None,
        cv_negative: n.cv,
        cv_positive: p.cv,
    };
    if let (Some(mp), Some(mn), Some(sp), Some(sn)) = (p.mean, n.mean, p.sd, n.sd) {
        let gap = (mp - mn).abs();
        if gap > 0.0 {
            qc.z_prime = Some(1.0 - 3.0 * (sp + sn) / gap);
            let s_high = if mp >= mn { sp } else { sn };
            if s_high > 0.0 {
                qc.signal_window = Some((gap - 3.0 * (sp + sn)) / s_high);
            }
        }
        let var = sp * sp + sn * sn;
        if var > 0.0 {
            qc.ssmd = Some((mp - mn) / var.sqrt());
        }
        let (high, low) = if mp >= mn { (mp, mn) } else { (mn, mp) };
        if low > 0.0 {
            qc.signal_to_background = Some(high / low);
        }
    }
    if let (Some(medp), Some(medn), Some(madp), Some(madn)) = (p.median, n.median, p.mad, n.mad) {
        let gap = (medp - medn).abs();
        if gap > 0.0 && p.n >= 2 && n.n >= 2 {
            qc.robust_z_prime = Some(1.0 - 3.0 * MAD_SCALE * (madp + madn) / gap);
        }
    }
    qc
}

/// Plate QC of a table: per group of `by` (or one group `"all"`), the controls are the rows
/// whose `control_col` equals `neg` / `pos`. Errors name a missing or non-numeric column;
/// controls absent from a group give that group a status instead.
pub fn plate_qc(
    table: &ipscope_table::RecordBatch,
    value: &str,
    control_col: &str,
    neg: &str,
    pos: &str,
    by: Option<&str>,
) -> Result<Vec<ControlQc>> {
    let values = numeric(table, value)?;
    let roles = text(table, control_col)?;
    let keys = group_keys(table, by)?;
    if !roles.iter().flatten().any(|r| r == neg || r == pos) {
        return Err(Error::Invalid(format!(
            "column `{control_col}` has neither `{neg}` nor `{pos}`: no control wells"
        )));
    }
    Ok(distinct(&keys)
        .into_iter()
        .map(|g| {
            let pick = |name: &str| -> Vec<f64> {
                (0..values.len())
                    .filter(|&i| keys[i] == g && roles[i].as_deref() == Some(name))
                    .map(|i| values[i])
                    .collect()
            };
            control_qc(&g, &pick(neg), &pick(pos))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_z_prime() {
        // neg: mean 10, sd 1; pos: mean 2, sd 1  →  Z′ = 1 − 3·2/8 = 0.25.
        let qc = control_qc("p", &[9.0, 10.0, 11.0], &[1.0, 2.0, 3.0]);
        assert_eq!(qc.status, "ok");
        assert!((qc.z_prime.unwrap() - 0.25).abs() < 1e-12);
        // medians 10 and 2, raw MAD 1 each: 1 − 3·1.4826·2/8.
        assert!((qc.robust_z_prime.unwrap() - (1.0 - 3.0 * 1.4826 * 2.0 / 8.0)).abs() < 1e-12);
        assert!((qc.ssmd.unwrap() - (-8.0 / 2f64.sqrt())).abs() < 1e-12);
        assert!((qc.signal_to_background.unwrap() - 5.0).abs() < 1e-12);
        assert!((qc.signal_window.unwrap() - 2.0).abs() < 1e-12);
        assert!((qc.cv_negative.unwrap() - 10.0).abs() < 1e-12);
    }

    #[test]
    fn missing_controls_give_a_status() {
        let qc = control_qc("p", &[1.0, 2.0], &[]);
        assert_eq!(qc.status, "no positive controls");
        assert!(qc.z_prime.is_none());
        let qc = control_qc("p", &[f64::NAN], &[1.0, 2.0]);
        assert_eq!(qc.status, "no negative controls");
    }
}
