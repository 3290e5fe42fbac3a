//! Per-object colocalisation of two channels, as CellProfiler's MeasureColocalization (and
//! cp-measure's `get_correlation_*`) computes it.
//!
//! Both images are put on CellProfiler's 0..1 scale (divided by the type's [`Pixel::MAX`]);
//! `a`, `b` are the object's pixels of the first and second channel.
//!
//! - `Correlation` (Pearson): `cov(a, b) / (σa σb)`; NaN when a channel is constant.
//! - `Slope`: least-squares slope of `b` on `a`, `cov(a, b) / var(a)`.
//! - Thresholds (CellProfiler's default 15 %): `ta = 0.15 · max a`, `tb = 0.15 · max b`;
//!   "combined" pixels have `a ≥ ta` and `b ≥ tb`. With no combined pixel every thresholded
//!   measure is 0 (CellProfiler's convention).
//! - `Manders` M1 = Σa over combined / Σa over `a ≥ ta`; M2 likewise for `b`.
//! - `Overlap` = Σab / √(Σa² Σb²), `K1` = Σab / Σa², `K2` = Σab / Σb², sums over combined.
//! - `RWC` (rank-weighted colocalisation): dense ranks of `a` and of `b` within the object
//!   (0 = lowest distinct value), `R` = highest rank + 1, weight `(R − |rank a − rank b|) / R`;
//!   RWC1 = Σ a·w over combined / Σa over `a ≥ ta`, RWC2 likewise.
//!
//! Cost: one pass over each object's bounding box plus two sorts of its pixels (RWC).

use super::measure_shape;
use ipscope_image::{ImageView, Labels, Pixel};

/// Threshold (percent of each channel's maximum in the object) of CellProfiler's
/// MeasureColocalization.
pub const COLOCALIZATION_THRESHOLD: f64 = 15.0;

/// Colocalisation of one object between channels A and B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Colocalization {
    /// Pearson correlation (`Correlation_Correlation_A_B`).
    pub correlation: f64,
    /// Slope of B on A (`Correlation_Slope_A_B`).
    pub slope: f64,
    /// Manders M1 (`Correlation_Manders_A_B`).
    pub manders_1: f64,
    /// Manders M2 (`Correlation_Manders_B_A`).
    pub manders_2: f64,
    /// Overlap coefficient (`Correlation_Overlap_A_B`).
    pub overlap: f64,
    /// K1 (`Correlation_K_A_B`).
    pub k1: f64,
    /// K2 (`Correlation_K_B_A`).
    pub k2: f64,
    /// RWC1 (`Correlation_RWC_A_B`).
    pub rwc_1: f64,
    /// RWC2 (`Correlation_RWC_B_A`).
    pub rwc_2: f64,
}

const NAN_COLOC: Colocalization = Colocalization {
    correlation: f64::NAN,
    slope: f64::NAN,
    manders_1: f64::NAN,
    manders_2: f64::NAN,
    overlap: f64::NAN,
    k1: f64::NAN,
    k2: f64::NAN,
    rwc_1: f64::NAN,
    rwc_2: f64::NAN,
};

/// Dense ranks (0 = lowest distinct value) of `v`.
fn dense_ranks(v: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]).then(i.cmp(&j)));
    let mut ranks = vec![0usize; v.len()];
    let mut r = 0usize;
    for k in 0..order.len() {
        if k > 0 && v[order[k]] != v[order[k - 1]] {
            r += 1;
        }
        ranks[order[k]] = r;
    }
    ranks
}

/// Colocalisation of the pixel pairs `(a[i], b[i])` of one object (non-empty).
pub fn colocalization_of(a: &[f64], b: &[f64], threshold_percent: f64) -> Colocalization {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    let correlation = sab / (saa * sbb).sqrt();
    let slope = sab / saa;
    let ta = threshold_percent / 100.0 * a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tb = threshold_percent / 100.0 * b.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let combined: Vec<bool> = a.iter().zip(b).map(|(&x, &y)| x >= ta && y >= tb).collect();
    let mut out = Colocalization {
        correlation,
        slope,
        manders_1: 0.0,
        manders_2: 0.0,
        overlap: 0.0,
        k1: 0.0,
        k2: 0.0,
        rwc_1: 0.0,
        rwc_2: 0.0,
    };
    if !combined.iter().any(|&c| c) {
        return out;
    }
    let tot_a: f64 = a.iter().filter(|&&x| x >= ta).sum();
    let tot_b: f64 = b.iter().filter(|&&y| y >= tb).sum();
    let ra = dense_ranks(a);
    let rb = dense_ranks(b);
    let r = (ra.iter().max().copied().unwrap_or(0)).max(rb.iter().max().copied().unwrap_or(0)) + 1;
    let (mut ca, mut cb, mut aa, mut bb, mut ab, mut wa, mut wb) =
        (0f64, 0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for i in 0..a.len() {
        if !combined[i] {
            continue;
        }
        let (x, y) = (a[i], b[i]);
        ca += x;
        cb += y;
        aa += x * x;
        bb += y * y;
        ab += x * y;
        let w = (r - ra[i].abs_diff(rb[i])) as f64 / r as f64;
        wa += x * w;
        wb += y * w;
    }
    out.manders_1 = ca / tot_a;
    out.manders_2 = cb / tot_b;
    out.overlap = ab / (aa * bb).sqrt();
    out.k1 = ab / aa;
    out.k2 = ab / bb;
    out.rwc_1 = wa / tot_a;
    out.rwc_2 = wb / tot_b;
    out
}

/// Colocalisation of channels `a` and `b` in every object `1..=count` (index `i` = label
/// `i + 1`) with CellProfiler's 15 % threshold; NaN for absent labels.
///
/// # Panics
/// If an image does not have the size of `labels`.
pub fn measure_colocalization<T: Pixel, U: Pixel>(
    labels: &Labels,
    a: ImageView<T>,
    b: ImageView<U>,
) -> Vec<Colocalization> {
    for (w, h) in [(a.width(), a.height()), (b.width(), b.height())] {
        assert!(
            w == labels.width() && h == labels.height(),
            "measure_colocalization: image is {w}x{h}, labels are {}x{}",
            labels.width(),
            labels.height()
        );
    }
    let lab = labels.image();
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    measure_shape(labels)
        .iter()
        .map(|s| {
            if s.area == 0 {
                return NAN_COLOC;
            }
            fa.clear();
            fb.clear();
            for r in s.bbox_min_y..s.bbox_max_y {
                let (c0, c1) = (s.bbox_min_x, s.bbox_max_x);
                for ((&l, &x), &y) in lab.row(r)[c0..c1]
                    .iter()
                    .zip(&a.row(r)[c0..c1])
                    .zip(&b.row(r)[c0..c1])
                {
                    if l == s.label {
                        fa.push(x.to_f64() / T::MAX);
                        fb.push(y.to_f64() / U::MAX);
                    }
                }
            }
            colocalization_of(&fa, &fb, COLOCALIZATION_THRESHOLD)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_channels_colocalise_fully() {
        let a = [0.1, 0.5, 0.9, 0.3];
        let c = colocalization_of(&a, &a, 15.0);
        assert!((c.correlation - 1.0).abs() < 1e-12);
        assert!((c.slope - 1.0).abs() < 1e-12);
        assert_eq!((c.manders_1, c.manders_2), (1.0, 1.0));
        assert!((c.overlap - 1.0).abs() < 1e-12);
        assert_eq!((c.rwc_1, c.rwc_2), (1.0, 1.0));
    }

    #[test]
    fn dense_ranks_share_ties() {
        assert_eq!(dense_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![2, 0, 2, 1]);
    }
}
