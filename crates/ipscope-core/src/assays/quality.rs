//! Image quality of one field, after CellProfiler's MeasureImageQuality.
//!
//! * `FocusScore`: normalised variance, `Σ (x − μ)² / (N · μ)` (CellProfiler's
//!   `ImageQuality_FocusScore`; Groen, Young & Ligthart, "A comparison of different focus
//!   functions for use in autofocus algorithms", Cytometry 6 (1985)). Higher = sharper.
//! * `PowerLogLogSlope`: slope of log(power spectrum summed per radius) against log(radius)
//!   at low spatial frequencies, computed as CellProfiler computes
//!   `ImageQuality_PowerLogLogSlope` (centrosome's radial power spectrum; Bray et al.,
//!   "Workflow and metrics for image quality control in large-scale high-content screens",
//!   J Biomol Screen 17 (2012)); see [`power_log_log_slope`]. Blurred images lose high
//!   frequencies, so their slope is more negative.
//! * `PercentMaximal`: percent of pixels at the image's maximum value when that maximum is the
//!   sample type's ceiling (saturation), as CellProfiler's `ImageQuality_PercentMaximal`.
//! * Low content: the field's content (pixels above an Otsu threshold) is below
//!   `min_content_fraction`, or the image is flat.
//! * Debris: bright compact blobs far larger than the expected object (area above
//!   `debris_area`) covering more than `max_debris_fraction` of the field.
//!
//! [`assess`] combines them into flags with a reason; the pipeline records the reason and
//! leaves flagged fields out of well statistics.

use std::cell::RefCell;

use ipscope_image::ImageView;
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};

use crate::ops::label::{component_areas, Connectivity};
use crate::ops::threshold::otsu;

thread_local! {
    /// Transform plans (twiddles, algorithm choice) per length, kept per thread: fields of one
    /// plate share their sizes.
    static FFT_PLANNER: RefCell<FftPlanner<f64>> = RefCell::new(FftPlanner::new());
}

/// Measurements of one image (CellProfiler's `ImageQuality_*` names in tables).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageQuality {
    pub focus_score: f64,
    pub power_log_log_slope: f64,
    /// Percent (0..100) of pixels at the sample type's ceiling.
    pub percent_saturated: f64,
    /// Fraction of pixels above Otsu's threshold.
    pub content_fraction: f64,
    /// Fraction of pixels in bright objects larger than `debris_area`.
    pub debris_fraction: f64,
}

/// Flagging thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityParams {
    /// Flag when more than this percent of pixels are saturated. Default 1.
    pub max_percent_saturated: f64,
    /// Flag when less than this fraction of the field is foreground. Default 0.002.
    pub min_content_fraction: f64,
    /// Flag when the focus score is below this (0 disables). Default 0.
    pub min_focus_score: f64,
    /// Flag when the power log-log slope is below this (more negative = blurrier; `-inf`
    /// disables). Default −inf.
    pub min_power_log_log_slope: f64,
    /// Objects above this area (pixels) count as debris. Default 20000.
    pub debris_area: u64,
    /// Flag when debris covers more than this fraction of the field. Default 0.05.
    pub max_debris_fraction: f64,
}

impl Default for QualityParams {
    fn default() -> Self {
        QualityParams {
            max_percent_saturated: 1.0,
            min_content_fraction: 0.002,
            min_focus_score: 0.0,
            min_power_log_log_slope: f64::NEG_INFINITY,
            debris_area: 20_000,
            max_debris_fraction: 0.05,
        }
    }
}

/// `Σ f(x)` over the image in f64: eight running sums per row (a fixed order, so it
/// vectorises and gives the same bits on every run), rows added in order.
fn sum_pixels<F: Fn(f64) -> f64>(img: ImageView<f32>, f: F) -> f64 {
    img.rows().map(|row| sum_row(row, &f)).sum()
}

crate::ops::dispatched! {
    /// One row of [`sum_pixels`] (compiled for AVX2 too: the lanes' sums are the same).
    fn sum_row<F: Fn(f64) -> f64>(row: &[f32], f: &F) -> f64 {
        let chunks = row.chunks_exact(8);
        let tail = chunks.remainder();
        let mut acc = [0f64; 8];
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(f64::from(v));
            }
        }
        let lanes =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        tail.iter().fold(lanes, |s, &v| s + f(f64::from(v)))
    }
}

crate::ops::dispatched! {
    /// Row `a` less `mean` as the real parts of `z`, and row `b` (the next row, if any) less
    /// `mean` as the imaginary parts (0 without it), for one complex transform of both; as
    /// in [`power_log_log_slope`], a non-finite pixel reads as 0.
    fn pack_rows(a: &[f32], b: Option<&[f32]>, mean: f64, z: &mut [Complex64]) {
        let value = |v: f32| finite_or_zero(f64::from(v));
        match b {
            Some(b) => {
                for ((z, &a), &b) in z.iter_mut().zip(a).zip(b) {
                    *z = Complex64::new(value(a) - mean, value(b) - mean);
                }
            }
            None => {
                for (z, &a) in z.iter_mut().zip(a) {
                    *z = Complex64::new(value(a) - mean, 0.0);
                }
            }
        }
    }
}

/// A pixel as [`power_log_log_slope`] reads it: non-finite pixels count as 0.
#[inline(always)]
fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// How many pixels of `img` are `mean` as [`power_log_log_slope`] reads them (non-finite
/// pixels as 0): none unless `mean` is an f32, since every pixel is one.
fn pixels_at(img: ImageView<f32>, mean: f64) -> usize {
    if f64::from(mean as f32) != mean {
        return 0;
    }
    img.rows()
        .map(|row| {
            row.iter()
                .filter(|&&v| finite_or_zero(f64::from(v)) == mean)
                .count()
        })
        .sum()
}

/// `Σ (x − μ)² / (N · μ)`; 0 for an empty image or a non-positive mean.
pub fn focus_score(img: ImageView<f32>) -> f64 {
    let n = img.len();
    if n == 0 {
        return 0.0;
    }
    let mean = sum_pixels(img, |v| v) / n as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    sum_pixels(img, |v| (v - mean) * (v - mean)) / (n as f64 * mean)
}

/// CellProfiler's `PowerLogLogSlope` (MeasureImageQuality, through centrosome's radial power
/// spectrum `rps`): the image, less its mean, is Fourier transformed whole; each frequency
/// `(u, v)` gets the radius `⌊√(u'² + v'²)⌋` with `u' = min(u, H − 1 − u)` and
/// `v' = min(v, W − 1 − v)` (centrosome folds the frequencies by flipping the index grid, so
/// negative frequencies sit one step nearer the origin than their magnitude); the power
/// `|F|²` is summed per radius `k` for `k` in `1 ..= ⌊min(H, W) / 8⌋ − 2` (label `k + 1`;
/// DC and the outer frequencies are left out to avoid edge effects), and the result is the
/// least-squares slope of `ln(sum)` against `ln(k + 1)` over the radii with power.
///
/// 0 where CellProfiler gives 0: images under 24 px on a side (no radius), constant images,
/// images where over half of the pixels equal the mean (CellProfiler's scaling by the median
/// absolute deviation divides by zero there), or fewer than two radii with power.
/// Non-finite pixels count as 0.
///
/// Only the frequencies inside the radius limit are needed, so only the columns of the row
/// transforms that reach them are kept and transformed down the columns: for a 2160² field
/// that is 272 of 2160 columns. Rows are transformed two at a time, packed into one complex
/// transform (real input).
pub fn power_log_log_slope(img: ImageView<f32>) -> f64 {
    let (h, w) = (img.height(), img.width());
    // centrosome: labels = arange(2, floor(min(H, W) / 8)), radius k = label - 1.
    let top = h.min(w) / 8;
    if top < 3 {
        return 0.0;
    }
    let kmax = top - 2;
    let mean = sum_pixels(img, finite_or_zero) / (h * w) as f64;
    // Constant images (every pixel at the mean) and a zero median absolute deviation.
    if 2 * pixels_at(img, mean) > h * w {
        return 0.0;
    }
    // Columns 0..=kmax + 1 of every row's transform: the positive frequencies up to kmax
    // directly, the negative ones as complex conjugates of their mirror images. They are
    // gathered for `TILE` rows at a time in `tile` (column-major) and copied down `cols`
    // in runs of `TILE`: storing each row's values straight into their columns touched a
    // page per value.
    const TILE: usize = 32;
    let ncols = kmax + 2;
    let n = ncols * h;
    let mut cols: Vec<Complex64> = Vec::with_capacity(n);
    FFT_PLANNER.with_borrow_mut(|planner| {
        let row_fft = planner.plan_fft_forward(w);
        let col_fft = planner.plan_fft_forward(h);
        let mut scratch = vec![
            Complex64::new(0.0, 0.0);
            row_fft
                .get_inplace_scratch_len()
                .max(col_fft.get_inplace_scratch_len())
        ];
        let mut z = vec![Complex64::new(0.0, 0.0); w];
        let mut tile = vec![Complex64::new(0.0, 0.0); ncols * TILE];
        let spare = &mut cols.spare_capacity_mut()[..n];
        for r0 in (0..h).step_by(TILE) {
            let rows = TILE.min(h - r0);
            // Rows in pairs (TILE is even, so the pairs are those of the whole image); the
            // last row of an odd height alone.
            for j in (0..rows).step_by(2) {
                let pair = j + 1 < rows;
                let b = pair.then(|| img.row(r0 + j + 1));
                pack_rows(img.row(r0 + j), b, mean, &mut z);
                row_fft.process_with_scratch(&mut z, &mut scratch);
                for (k, t) in tile.chunks_exact_mut(TILE).enumerate() {
                    let zk = z[k];
                    if pair {
                        // z = a + i b: A(k) = (Z(k) + Z*(−k)) / 2, B(k) = (Z(k) − Z*(−k)) / 2i.
                        let zm = z[if k == 0 { 0 } else { w - k }].conj();
                        t[j] = (zk + zm) * 0.5;
                        let d = zk - zm;
                        t[j + 1] = Complex64::new(d.im * 0.5, -d.re * 0.5);
                    } else {
                        t[j] = zk;
                    }
                }
            }
            for (k, t) in tile.chunks_exact(TILE).enumerate() {
                for (o, &v) in spare[k * h + r0..k * h + r0 + rows].iter_mut().zip(t) {
                    o.write(v);
                }
            }
        }
        // SAFETY: the tiles cover rows 0..h in steps of TILE, and each wrote rows
        // r0..r0 + rows of every column k < ncols: all n = ncols · h elements.
        unsafe { cols.set_len(n) };
        col_fft.process_with_scratch(&mut cols, &mut scratch);
    });
    // Σ |F(u, v)|² per radius, column by column of `cols` (contiguous): column `c` holds
    // F(u, c), the frequencies v = c (folded: c) and, as F(u, w − c) = F*(−u, c), those of
    // v = w − c at the mirrored rows (folded: c − 1). |F|² is the same for F and F*.
    let mut sum = vec![0f64; kmax + 1];
    let mut radius = vec![0usize; kmax + 1];
    let mut add_column = |col: &[Complex64], fv: usize, mirrored: bool| {
        // ⌊√(fu² + fv²)⌋ for fu = 0..=kmax, growing with fu: the integer square root, which
        // is what the f64 square root floors to for these small integers.
        let mut k = fv;
        for (fu, rk) in radius.iter_mut().enumerate() {
            let n = fu * fu + fv * fv;
            while (k + 1) * (k + 1) <= n {
                k += 1;
            }
            *rk = k;
        }
        let mut add = |fu: usize, f: Complex64| {
            let k = radius[fu];
            if (1..=kmax).contains(&k) {
                sum[k] += f.norm_sqr();
            }
        };
        // Rows u = 0..=kmax (folded fu = u) and u = h − 1 − kmax..h (fu = h − 1 − u); a
        // mirrored column holds row u at (h − u) mod h.
        for u in 0..=kmax {
            add(u, col[if mirrored && u > 0 { h - u } else { u }]);
        }
        for u in h - 1 - kmax..h {
            add(h - 1 - u, col[if mirrored { h - u } else { u }]);
        }
    };
    for (c, col) in cols.chunks_exact(h).enumerate() {
        if c <= kmax {
            add_column(col, c, false);
        }
        if c >= 1 {
            add_column(col, c - 1, true);
        }
    }
    let pts: Vec<(f64, f64)> = (1..=kmax)
        .filter(|&k| sum[k] > 0.0)
        .map(|k| (((k + 1) as f64).ln(), sum[k].ln()))
        .collect();
    if pts.len() < 2 {
        return 0.0;
    }
    least_squares_slope(&pts)
}

/// The slope of the least-squares line through `(x, y)` points (at least two, not all at
/// one `x`).
fn least_squares_slope(pts: &[(f64, f64)]) -> f64 {
    let m = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / m;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / m;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

/// Measures one image. `ceiling` is the sample type's maximum on the image's scale (1.0 for
/// images scaled to 0..1).
pub fn measure_quality(img: ImageView<f32>, ceiling: f32, params: &QualityParams) -> ImageQuality {
    let n = img.len().max(1) as f64;
    // Counted row by row (a flattened iterator over the rows does not vectorise).
    let saturated = img
        .rows()
        .map(|r| r.iter().filter(|&&v| v >= ceiling).count())
        .sum::<usize>() as f64;
    let (content_fraction, debris_fraction) = match otsu(img, 256) {
        Some(t) => {
            // Component sizes only: no label image is needed.
            let areas = component_areas(img.map(|v| v > t).view(), Connectivity::Eight);
            let fgc: u64 = areas.iter().sum();
            let debris: u64 = areas.iter().filter(|&&a| a > params.debris_area).sum();
            (fgc as f64 / n, debris as f64 / n)
        }
        None => (0.0, 0.0),
    };
    ImageQuality {
        focus_score: focus_score(img),
        power_log_log_slope: power_log_log_slope(img),
        percent_saturated: 100.0 * saturated / n,
        content_fraction,
        debris_fraction,
    }
}

/// The reasons a field is flagged (empty when it passes), e.g. `saturated 3.2% > 1%`.
pub fn assess(q: &ImageQuality, params: &QualityParams) -> Vec<String> {
    let mut reasons = Vec::new();
    if q.percent_saturated > params.max_percent_saturated {
        reasons.push(format!(
            "saturated {:.2}% > {}%",
            q.percent_saturated, params.max_percent_saturated
        ));
    }
    if q.content_fraction < params.min_content_fraction {
        reasons.push(format!(
            "low content {:.4} < {}",
            q.content_fraction, params.min_content_fraction
        ));
    }
    if q.focus_score < params.min_focus_score {
        reasons.push(format!(
            "out of focus: focus score {:.4} < {}",
            q.focus_score, params.min_focus_score
        ));
    }
    if q.power_log_log_slope < params.min_power_log_log_slope {
        reasons.push(format!(
            "out of focus: power log-log slope {:.3} < {}",
            q.power_log_log_slope, params.min_power_log_log_slope
        ));
    }
    if q.debris_fraction > params.max_debris_fraction {
        reasons.push(format!(
            "debris covers {:.3} > {}",
            q.debris_fraction, params.max_debris_fraction
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::filter::gaussian_blur;
    use ipscope_image::Image;

    fn pattern(w: usize, h: usize) -> Image<f32> {
        // Deterministic pseudo-random speckle.
        let mut s = 12345u64;
        Image::from_fn(w, h, |_, _| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            0.2 + 0.5 * ((s >> 33) as f32 / (1u64 << 31) as f32)
        })
    }

    #[test]
    fn blur_lowers_focus_and_slope() {
        let sharp = pattern(64, 64);
        let blur = gaussian_blur(sharp.view(), 2.0);
        assert!(focus_score(blur.view()) < focus_score(sharp.view()));
        let (s0, s1) = (
            power_log_log_slope(sharp.view()),
            power_log_log_slope(blur.view()),
        );
        // A flat spectrum summed over rings whose pixel count grows with the radius.
        assert!(
            (s0 - 1.0).abs() < 0.2,
            "white noise has a flat spectrum: {s0}"
        );
        assert!(s1 < s0 - 1.0, "blur steepens the slope: {s1} vs {s0}");
    }

    #[test]
    fn flags_saturation_and_empty_fields() {
        let p = QualityParams::default();
        let flat = Image::new(32, 32, 0.1f32);
        let q = measure_quality(flat.view(), 1.0, &p);
        assert_eq!(q.focus_score, 0.0);
        assert!(assess(&q, &p).iter().any(|r| r.starts_with("low content")));
        let sat = Image::from_fn(32, 32, |r, _| if r < 4 { 1.0f32 } else { 0.1 });
        let q = measure_quality(sat.view(), 1.0, &p);
        assert!((q.percent_saturated - 12.5).abs() < 1e-9);
        assert!(assess(&q, &p).iter().any(|r| r.starts_with("saturated")));
    }

    /// The definition in [`power_log_log_slope`]'s documentation, by a direct DFT of every
    /// frequency inside the radius limit.
    fn slope_by_direct_dft(img: ImageView<f32>) -> f64 {
        let (h, w) = (img.height(), img.width());
        let kmax = h.min(w) / 8 - 2;
        let mean = img.rows().flatten().map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64;
        let mut sum = vec![0f64; kmax + 1];
        for u in 0..h {
            for v in 0..w {
                let (fu, fv) = (u.min(h - 1 - u), v.min(w - 1 - v));
                let k = ((fu * fu + fv * fv) as f64).sqrt().floor() as usize;
                if k == 0 || k > kmax {
                    continue;
                }
                let (mut re, mut im) = (0f64, 0f64);
                for r in 0..h {
                    for c in 0..w {
                        let x = f64::from(img.get(r, c)) - mean;
                        let ang = -2.0
                            * std::f64::consts::PI
                            * ((u * r) as f64 / h as f64 + (v * c) as f64 / w as f64);
                        re += x * ang.cos();
                        im += x * ang.sin();
                    }
                }
                sum[k] += re * re + im * im;
            }
        }
        let pts: Vec<(f64, f64)> = (1..=kmax)
            .map(|k| (((k + 1) as f64).ln(), sum[k].ln()))
            .collect();
        least_squares_slope(&pts)
    }

    #[test]
    fn slope_matches_a_direct_dft() {
        // Odd and even sides, an odd row count (one row transformed alone), wide and tall,
        // the smallest side with two radii (32).
        for (w, h) in [(48, 48), (57, 41), (40, 65), (64, 50), (32, 90), (90, 33)] {
            let img = gaussian_blur(pattern(w, h).view(), 1.5);
            let (got, want) = (
                power_log_log_slope(img.view()),
                slope_by_direct_dft(img.view()),
            );
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{w}x{h}: {got} vs direct {want}"
            );
        }
    }

    #[test]
    fn degenerate_images_give_cellprofilers_zero() {
        // Under 24 px on a side: no radius between DC and the limit.
        assert_eq!(power_log_log_slope(pattern(23, 100).view()), 0.0);
        // Under 32: one radius, no line to fit.
        assert_eq!(power_log_log_slope(pattern(100, 31).view()), 0.0);
        assert_eq!(power_log_log_slope(Image::new(64, 64, 0.3f32).view()), 0.0);
        // Over half of the pixels at the mean: CellProfiler's scaling divides by zero.
        let spikes = Image::from_fn(64, 64, |r, c| match (r, c) {
            (0, 0) => 1.0f32,
            (1, 1) => 0.0,
            _ => 0.5,
        });
        assert_eq!(power_log_log_slope(spikes.view()), 0.0);
        // Non-finite pixels (read as 0) at a mean of 0 count as at the mean: 40 of 64 rows
        // of NaN over rows of ±1 pairs that sum to 0, and the same ±1 rows alone (a slope).
        let pairs = |r: usize, c: usize| {
            let s = if (r * 31 + (c / 2) * 17) % 7 < 3 {
                1.0
            } else {
                -1.0
            };
            if c.is_multiple_of(2) {
                s
            } else {
                -s
            }
        };
        let half_nan = Image::from_fn(64, 64, |r, c| if r < 40 { f32::NAN } else { pairs(r, c) });
        assert_eq!(power_log_log_slope(half_nan.view()), 0.0);
        assert_ne!(
            power_log_log_slope(Image::from_fn(64, 64, pairs).view()),
            0.0
        );
        // A non-finite pixel counts as 0.
        let mut nan = pattern(64, 64);
        let mut zero = nan.clone();
        nan.set(10, 10, f32::NAN);
        zero.set(10, 10, 0.0);
        assert_eq!(
            power_log_log_slope(nan.view()),
            power_log_log_slope(zero.view())
        );
    }
}
