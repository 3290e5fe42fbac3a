//! Image quality of one field, after CellProfiler's MeasureImageQuality.
//!
//! * `FocusScore`: normalised variance, `Σ (x − μ)² / (N · μ)` (CellProfiler's
//!   `ImageQuality_FocusScore`; Groen, Young & Ligthart, "A comparison of different focus
//!   functions for use in autofocus algorithms", Cytometry 6 (1985)). Higher = sharper.
//! * `PowerLogLogSlope`: slope of log(radially averaged power spectrum) against log(spatial
//!   frequency) (CellProfiler's `ImageQuality_PowerLogLogSlope`, Bray et al., "Workflow and
//!   metrics for image quality control in large-scale high-content screens", J Biomol Screen
//!   17 (2012)). Blurred images lose high frequencies, so their slope is more negative.
//!   Computed on the largest centred power-of-two square crop of the image.
//! * `PercentMaximal`: percent of pixels at the image's maximum value when that maximum is the
//!   sample type's ceiling (saturation), as CellProfiler's `ImageQuality_PercentMaximal`.
//! * Low content: the field's content (pixels above an Otsu threshold) is below
//!   `min_content_fraction`, or the image is flat.
//! * Debris: bright compact blobs far larger than the expected object (area above
//!   `debris_area`) covering more than `max_debris_fraction` of the field.
//!
//! [`assess`] combines them into flags with a reason; the pipeline records the reason and
//! leaves flagged fields out of well statistics.

use ipscope_image::ImageView;
use serde::{Deserialize, Serialize};

use crate::ops::label::{label, object_areas, Connectivity};
use crate::ops::threshold::otsu;

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

/// `Σ (x − μ)² / (N · μ)`; 0 for an empty image or a non-positive mean.
pub fn focus_score(img: ImageView<f32>) -> f64 {
    let n = img.len();
    if n == 0 {
        return 0.0;
    }
    let mean = img
        .rows()
        .flat_map(|r| r.iter())
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / n as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let ss: f64 = img
        .rows()
        .flat_map(|r| r.iter())
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum();
    ss / (n as f64 * mean)
}

/// Twiddle factors `(sin, cos)` of every butterfly stage of a length-`n` radix-2 FFT, stage
/// after stage (`len` = 2, 4, …, `n`; `len / 2` entries each), computed once per transform size
/// with the same expression the butterflies would use, so results do not change.
fn twiddles(n: usize) -> Vec<(f64, f64)> {
    let mut t = Vec::with_capacity(n);
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * std::f64::consts::PI / len as f64;
        t.extend((0..len / 2).map(|k| (ang * k as f64).sin_cos()));
        len <<= 1;
    }
    t
}

/// In-place iterative radix-2 FFT of `re`/`im` (length a power of two), with the stage
/// twiddles from [`twiddles`] for the same length.
fn fft(re: &mut [f64], im: &mut [f64], tw: &[(f64, f64)]) {
    let n = re.len();
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    let mut stage = 0;
    while len <= n {
        let tw = &tw[stage..stage + len / 2];
        for start in (0..n).step_by(len) {
            for (k, &(s, c)) in tw.iter().enumerate() {
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * c - im[b] * s;
                let ti = re[b] * s + im[b] * c;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        stage += len / 2;
        len <<= 1;
    }
}

/// Slope of the least-squares line through (log f, log P(f)) of the radially averaged power
/// spectrum, frequencies 1..N/2 (DC excluded); NaN for images under 8×8 or flat ones.
pub fn power_log_log_slope(img: ImageView<f32>) -> f64 {
    let m = img.width().min(img.height());
    if m < 8 {
        return f64::NAN;
    }
    let n = 1usize << (usize::BITS - 1 - m.leading_zeros());
    let (r0, c0) = ((img.height() - n) / 2, (img.width() - n) / 2);
    let mut re = vec![0f64; n * n];
    let mut im = vec![0f64; n * n];
    let mut mean = 0f64;
    for r in 0..n {
        for c in 0..n {
            let v = f64::from(img.get(r0 + r, c0 + c));
            re[r * n + c] = if v.is_finite() { v } else { 0.0 };
            mean += re[r * n + c];
        }
    }
    mean /= (n * n) as f64;
    for v in &mut re {
        *v -= mean;
    }
    // Rows, then columns.
    let tw = twiddles(n);
    for r in 0..n {
        fft(
            &mut re[r * n..(r + 1) * n],
            &mut im[r * n..(r + 1) * n],
            &tw,
        );
    }
    let mut cr = vec![0f64; n];
    let mut ci = vec![0f64; n];
    for c in 0..n {
        for r in 0..n {
            cr[r] = re[r * n + c];
            ci[r] = im[r * n + c];
        }
        fft(&mut cr, &mut ci, &tw);
        for r in 0..n {
            re[r * n + c] = cr[r];
            im[r * n + c] = ci[r];
        }
    }
    let half = n / 2;
    let mut sum = vec![0f64; half + 1];
    let mut cnt = vec![0u64; half + 1];
    for r in 0..n {
        let fr = if r <= half { r } else { n - r } as f64;
        for c in 0..n {
            let fc = if c <= half { c } else { n - c } as f64;
            let f = (fr * fr + fc * fc).sqrt().round() as usize;
            if (1..=half).contains(&f) {
                sum[f] += re[r * n + c].powi(2) + im[r * n + c].powi(2);
                cnt[f] += 1;
            }
        }
    }
    let pts: Vec<(f64, f64)> = (1..=half)
        .filter(|&f| cnt[f] > 0 && sum[f] > 0.0)
        .map(|f| ((f as f64).ln(), (sum[f] / cnt[f] as f64).ln()))
        .collect();
    if pts.len() < 2 {
        return f64::NAN;
    }
    let k = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / k;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

/// Measures one image. `ceiling` is the sample type's maximum on the image's scale (1.0 for
/// images scaled to 0..1).
pub fn measure_quality(img: ImageView<f32>, ceiling: f32, params: &QualityParams) -> ImageQuality {
    let n = img.len().max(1) as f64;
    let saturated = img
        .rows()
        .flat_map(|r| r.iter())
        .filter(|&&v| v >= ceiling)
        .count() as f64;
    let (content_fraction, debris_fraction) = match otsu(img, 256) {
        Some(t) => {
            let fg = img.map(|v| v > t);
            let fgc = fg.as_slice().iter().filter(|&&v| v).count() as f64;
            let labels = label(fg.view(), Connectivity::Eight);
            let areas = object_areas(&labels);
            let debris: u64 = areas
                .iter()
                .skip(1)
                .filter(|&&a| a > params.debris_area)
                .sum();
            (fgc / n, debris as f64 / n)
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
        assert!(s0.abs() < 0.5, "white noise has a flat spectrum: {s0}");
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

    #[test]
    fn fft_matches_direct_dft() {
        for n in [2usize, 8, 64] {
            let x: Vec<f64> = (0..n)
                .map(|i| ((i * 3) % 5) as f64 - 0.25 * i as f64)
                .collect();
            let (mut re, mut im) = (x.clone(), vec![0.0; n]);
            fft(&mut re, &mut im, &twiddles(n));
            for k in 0..n {
                let (mut a, mut b) = (0.0, 0.0);
                for (t, v) in x.iter().enumerate() {
                    let ang = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                    a += v * ang.cos();
                    b += v * ang.sin();
                }
                assert!(
                    (re[k] - a).abs() < 1e-9 && (im[k] - b).abs() < 1e-9,
                    "n {n} k {k}"
                );
            }
        }
    }
}
