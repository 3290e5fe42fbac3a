//! Marker positivity and heterogeneity of a population of cells.
//!
//! Every function takes one value per cell (usually the mean nuclear intensity of a marker,
//! `Nuclei_Intensity_MeanIntensity_<marker>`), so it serves any marker named with
//! `--channel`: pluripotency (OCT4, NANOG, SOX2, SSEA4) or lineage (cTnT, SOX17, PAX6, AFP).
//!
//! * Gates ([`Gate`]): a fixed value; Otsu's threshold of the cells' values
//!   (`skimage.filters.threshold_otsu(values)`, 256 bins) or of their logarithms; or a percentile of negative-control
//!   cells (`numpy.percentile(controls, q)`, linear interpolation), the usual flow-cytometry
//!   style gate "above the 99th percentile of the isotype / negative control".
//! * Summaries ([`summarize`]): % positive, coefficient of variation (population standard
//!   deviation / mean, as `scipy.stats.variation`), Shannon entropy (natural log) of the
//!   values' histogram in `ENTROPY_BINS` equal bins between the minimum and maximum (as
//!   `scipy.stats.entropy(numpy.histogram(values, bins)[0])`), and the Gini coefficient
//!   (mean absolute difference / (2 · mean), on values shifted to be non-negative).
//! * [`double_positive`]: the fraction of cells positive for two markers.
//!
//! Reference values come from `testdata/reference/colonies/make_marker_refs.py`.

use ipscope_image::ImageView;
use serde::{Deserialize, Serialize};

use crate::ops::threshold::{histogram_of_slice, otsu, otsu_from_histogram};

/// Number of equal-width bins of the entropy histogram.
pub const ENTROPY_BINS: usize = 32;

/// How a marker's positivity threshold is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Gate {
    /// A fixed threshold on the value's scale (CellProfiler 0..1 for intensities).
    Fixed { threshold: f64 },
    /// Otsu's threshold of the cells' own values.
    Otsu,
    /// Otsu's threshold of the natural log of the cells' positive values, mapped back
    /// (fluorescence is gated on a log scale, as in flow cytometry; CellProfiler's "log
    /// transform before thresholding"). The default.
    #[default]
    OtsuLog,
    /// The `percentile` (0..100) of the values of negative-control cells.
    Controls { percentile: f64 },
}

/// Errors of marker gating.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("a control-based gate needs negative-control cells, but none were given")]
    NoControls,
    #[error("percentile {0} is outside 0..100")]
    BadPercentile(f64),
    #[error("fixed threshold {0} is not a finite number")]
    BadThreshold(f64),
}

/// Linear-interpolation percentile (numpy's default) of the finite values; `None` if none.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(v[lo] + (v[hi] - v[lo]) * frac)
}

/// Otsu's threshold of the finite values (`skimage.filters.threshold_otsu`, 256 bins);
/// `None` when fewer than two distinct values.
pub fn otsu_values(values: &[f64]) -> Option<f64> {
    let v: Vec<f32> = values
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x as f32)
        .collect();
    let view = ImageView::from_slice(&v, v.len(), 1, v.len()).ok()?;
    otsu(view, 256).map(f64::from)
}

/// Resolves a gate to a threshold. `values` are the cells being gated (for Otsu),
/// `controls` the negative-control cells (for a control gate).
///
/// Returns `Ok(None)` when the values give no threshold (Otsu on fewer than two distinct
/// values): every cell then counts as negative.
pub fn resolve_gate(
    gate: &Gate,
    values: &[f64],
    controls: &[f64],
) -> Result<Option<f64>, GateError> {
    match gate {
        Gate::Fixed { threshold } => {
            if threshold.is_finite() {
                Ok(Some(*threshold))
            } else {
                Err(GateError::BadThreshold(*threshold))
            }
        }
        Gate::Otsu => Ok(otsu_values(values)),
        Gate::OtsuLog => {
            let logs: Vec<f64> = values
                .iter()
                .filter(|v| **v > 0.0 && v.is_finite())
                .map(|v| v.ln())
                .collect();
            Ok(otsu_values(&logs).map(f64::exp))
        }
        Gate::Controls { percentile: q } => {
            if !(0.0..=100.0).contains(q) {
                return Err(GateError::BadPercentile(*q));
            }
            percentile(controls, *q)
                .map(Some)
                .ok_or(GateError::NoControls)
        }
    }
}

/// The value Otsu's gate histograms for a cell's value, as [`resolve_gate`] forms it: the
/// value itself (`log` false) or its natural log (only for values > 0), in float32; `None`
/// for values left out (non-finite, or ≤ 0 on the log scale).
fn otsu_input(x: f64, log: bool) -> Option<f32> {
    let v = if log {
        if !(x > 0.0 && x.is_finite()) {
            return None;
        }
        x.ln() as f32
    } else {
        if !x.is_finite() {
            return None;
        }
        x as f32
    };
    v.is_finite().then_some(v)
}

/// [`resolve_gate`] for Otsu's gates (`log`: [`Gate::OtsuLog`], else [`Gate::Otsu`]) over
/// values too many to hold at once, e.g. a whole plate's nuclei kept in a file.
///
/// `feed` is called twice and must pass every value each time to the function it is given,
/// in chunks of any size and order: the first pass finds the range, the second counts the
/// 256-bin histogram (the counts of chunks add up to those of the whole), so the threshold
/// is the one [`resolve_gate`] gives on all the values in one slice.
pub fn resolve_otsu_streamed<E>(
    log: bool,
    mut feed: impl FnMut(&mut dyn FnMut(&[f64])) -> Result<(), E>,
) -> Result<Option<f64>, E> {
    const BINS: usize = 256;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    feed(&mut |chunk| {
        for v in chunk.iter().filter_map(|&x| otsu_input(x, log)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    })?;
    if lo >= hi {
        return Ok(None);
    }
    let mut counts = vec![0u64; BINS];
    let mut centers = Vec::new();
    let mut buf = Vec::new();
    feed(&mut |chunk| {
        buf.clear();
        buf.extend(chunk.iter().filter_map(|&x| otsu_input(x, log)));
        if let Some(h) = histogram_of_slice(&buf, BINS, (lo, hi)) {
            for (c, n) in counts.iter_mut().zip(&h.counts) {
                *c += n;
            }
            centers = h.bin_centers;
        }
    })?;
    let t = otsu_from_histogram(&counts, &centers).map(f64::from);
    Ok(if log { t.map(f64::exp) } else { t })
}

/// Positivity of each cell: `value > threshold` (NaN is negative; no threshold: all negative).
pub fn positive(values: &[f64], threshold: Option<f64>) -> Vec<bool> {
    values
        .iter()
        .map(|&v| threshold.is_some_and(|t| v > t))
        .collect()
}

/// Fraction of cells positive for both markers (NaN for no cells).
pub fn double_positive(a: &[bool], b: &[bool]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::NAN;
    }
    a.iter().zip(b).filter(|(x, y)| **x && **y).count() as f64 / n as f64
}

/// Per-population summary of one marker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarkerSummary {
    pub cells: u64,
    pub positive: u64,
    /// Percent positive (0..100); NaN for no cells.
    pub percent_positive: f64,
    /// Coefficient of variation (population SD / mean); NaN for no cells or mean 0.
    pub cv: f64,
    /// Shannon entropy (nats) of the values' histogram ([`ENTROPY_BINS`] bins).
    pub entropy: f64,
    /// Gini coefficient of the values (0 = all equal, → 1 = one cell holds everything).
    pub gini: f64,
    /// The threshold used; NaN when there was none.
    pub threshold: f64,
}

/// Shannon entropy (nats) of the histogram of the finite values in `bins` equal bins between
/// their minimum and maximum; 0 for a constant population, NaN for none.
pub fn histogram_entropy(values: &[f64], bins: usize) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() || bins == 0 {
        return f64::NAN;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        return 0.0;
    }
    let mut counts = vec![0u64; bins];
    let width = (hi - lo) / bins as f64;
    for &x in &v {
        // numpy: the last bin is closed on the right.
        let b = (((x - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let n = v.len() as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            p * p.ln()
        })
        .sum::<f64>()
}

/// Gini coefficient of the finite values, shifted so the minimum is ≥ 0; NaN for none or
/// when every value is 0.
pub fn gini(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let shift = v[0].min(0.0);
    for x in &mut v {
        *x -= shift;
    }
    let n = v.len() as f64;
    let sum: f64 = v.iter().sum();
    if sum <= 0.0 {
        return f64::NAN;
    }
    // Sorted form: G = Σ (2i − n − 1) x_i / (n Σ x), i = 1..n.
    let num: f64 = v
        .iter()
        .enumerate()
        .map(|(i, &x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
        .sum();
    num / (n * sum)
}

/// Coefficient of variation (population SD / mean) of the finite values.
pub fn cv(values: &[f64]) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    if mean == 0.0 {
        f64::NAN
    } else {
        var.sqrt() / mean
    }
}

/// Summarises a marker over cells with a resolved threshold.
pub fn summarize(values: &[f64], threshold: Option<f64>) -> MarkerSummary {
    let pos = positive(values, threshold);
    let k = pos.iter().filter(|&&p| p).count() as u64;
    let n = values.len() as u64;
    MarkerSummary {
        cells: n,
        positive: k,
        percent_positive: if n == 0 {
            f64::NAN
        } else {
            100.0 * k as f64 / n as f64
        },
        cv: cv(values),
        entropy: histogram_entropy(values, ENTROPY_BINS),
        gini: gini(values),
        threshold: threshold.unwrap_or(f64::NAN),
    }
}

/// An acceptance criterion such as `cTnT >= 80` (percent positive of a marker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub marker: String,
    pub op: CmpOp,
    /// Percent (0..100).
    pub value: f64,
}

/// Comparison of an acceptance criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
}

impl Criterion {
    /// Parses `MARKER OP VALUE [%]`, e.g. `cTnT >= 80 %` or `OCT4<5`.
    pub fn parse(s: &str) -> Result<Criterion, String> {
        let ops = [
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ];
        for (tok, op) in ops {
            if let Some(i) = s.find(tok) {
                let marker = s[..i].trim();
                let rest = s[i + tok.len()..].trim().trim_end_matches('%').trim();
                let value: f64 = rest
                    .parse()
                    .map_err(|_| format!("criterion {s:?}: {rest:?} is not a number"))?;
                if marker.is_empty() {
                    return Err(format!("criterion {s:?}: no marker name before {tok}"));
                }
                return Ok(Criterion {
                    marker: marker.to_string(),
                    op,
                    value,
                });
            }
        }
        Err(format!(
            "criterion {s:?}: expected MARKER OP PERCENT with OP one of >=, >, <=, < (e.g. \"cTnT >= 80 %\")"
        ))
    }

    /// Whether a percent-positive value passes; NaN (no cells) fails.
    pub fn passes(&self, percent: f64) -> bool {
        if !percent.is_finite() {
            return false;
        }
        match self.op {
            CmpOp::Ge => percent >= self.value,
            CmpOp::Gt => percent > self.value,
            CmpOp::Le => percent <= self.value,
            CmpOp::Lt => percent < self.value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_resolve() {
        let v = [0.1, 0.2, 0.15, 0.8, 0.9];
        assert_eq!(
            resolve_gate(&Gate::Fixed { threshold: 0.5 }, &v, &[]),
            Ok(Some(0.5))
        );
        let t = resolve_gate(&Gate::Otsu, &v, &[]).unwrap().unwrap();
        assert!(t > 0.2 && t < 0.8);
        assert_eq!(
            resolve_gate(&Gate::Controls { percentile: 99.0 }, &v, &[]),
            Err(GateError::NoControls)
        );
        assert_eq!(resolve_gate(&Gate::Otsu, &[0.3, 0.3], &[]), Ok(None));
        let s = summarize(&v, Some(0.5));
        assert_eq!((s.cells, s.positive), (5, 2));
        assert!((s.percent_positive - 40.0).abs() < 1e-12);
        let none = summarize(&[], None);
        assert!(none.percent_positive.is_nan());
    }

    #[test]
    fn streamed_otsu_equals_the_whole_slice() {
        // Skewed values with NaN, zeros and negatives, cut into uneven chunks and
        // fed in a shuffled order.
        let mut r = crate::testing::lcg32(7);
        let mut v: Vec<f64> = (0..5000)
            .map(|i| {
                let u = f64::from(r() % 10_000) / 10_000.0;
                match i % 97 {
                    0 => f64::NAN,
                    1 => 0.0,
                    2 => -u,
                    // Continuous, no gap: the threshold moves with the counts.
                    _ => 0.01 + u * u,
                }
            })
            .collect();
        v.push(f64::INFINITY);
        let cuts = [0, 1, 2, 700, 701, 2300, 4999, v.len()];
        let mut chunks: Vec<&[f64]> = cuts.windows(2).map(|w| &v[w[0]..w[1]]).collect();
        chunks.swap(0, 5);
        chunks.swap(2, 6);
        for (log, gate) in [(false, Gate::Otsu), (true, Gate::OtsuLog)] {
            let want = resolve_gate(&gate, &v, &[]).unwrap();
            let got = resolve_otsu_streamed::<()>(log, |f| {
                for c in &chunks {
                    f(c);
                }
                Ok(())
            })
            .unwrap();
            assert!(want.is_some());
            assert_eq!(got, want, "{gate:?}");
        }
        // Fewer than two distinct values: no threshold, as the whole-slice gate.
        let same = [0.3, 0.3, f64::NAN];
        let got = resolve_otsu_streamed::<()>(false, |f| {
            f(&same);
            Ok(())
        });
        assert_eq!(got, Ok(None));
        assert_eq!(resolve_gate(&Gate::Otsu, &same, &[]), Ok(None));
    }

    #[test]
    fn criteria_parse_and_pass() {
        let c = Criterion::parse("cTnT >= 80 %").unwrap();
        assert_eq!(c.marker, "cTnT");
        assert!(c.passes(80.0) && !c.passes(79.9) && !c.passes(f64::NAN));
        assert!(Criterion::parse("OCT4 ~ 3").is_err());
        assert!(Criterion::parse(">= 3").is_err());
        assert!(Criterion::parse("OCT4 < x").is_err());
    }
}
