//! Per-plate normalisation of a well readout and edge-effect detection.
//!
//! For each plate (group) with negative-control mean μn and positive-control mean μp:
//! - percent of control: 100 · x / μn;
//! - NPI (normalised percent inhibition): 100 · (μn − x) / (μn − μp), 0 % at the negative and
//!   100 % at the positive control. NPA (normalised percent activation), 100 · (x − μn) /
//!   (μp − μn) with an activator as the positive control, is the same expression, so one
//!   column serves both and only its name differs (`ipscope normalize --mode`; Malo et al.
//!   2006, Nat Biotechnol 24:167). cellHTS2's `normalizePlates(method = "NPI")` returns the
//!   complementary fraction (μp − x) / (μp − μn) = 1 − NPI / 100 (its `R/perPlateScaling.R`);
//!   a test checks that relation on the KcViab screen;
//! - z-score (x − mean) / SD and robust z (x − median) / (1.4826 · MAD) over the plate's
//!   sample wells (all wells that are neither control; all wells when there are none);
//! - B-score (Brideau et al. 2003, J Biomol Screen 8:634): residuals of Tukey's two-way median
//!   polish over the plate's rows and columns (R's `medpolish`, maxiter 10, eps 0.01), divided
//!   by 1.4826 · MAD of the plate's residuals (cellHTS2's `normalizePlates(method = "Bscore")`).
//!
//! Edge effects: per plate, the mean robust z of the outer wells minus that of the inner ones
//! with a Welch t-test, and the linear trends of the median-polish row and column effects
//! (slope per row / column in robust-SD units).

use std::collections::BTreeMap;

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::input::{distinct, group_keys, numeric, text};
use crate::qc::{mad, median, Describe, MAD_SCALE};
use crate::{Error, Result};

/// A well position parsed from `A01`, `b2`, `AA10` (rows A–Z then AA–AF for 1536 plates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WellPos {
    /// Zero-based row.
    pub row: usize,
    /// Zero-based column.
    pub col: usize,
}

/// Parses a well name (`B02`, `b2`, `AF48`); `None` when it is not one.
pub fn parse_well(name: &str) -> Option<WellPos> {
    let name = name.trim();
    let letters: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let digits = &name[letters.len()..];
    if letters.is_empty() || letters.len() > 2 || digits.is_empty() {
        return None;
    }
    let col: usize = digits.parse().ok()?;
    if col == 0 {
        return None;
    }
    let mut row = 0usize;
    for c in letters.to_ascii_uppercase().bytes() {
        row = row * 26 + (c - b'A' + 1) as usize;
    }
    Some(WellPos {
        row: row - 1,
        col: col - 1,
    })
}

/// Plate format (rows, columns) that holds every position: 96, 384 or 1536 wells; `None` when
/// a position lies beyond a 1536-well plate (32 × 48).
pub fn plate_shape(positions: &[WellPos]) -> Option<(usize, usize)> {
    let rows = positions.iter().map(|p| p.row + 1).max().unwrap_or(0);
    let cols = positions.iter().map(|p| p.col + 1).max().unwrap_or(0);
    [(8, 12), (16, 24), (32, 48)]
        .into_iter()
        .find(|&(r, c)| rows <= r && cols <= c)
}

/// Result of Tukey's median polish.
#[derive(Debug, Clone, PartialEq)]
pub struct MedianPolish {
    pub overall: f64,
    pub row: Vec<f64>,
    pub col: Vec<f64>,
    /// Residuals, row-major; NaN where the input was NaN.
    pub residuals: Vec<f64>,
}

/// Tukey's two-way median polish of a row-major `rows × cols` grid (NaN = missing), exactly as
/// R's `stats::medpolish(x, eps = 0.01, maxiter = 10, na.rm = TRUE)`.
pub fn median_polish(grid: &[f64], rows: usize, cols: usize) -> MedianPolish {
    let mut z = grid.to_vec();
    let mut r = vec![0.0; rows];
    let mut c = vec![0.0; cols];
    let mut t = 0.0;
    let mut oldsum = 0.0;
    let med = |v: &[f64]| median(v).unwrap_or(0.0);
    for _ in 0..10 {
        for i in 0..rows {
            let delta = med(&z[i * cols..(i + 1) * cols]);
            for v in &mut z[i * cols..(i + 1) * cols] {
                *v -= delta;
            }
            r[i] += delta;
        }
        let delta = med(&c);
        c.iter_mut().for_each(|v| *v -= delta);
        t += delta;
        for j in 0..cols {
            let column: Vec<f64> = (0..rows).map(|i| z[i * cols + j]).collect();
            let delta = med(&column);
            for i in 0..rows {
                z[i * cols + j] -= delta;
            }
            c[j] += delta;
        }
        let delta = med(&r);
        r.iter_mut().for_each(|v| *v -= delta);
        t += delta;
        let newsum: f64 = z.iter().filter(|v| !v.is_nan()).map(|v| v.abs()).sum();
        let converged = newsum == 0.0 || (newsum - oldsum).abs() < 0.01 * newsum;
        if converged {
            break;
        }
        oldsum = newsum;
    }
    MedianPolish {
        overall: t,
        row: r,
        col: c,
        residuals: z,
    }
}

/// B-scores of a plate grid: median-polish residuals / (1.4826 · MAD of the residuals).
/// All NaN when the MAD is 0.
pub fn b_score(grid: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mp = median_polish(grid, rows, cols);
    let scale = mad(&mp.residuals).map(|m| m * MAD_SCALE).unwrap_or(0.0);
    mp.residuals
        .iter()
        .map(|v| if scale > 0.0 { v / scale } else { f64::NAN })
        .collect()
}

/// Options of [`normalize`].
#[derive(Debug, Clone)]
pub struct NormalizeOptions<'a> {
    /// Readout column.
    pub value: &'a str,
    /// Column that names the controls.
    pub control_col: &'a str,
    pub neg: &'a str,
    pub pos: &'a str,
    /// Plate column (one plate when `None`).
    pub by: Option<&'a str>,
    /// Well name column (`Metadata_Well`).
    pub well_col: &'a str,
}

/// Edge-effect report of one plate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeEffect {
    pub group: String,
    /// Plate format used for the grid.
    pub rows: usize,
    pub cols: usize,
    /// Mean robust z of the outer wells minus the inner wells.
    pub edge_minus_inner: Option<f64>,
    /// Welch t-test p-value of that difference.
    pub edge_p_value: Option<f64>,
    /// Slope of the median-polish row effects per row, in robust-SD units.
    pub row_trend: Option<f64>,
    /// Slope of the median-polish column effects per column, in robust-SD units.
    pub col_trend: Option<f64>,
    /// Row and column effects of the median polish (raw units).
    pub row_effects: Vec<f64>,
    pub col_effects: Vec<f64>,
    /// `edge effect` when the outer wells differ (p < 0.01 and |difference| ≥ 0.5 robust SD),
    /// `row trend` / `column trend` when a trend exceeds 0.1 robust SD per row or column.
    pub flags: Vec<String>,
}

/// Normalised columns, one value per input row (NaN where not computable).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub percent_of_control: Vec<f64>,
    pub npi: Vec<f64>,
    pub z_score: Vec<f64>,
    pub robust_z: Vec<f64>,
    pub b_score: Vec<f64>,
    pub edges: Vec<EdgeEffect>,
}

/// Normalises a readout per plate; see the module docs.
pub fn normalize(table: &ipscope_table::RecordBatch, o: &NormalizeOptions) -> Result<Normalized> {
    let values = numeric(table, o.value)?;
    let roles = text(table, o.control_col)?;
    let wells = text(table, o.well_col)?;
    let keys = group_keys(table, o.by)?;
    let n = values.len();
    let mut out = Normalized {
        percent_of_control: vec![f64::NAN; n],
        npi: vec![f64::NAN; n],
        z_score: vec![f64::NAN; n],
        robust_z: vec![f64::NAN; n],
        b_score: vec![f64::NAN; n],
        edges: Vec::new(),
    };
    let mut pos_of = Vec::with_capacity(n);
    for (i, w) in wells.iter().enumerate() {
        let p = w.as_deref().and_then(parse_well).ok_or_else(|| {
            Error::Invalid(format!(
                "row {i}: `{}` in column `{}` is not a well name like B02",
                w.as_deref().unwrap_or(""),
                o.well_col
            ))
        })?;
        pos_of.push(p);
    }
    for g in distinct(&keys) {
        let rows: Vec<usize> = (0..n).filter(|&i| keys[i] == g).collect();
        let of_role = |name: &str| -> Vec<f64> {
            rows.iter()
                .filter(|&&i| roles[i].as_deref() == Some(name))
                .map(|&i| values[i])
                .collect()
        };
        let mn = Describe::of(&of_role(o.neg)).mean;
        let mp = Describe::of(&of_role(o.pos)).mean;
        let samples: Vec<usize> = {
            let s: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| {
                    let r = roles[i].as_deref();
                    r != Some(o.neg) && r != Some(o.pos)
                })
                .collect();
            if s.is_empty() {
                rows.clone()
            } else {
                s
            }
        };
        let sample_values: Vec<f64> = samples.iter().map(|&i| values[i]).collect();
        let d = Describe::of(&sample_values);
        let robust_sd = d.mad.map(|m| m * MAD_SCALE);
        for &i in &rows {
            let x = values[i];
            if let Some(mn) = mn {
                if mn != 0.0 {
                    out.percent_of_control[i] = 100.0 * x / mn;
                }
                if let Some(mp) = mp {
                    if mn != mp {
                        out.npi[i] = 100.0 * (mn - x) / (mn - mp);
                    }
                }
            }
            if let (Some(m), Some(s)) = (d.mean, d.sd) {
                if s > 0.0 {
                    out.z_score[i] = (x - m) / s;
                }
            }
            if let (Some(m), Some(s)) = (d.median, robust_sd) {
                if s > 0.0 {
                    out.robust_z[i] = (x - m) / s;
                }
            }
        }
        // B-score grid; duplicate wells would make the grid ambiguous.
        let positions: Vec<WellPos> = rows.iter().map(|&i| pos_of[i]).collect();
        let (nr, nc) = plate_shape(&positions).ok_or_else(|| {
            Error::Invalid(format!(
                "plate `{g}`: a well in column `{}` lies beyond a 1536-well plate (32 x 48)",
                o.well_col
            ))
        })?;
        let mut grid = vec![f64::NAN; nr * nc];
        let mut seen: BTreeMap<WellPos, usize> = BTreeMap::new();
        for &i in &rows {
            let p = pos_of[i];
            if let Some(prev) = seen.insert(p, i) {
                return Err(Error::Invalid(format!(
                    "plate `{g}`: well in rows {prev} and {i} is the same ({}); normalise per-well tables",
                    wells[i].as_deref().unwrap_or("")
                )));
            }
            grid[p.row * nc + p.col] = values[i];
        }
        let bs = b_score(&grid, nr, nc);
        for &i in &rows {
            let p = pos_of[i];
            out.b_score[i] = bs[p.row * nc + p.col];
        }
        out.edges.push(edge_effect(
            &g,
            &grid,
            nr,
            nc,
            &rows.iter().map(|&i| out.robust_z[i]).collect::<Vec<_>>(),
            &positions,
            robust_sd,
        ));
    }
    Ok(out)
}

fn edge_effect(
    group: &str,
    grid: &[f64],
    rows: usize,
    cols: usize,
    robust_z: &[f64],
    positions: &[WellPos],
    robust_sd: Option<f64>,
) -> EdgeEffect {
    let is_edge = |p: &WellPos| p.row == 0 || p.col == 0 || p.row + 1 == rows || p.col + 1 == cols;
    let pick = |edge: bool| -> Vec<f64> {
        positions
            .iter()
            .zip(robust_z)
            .filter(|(p, z)| is_edge(p) == edge && !z.is_nan())
            .map(|(_, z)| *z)
            .collect()
    };
    let (outer, inner) = (Describe::of(&pick(true)), Describe::of(&pick(false)));
    let mut e = EdgeEffect {
        group: group.to_string(),
        rows,
        cols,
        edge_minus_inner: None,
        edge_p_value: None,
        row_trend: None,
        col_trend: None,
        row_effects: Vec::new(),
        col_effects: Vec::new(),
        flags: Vec::new(),
    };
    if let (Some(mo), Some(mi)) = (outer.mean, inner.mean) {
        e.edge_minus_inner = Some(mo - mi);
        if let (Some(so), Some(si)) = (outer.sd, inner.sd) {
            let (vo, vi) = (so * so / outer.n as f64, si * si / inner.n as f64);
            let se = (vo + vi).sqrt();
            if se > 0.0 {
                let t = (mo - mi) / se;
                let df = (vo + vi).powi(2)
                    / (vo * vo / (outer.n - 1) as f64 + vi * vi / (inner.n - 1) as f64);
                if let Ok(dist) = StudentsT::new(0.0, 1.0, df) {
                    e.edge_p_value = Some(2.0 * (1.0 - dist.cdf(t.abs())));
                }
            }
        }
    }
    let mp = median_polish(grid, rows, cols);
    if let Some(s) = robust_sd.filter(|s| *s > 0.0) {
        e.row_trend = slope(&mp.row).map(|v| v / s);
        e.col_trend = slope(&mp.col).map(|v| v / s);
    }
    e.row_effects = mp.row;
    e.col_effects = mp.col;
    if e.edge_p_value.is_some_and(|p| p < 0.01)
        && e.edge_minus_inner.is_some_and(|d| d.abs() >= 0.5)
    {
        e.flags.push("edge effect".to_string());
    }
    if e.row_trend.is_some_and(|t| t.abs() > 0.1) {
        e.flags.push("row trend".to_string());
    }
    if e.col_trend.is_some_and(|t| t.abs() > 0.1) {
        e.flags.push("column trend".to_string());
    }
    e
}

/// Least-squares slope of `v` against its index.
fn slope(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n < 2 {
        return None;
    }
    let mx = (n - 1) as f64 / 2.0;
    let my = v.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in v.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wells_parse() {
        assert_eq!(parse_well("B02"), Some(WellPos { row: 1, col: 1 }));
        assert_eq!(parse_well("p24"), Some(WellPos { row: 15, col: 23 }));
        assert_eq!(parse_well("AF48"), Some(WellPos { row: 31, col: 47 }));
        assert_eq!(parse_well("B00"), None);
        assert_eq!(parse_well("12"), None);
        assert_eq!(plate_shape(&[WellPos { row: 9, col: 2 }]), Some((16, 24)));
        assert_eq!(
            plate_shape(&[WellPos {
                row: 0,
                col: 4_000_000
            }]),
            None
        );
    }

    #[test]
    fn median_polish_hand_case() {
        // An additive grid: overall 10, row effects ±1, column effects −2, 0, 2, no residual.
        let grid = [7.0, 9.0, 11.0, 9.0, 11.0, 13.0];
        let mp = median_polish(&grid, 2, 3);
        assert!(mp.residuals.iter().all(|r| r.abs() < 1e-12));
        assert!((mp.overall - 10.0).abs() < 1e-12);
        assert_eq!(mp.row, vec![-1.0, 1.0]);
        assert_eq!(mp.col, vec![-2.0, 0.0, 2.0]);
    }
}
