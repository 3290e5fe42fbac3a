//! Illumination correction, as CellProfiler's CorrectIlluminationCalculate (intensity
//! "Regular", "All" images of a group) followed by CorrectIlluminationApply ("Divide").
//!
//! 1. [`IlluminationSum`] averages the fields of a plate on CellProfiler's 0..1 scale: a
//!    running f64 sum, so memory does not grow with the number of fields. Intensity
//!    `regular` averages the pixels themselves; `background` averages each field's
//!    [`block_minimum`] (the minimum of blocks of about `block_size` pixels, centrosome's
//!    `block`), which follows the illumination of the background when the objects are
//!    sparse and cover different places in different fields;
//! 2. [`illumination_function`] smooths the average and rescales it:
//!    * `median`: CellProfiler's median filter — the average scaled to `u16` (× 65535,
//!      truncated), median over a disc of radius `max(1, int(σ + 0.5))` with σ = size / 2.35
//!      (centrosome's `strel_disk`). Equal to `scipy.ndimage.median_filter(footprint=disk,
//!      mode='reflect')`; CellProfiler's rank median takes only in-image pixels at the
//!      border, so the outermost `radius` pixels may differ;
//!    * `gaussian`: `scipy.ndimage.gaussian_filter(σ = size / 2.35, mode='constant')`
//!      normalised by the same filter of an all-ones image (centrosome's
//!      `smooth_with_function_and_mask` with a full mask, which is what CellProfiler calls);
//!    * `polynomial`: least-squares fit of `a·x + b·y + c·x² + d·y² + e·xy + f` to the pixels
//!      above 0, clipped to 0..1 (centrosome's `fit_polynomial`);
//!    * `none`: the average itself.
//!
//!    The filter size is CellProfiler's "Automatic" rule, min(30, longest side / 40), unless
//!    set. Rescaling as CellProfiler's "Rescale the illumination function?": `robust_minimum`
//!    ("Yes": values below the 2nd percentile of the positive values are raised to it, then
//!    everything is divided by it, so the function is ≥ 1), `median` (divided by the median of
//!    the positive values) or `none`;
//! 3. [`correct`] divides an image (on the 0..1 scale) by the function.
//!
//! Reference values: `testdata/reference/segmentation/make_illumination_refs.py` (SciPy and
//! centrosome on the same fields), compared in `tests/algorithms/illumination_reference.rs`.

use ipscope_image::{Image, ImageView, Pixel};
use serde::{Deserialize, Serialize};

use crate::ops::filter::{gaussian_kernel, GAUSSIAN_TRUNCATE};
use crate::{ensure_shape, Error};

/// CellProfiler's full-width-at-half-maximum to σ conversion (`size / 2.35`).
const FWHM_PER_SIGMA: f64 = 2.35;
/// CellProfiler's `ROBUST_FACTOR`: the robust minimum is the 2nd percentile.
const ROBUST_FACTOR: f64 = 0.02;

/// How the average image is smoothed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IllumSmoothing {
    /// Median over a disc (CellProfiler's recommendation: robust to outliers).
    #[default]
    Median,
    /// Gaussian filter, normalised at the border.
    Gaussian,
    /// Second-order polynomial surface, least squares.
    Polynomial,
    /// No smoothing: the plain average.
    None,
}

/// What is averaged (CellProfiler's "Select how the illumination function is calculated").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IllumIntensity {
    /// The pixels: right when objects cover most of every field, or the fields are many.
    Regular,
    /// Each field's block minima: the background, for sparse objects.
    #[default]
    Background,
}

/// How the smoothed function is rescaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IllumRescale {
    /// Divide by the 2nd percentile of the positive values, after raising smaller values to
    /// it (CellProfiler "Yes"): the function is ≥ 1 and correction never brightens.
    #[default]
    RobustMinimum,
    /// Divide by the median of the positive values (CellProfiler "Median").
    Median,
    /// Keep the smoothed average as it is (CellProfiler "No").
    None,
}

/// Settings of the illumination function. Defaults: background intensity (60 px blocks),
/// polynomial fit, rescaled to a robust minimum of 1 — the combination that follows a
/// smooth lamp profile when nuclei are sparse and the plate has few fields (on the demo
/// plate, `regular` averages are dominated by where the colonies happen to lie; see the
/// run test `crates/ipscope-cli/tests/cli/illumination.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IlluminationParams {
    /// Default `background`.
    pub intensity: IllumIntensity,
    /// Block size (px) of `background`. Default 60 (CellProfiler's).
    pub block_size: usize,
    /// Default `polynomial`.
    pub method: IllumSmoothing,
    /// Smoothing filter size in pixels (CellProfiler's "Manually"); `None` = "Automatic",
    /// min(30, longest side / 40). Ignored by `polynomial` and `none`.
    pub size: Option<f64>,
    /// Default `robust_minimum`.
    pub rescale: IllumRescale,
}

impl Default for IlluminationParams {
    fn default() -> Self {
        IlluminationParams {
            intensity: IllumIntensity::Background,
            block_size: 60,
            method: IllumSmoothing::Polynomial,
            size: None,
            rescale: IllumRescale::RobustMinimum,
        }
    }
}

impl IlluminationParams {
    /// The filter size for an image of this size: `size`, else CellProfiler's automatic rule.
    pub fn filter_size(&self, width: usize, height: usize) -> f64 {
        match self.size {
            Some(s) => s,
            None => (width.max(height) as f64 / 40.0).min(30.0),
        }
    }
}

/// Running sum of fields on CellProfiler's 0..1 scale. Add the fields in a fixed order for
/// results that do not depend on the thread count.
#[derive(Debug, Clone)]
pub struct IlluminationSum {
    sum: Image<f64>,
    count: u64,
}

impl IlluminationSum {
    pub fn new(width: usize, height: usize) -> Self {
        IlluminationSum {
            sum: Image::new(width, height, 0.0),
            count: 0,
        }
    }

    /// Adds one field as `params.intensity` asks: its pixels or its block minima.
    pub fn add_field<T: Pixel>(
        &mut self,
        image: ImageView<T>,
        params: &IlluminationParams,
    ) -> Result<(), Error> {
        match params.intensity {
            IllumIntensity::Regular => self.add(image),
            IllumIntensity::Background => {
                ensure_shape(
                    "illumination field",
                    (self.sum.width(), self.sum.height()),
                    (image.width(), image.height()),
                )?;
                let b = block_minimum(image, params.block_size);
                for (a, &v) in self.sum.as_mut_slice().iter_mut().zip(b.as_slice()) {
                    *a += v;
                }
                self.count += 1;
                Ok(())
            }
        }
    }

    /// Adds one field (divided by [`Pixel::MAX`]; non-finite samples count as 0). Errors when
    /// its size differs from the first field's.
    pub fn add<T: Pixel>(&mut self, image: ImageView<T>) -> Result<(), Error> {
        ensure_shape(
            "illumination field",
            (self.sum.width(), self.sum.height()),
            (image.width(), image.height()),
        )?;
        let w = image.width();
        for (r, row) in image.rows().enumerate() {
            let acc = &mut self.sum.as_mut_slice()[r * w..(r + 1) * w];
            for (a, &v) in acc.iter_mut().zip(row) {
                let x = v.to_f64() / T::MAX;
                if x.is_finite() {
                    *a += x;
                }
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Fields added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The average of the fields (zeros when none were added).
    pub fn mean(&self) -> Image<f64> {
        let n = self.count.max(1) as f64;
        self.sum.map(|v| v / n)
    }
}

/// Each pixel replaced by the minimum of its block, on the 0..1 scale, as CellProfiler's
/// "Background" intensity: `max(1, int(n / block_size))` blocks along an axis of n pixels,
/// pixel i in block `int(i · blocks / n)` (centrosome's `block`). Non-finite samples are
/// skipped (a block of only those is 0).
pub fn block_minimum<T: Pixel>(image: ImageView<T>, block_size: usize) -> Image<f64> {
    let (w, h) = (image.width(), image.height());
    let blocks = |n: usize| (n / block_size.max(1)).max(1);
    let (by, bx) = (blocks(h), blocks(w));
    let index = |i: usize, nb: usize, n: usize| (i as f64 * (nb as f64 / n as f64)) as usize;
    let mut min = vec![f64::INFINITY; by * bx];
    for r in 0..h {
        let br = index(r, by, h).min(by - 1);
        for (c, &v) in image.row(r).iter().enumerate() {
            let x = v.to_f64() / T::MAX;
            let k = br * bx + index(c, bx, w).min(bx - 1);
            if x.is_finite() && x < min[k] {
                min[k] = x;
            }
        }
    }
    Image::from_fn(w, h, |r, c| {
        let v = min[index(r, by, h).min(by - 1) * bx + index(c, bx, w).min(bx - 1)];
        if v.is_finite() {
            v
        } else {
            0.0
        }
    })
}

/// The illumination function of an average image: smoothed and rescaled as `params` say.
pub fn illumination_function(mean: ImageView<f64>, params: &IlluminationParams) -> Image<f32> {
    let smooth = smooth_average(mean, params);
    rescale(&smooth, params.rescale).map(|v| v as f32)
}

/// Step 2a: the smoothed average, before rescaling.
pub fn smooth_average(mean: ImageView<f64>, params: &IlluminationParams) -> Image<f64> {
    let (w, h) = (mean.width(), mean.height());
    if w == 0 || h == 0 {
        return mean.to_image();
    }
    let sigma = params.filter_size(w, h) / FWHM_PER_SIGMA;
    match params.method {
        IllumSmoothing::Median => {
            let radius = ((sigma + 0.5).max(0.0) as usize).max(1);
            let q = mean.map(|v| (v * 65535.0).clamp(0.0, 65535.0) as u16);
            median_disk(q.view(), radius).map(|v| f64::from(v) / 65535.0)
        }
        IllumSmoothing::Gaussian => smooth_gaussian(mean, sigma),
        IllumSmoothing::Polynomial => fit_polynomial(mean),
        IllumSmoothing::None => mean.to_image(),
    }
}

/// Step 2b: CellProfiler's rescaling of the smoothed average.
pub fn rescale(smooth: &Image<f64>, how: IllumRescale) -> Image<f64> {
    if how == IllumRescale::None {
        return smooth.clone();
    }
    let mut positive: Vec<f64> = smooth
        .as_slice()
        .iter()
        .copied()
        .filter(|&v| v > 0.0)
        .collect();
    if positive.is_empty() {
        return smooth.clone();
    }
    let idx = match how {
        IllumRescale::RobustMinimum => (positive.len() as f64 * ROBUST_FACTOR) as usize,
        _ => positive.len() / 2,
    };
    let (_, &mut pivot, _) = positive.select_nth_unstable_by(idx, f64::total_cmp);
    if how == IllumRescale::RobustMinimum {
        smooth.map(|v| v.max(pivot) / pivot)
    } else {
        smooth.map(|v| v / pivot)
    }
}

/// CorrectIlluminationApply's division: the image on the 0..1 scale divided by `illum`.
/// Where the function is not positive and finite the pixel keeps its scaled value. Errors
/// when the sizes differ.
pub fn correct<T: Pixel>(image: ImageView<T>, illum: ImageView<f32>) -> Result<Image<f32>, Error> {
    ensure_shape(
        "illumination function",
        (image.width(), image.height()),
        (illum.width(), illum.height()),
    )?;
    let mut out = Image::new(image.width(), image.height(), 0.0f32);
    for r in 0..image.height() {
        for ((o, &v), &f) in out
            .row_mut(r)
            .iter_mut()
            .zip(image.row(r))
            .zip(illum.row(r))
        {
            let x = v.to_f64() / T::MAX;
            let f = f64::from(f);
            *o = if f > 0.0 && f.is_finite() { x / f } else { x } as f32;
        }
    }
    Ok(out)
}

/// SciPy's `reflect` boundary (`d c b a | a b c d | d c b a`) for any offset.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let m = i.rem_euclid(2 * n);
    (if m >= n { 2 * n - 1 - m } else { m }) as usize
}

/// Median over a disc of `radius` (x² + y² ≤ r²), as `scipy.ndimage.median_filter(footprint=
/// disk, mode='reflect')`: the element of rank n / 2 of the n samples under the disc.
///
/// A sliding histogram along each row (256 coarse × 256 fine bins, Huang / Perreault-Hébert):
/// moving one column adds and removes the disc's two edge pixels of each row offset.
pub fn median_disk(src: ImageView<u16>, radius: usize) -> Image<u16> {
    let (w, h) = (src.width(), src.height());
    let mut out = Image::new(w, h, 0u16);
    if w == 0 || h == 0 {
        return out;
    }
    let r = radius as i64;
    // Half-width of the disc at each row offset.
    let half: Vec<i64> = (-r..=r)
        .map(|dy| {
            let mut hw = 0;
            while (hw + 1) * (hw + 1) + dy * dy <= r * r {
                hw += 1;
            }
            hw
        })
        .collect();
    let n: usize = half.iter().map(|&hw| (2 * hw + 1) as usize).sum();
    let rank = n / 2;
    let mut coarse = vec![0u32; 256];
    let mut fine = vec![0u32; 65536];
    for y in 0..h {
        coarse.iter_mut().for_each(|c| *c = 0);
        fine.iter_mut().for_each(|c| *c = 0);
        let rows: Vec<&[u16]> = (-r..=r)
            .map(|dy| src.row(reflect(y as i64 + dy, h)))
            .collect();
        for (k, row) in rows.iter().enumerate() {
            for dx in -half[k]..=half[k] {
                let v = row[reflect(dx, w)];
                coarse[usize::from(v >> 8)] += 1;
                fine[usize::from(v)] += 1;
            }
        }
        for x in 0..w {
            if x > 0 {
                for (k, row) in rows.iter().enumerate() {
                    let old = row[reflect(x as i64 - 1 - half[k], w)];
                    let new = row[reflect(x as i64 + half[k], w)];
                    coarse[usize::from(old >> 8)] -= 1;
                    fine[usize::from(old)] -= 1;
                    coarse[usize::from(new >> 8)] += 1;
                    fine[usize::from(new)] += 1;
                }
            }
            let mut seen = 0u32;
            let mut value = 0u16;
            for (b, &c) in coarse.iter().enumerate() {
                if (seen + c) as usize > rank {
                    for (f, &cf) in fine[b << 8..(b + 1) << 8].iter().enumerate() {
                        seen += cf;
                        if seen as usize > rank {
                            value = ((b << 8) + f) as u16;
                            break;
                        }
                    }
                    break;
                }
                seen += c;
            }
            out.set(y, x, value);
        }
    }
    out
}

/// Columns per strip of the vertical pass: the kernel's rows of one strip (taps × 2 KiB for
/// 256 f64) stay in the L2 cache while the strip's output rows are summed.
const STRIP: usize = 256;

/// Gaussian smoothing that ignores what lies outside the image, as centrosome's
/// `smooth_with_function_and_mask` with `scipy.ndimage.gaussian_filter(mode='constant')` and
/// a full mask: the zero-padded filter of the image divided by that of an all-ones image
/// (+ machine ε). Equal, bit for bit, to [`smooth_gaussian_reference`]: every output sums its
/// taps in kernel order as the reference does; only the loops are reordered (rows of taps
/// added to a row of sums, in column strips; a zero-padded row for the horizontal pass, whose
/// padding adds exact zeros), and the all-ones image, a product of a column and a row
/// factor, is summed per row without an image.
pub fn smooth_gaussian(mean: ImageView<f64>, sigma: f64) -> Image<f64> {
    let kernel = gaussian_kernel(sigma, GAUSSIAN_TRUNCATE);
    let (w, h) = (mean.width(), mean.height());
    let r = kernel.len() / 2;
    let mut out = Image::new(w, h, 0.0f64);
    if w == 0 || h == 0 {
        return out;
    }
    // Taps of output row y that fall inside the image: k in lo(y)..hi(y).
    let taps = |y: usize, n: usize| (r.saturating_sub(y), kernel.len().min(n + r - y));
    // Vertical pass into `out`.
    let mut rows: Vec<&[f64]> = Vec::with_capacity(kernel.len());
    for x0 in (0..w).step_by(STRIP) {
        let x1 = (x0 + STRIP).min(w);
        for y in 0..h {
            let (lo, hi) = taps(y, h);
            rows.clear();
            rows.extend((lo..hi).map(|k| &mean.row(y + k - r)[x0..x1]));
            add_taps(&mut out.row_mut(y)[x0..x1], &rows, &kernel[lo..hi]);
        }
    }
    // Horizontal pass in place, one zero-padded row at a time, then the normalisation.
    let mut padded = vec![0.0f64; w + 2 * r];
    let interior_x = r..w.saturating_sub(r);
    for y in 0..h {
        let row = out.row_mut(y);
        padded[r..r + w].copy_from_slice(row);
        row.fill(0.0);
        let shifted: Vec<&[f64]> = (0..kernel.len()).map(|k| &padded[k..k + w]).collect();
        add_taps(row, &shifted, &kernel);
        // The all-ones image: its vertical pass is the sum of the inside taps of row y,
        // its horizontal pass that sum times the inside taps of column x, in kernel order.
        let (lo, hi) = taps(y, h);
        let column = kernel[lo..hi].iter().fold(0.0, |acc, &kw| acc + 1.0 * kw);
        let ones_at = |x: usize| {
            let (lo, hi) = taps(x, w);
            kernel[lo..hi]
                .iter()
                .fold(0.0, |acc, &kw| acc + column * kw)
        };
        let inside = ones_at(r.min(w - 1));
        for (x, o) in row.iter_mut().enumerate() {
            let ones = if interior_x.contains(&x) {
                inside
            } else {
                ones_at(x)
            };
            *o /= ones + f64::EPSILON;
        }
    }
    out
}

/// `acc[x] += rows[k][x] · taps[k]` for k in order, four taps per pass over `acc` (each sum
/// kept in a register between them: the same additions in the same order, fewer loads and
/// stores). Every row is at least as long as `acc`.
fn add_taps(acc: &mut [f64], rows: &[&[f64]], taps: &[f64]) {
    let n = acc.len();
    let mut quads = rows.chunks_exact(4).zip(taps.chunks_exact(4));
    for (r, t) in quads.by_ref() {
        let (r0, r1, r2, r3) = (&r[0][..n], &r[1][..n], &r[2][..n], &r[3][..n]);
        for ((((a, &v0), &v1), &v2), &v3) in acc.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            let mut s = *a;
            s += v0 * t[0];
            s += v1 * t[1];
            s += v2 * t[2];
            s += v3 * t[3];
            *a = s;
        }
    }
    let done = rows.len() / 4 * 4;
    for (row, &t) in rows[done..].iter().zip(&taps[done..]) {
        for (a, &v) in acc.iter_mut().zip(&row[..n]) {
            *a += v * t;
        }
    }
}

/// Zero-padded separable correlation with SciPy's Gaussian kernel, f64 throughout.
fn gaussian_constant(src: &Image<f64>, kernel: &[f64]) -> Image<f64> {
    let (w, h) = (src.width(), src.height());
    let r = (kernel.len() / 2) as i64;
    let mut tmp = Image::new(w, h, 0.0f64);
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (k, &kw) in kernel.iter().enumerate() {
                let yy = y as i64 + k as i64 - r;
                if yy >= 0 && (yy as usize) < h {
                    acc += src.get(yy as usize, x) * kw;
                }
            }
            tmp.set(y, x, acc);
        }
    }
    let mut out = Image::new(w, h, 0.0f64);
    for y in 0..h {
        let row = tmp.row(y);
        for x in 0..w {
            let mut acc = 0.0;
            for (k, &kw) in kernel.iter().enumerate() {
                let xx = x as i64 + k as i64 - r;
                if xx >= 0 && (xx as usize) < w {
                    acc += row[xx as usize] * kw;
                }
            }
            out.set(y, x, acc);
        }
    }
    out
}

/// The scalar reference of [`smooth_gaussian`]: the zero-padded filter of the image and of an
/// all-ones image, pixel by pixel, then their ratio. Kept for the parity test and the bench.
pub fn smooth_gaussian_reference(mean: ImageView<f64>, sigma: f64) -> Image<f64> {
    let kernel = gaussian_kernel(sigma, GAUSSIAN_TRUNCATE);
    let img = mean.to_image();
    let smoothed = gaussian_constant(&img, &kernel);
    let ones = gaussian_constant(&Image::new(img.width(), img.height(), 1.0), &kernel);
    let mut out = smoothed;
    for (o, &b) in out.as_mut_slice().iter_mut().zip(ones.as_slice()) {
        *o /= b + f64::EPSILON;
    }
    out
}

/// Least-squares fit of a·x + b·y + c·x² + d·y² + e·xy + f to the pixels above 0 (x = row,
/// y = column), clipped to 0..1; the average itself when no pixel is above 0.
///
/// Coordinates are centred and scaled to about ±0.5 before the normal equations are solved
/// (the same surface as centrosome's fit on raw indices, better conditioned).
fn fit_polynomial(mean: ImageView<f64>) -> Image<f64> {
    let (w, h) = (mean.width(), mean.height());
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (sy, sx) = (1.0 / h.max(1) as f64, 1.0 / w.max(1) as f64);
    let basis = |r: usize, c: usize| {
        let (x, y) = ((r as f64 - cy) * sy, (c as f64 - cx) * sx);
        [x, y, x * x, y * y, x * y, 1.0]
    };
    let mut ata = [[0.0f64; 6]; 6];
    let mut atb = [0.0f64; 6];
    let mut used = 0usize;
    for r in 0..h {
        for (c, &v) in mean.row(r).iter().enumerate() {
            if !(v > 0.0 && v.is_finite()) {
                continue;
            }
            used += 1;
            let b = basis(r, c);
            for i in 0..6 {
                atb[i] += b[i] * v;
                for j in 0..6 {
                    ata[i][j] += b[i] * b[j];
                }
            }
        }
    }
    let Some(coef) = (used > 0).then(|| solve6(ata, atb)).flatten() else {
        return mean.to_image();
    };
    Image::from_fn(w, h, |r, c| {
        let b = basis(r, c);
        let v: f64 = b.iter().zip(&coef).map(|(x, k)| x * k).sum();
        v.clamp(0.0, 1.0)
    })
}

/// Solves a 6×6 system by Gaussian elimination with partial pivoting; `None` when singular
/// (too few distinct pixels for the surface), where a least-squares solution would need a
/// pseudo-inverse.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    let scale = a
        .iter()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for col in 0..6 {
        let piv = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot = a[col];
        for row in col + 1..6 {
            let f = a[row][col] / pivot[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0f64; 6];
    for i in (0..6).rev() {
        let s: f64 = (i + 1..6).map(|k| a[i][k] * x[k]).sum();
        x[i] = (b[i] - s) / a[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_size_is_cellprofilers_rule() {
        let p = IlluminationParams::default();
        assert_eq!(p.filter_size(400, 200), 10.0);
        assert_eq!(p.filter_size(2048, 2048), 30.0);
        let p = IlluminationParams {
            size: Some(7.0),
            ..p
        };
        assert_eq!(p.filter_size(2048, 2048), 7.0);
    }

    #[test]
    fn median_of_a_constant_and_of_a_single_outlier() {
        let mut img = Image::new(9, 7, 100u16);
        assert_eq!(median_disk(img.view(), 2), img);
        img.set(3, 4, 60000);
        assert_eq!(median_disk(img.view(), 1).get(3, 4), 100);
    }

    #[test]
    fn polynomial_recovers_a_quadratic_surface() {
        let f = |r: usize, c: usize| {
            let (x, y) = (r as f64, c as f64);
            0.2 + 0.01 * x - 0.004 * y + 0.0003 * x * x + 0.0002 * y * y - 0.0001 * x * y
        };
        let img = Image::from_fn(20, 15, f);
        let fit = fit_polynomial(img.view());
        for r in 0..15 {
            for c in 0..20 {
                assert!((fit.get(r, c) - f(r, c).clamp(0.0, 1.0)).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rescaled_function_is_at_least_one_and_correction_divides() {
        let mean = Image::from_fn(40, 30, |r, c| 0.1 + 0.01 * (r + c) as f64);
        let p = IlluminationParams {
            method: IllumSmoothing::Median,
            ..IlluminationParams::default()
        };
        let f = illumination_function(mean.view(), &p);
        assert!(f.as_slice().iter().all(|&v| v >= 1.0));
        let img = Image::new(40, 30, 200u8);
        let out = correct(img.view(), f.view()).unwrap();
        let want = 200.0 / 255.0 / f64::from(f.get(29, 39));
        assert!((f64::from(out.get(29, 39)) - want).abs() < 1e-6);
        assert!(correct(img.view(), Image::new(3, 3, 1.0f32).view()).is_err());
    }

    #[test]
    fn fast_gaussian_equals_the_reference_bit_for_bit() {
        let mut bits = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        let mut next = || (bits() >> 11) as f64 / (1u64 << 53) as f64;
        // Images wider and narrower than the kernel (σ 3: 25 taps), more columns than one
        // strip, single rows and columns, σ = 0 (one tap) and a NaN pixel.
        for (w, h, sigma) in [
            (300, 40, 3.0),
            (37, 23, 3.0),
            (5, 9, 3.0),
            (1, 1, 2.0),
            (17, 1, 1.5),
            (1, 13, 1.5),
            (6, 4, 0.0),
        ] {
            let mut img = Image::from_fn(w, h, |_, _| next());
            if w * h > 20 {
                img.set(h / 2, w / 3, f64::NAN);
            }
            let (fast, reference) = (
                smooth_gaussian(img.view(), sigma),
                smooth_gaussian_reference(img.view(), sigma),
            );
            let bits =
                |i: &Image<f64>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&reference), "{w}x{h} σ {sigma}");
        }
        assert_eq!(smooth_gaussian(Image::new(0, 3, 1.0).view(), 2.0).len(), 0);
    }

    #[test]
    fn degenerate_inputs_give_defined_results() {
        for method in [
            IllumSmoothing::Median,
            IllumSmoothing::Gaussian,
            IllumSmoothing::Polynomial,
            IllumSmoothing::None,
        ] {
            let p = IlluminationParams {
                method,
                ..IlluminationParams::default()
            };
            for (w, h) in [(0, 0), (1, 1), (5, 1), (1, 4)] {
                let zero = Image::new(w, h, 0.0f64);
                let f = illumination_function(zero.view(), &p);
                assert_eq!((f.width(), f.height()), (w, h));
                let one = Image::new(w, h, 0.5f64);
                let f = illumination_function(one.view(), &p);
                assert!(f.as_slice().iter().all(|v| v.is_finite()), "{method:?}");
            }
        }
        let img = Image::from_fn(7, 5, |r, c| (10 * r + c) as u8);
        let b = block_minimum(img.view(), 60);
        assert!(b.as_slice().iter().all(|&v| v == 0.0));
        let b = block_minimum(img.view(), 3);
        assert_eq!(b.get(4, 6), 4.0 / 255.0);
        assert_eq!(b.get(4, 3), 0.0);
        assert_eq!(block_minimum(Image::new(0, 0, 1u8).view(), 60).len(), 0);
        let mut s = IlluminationSum::new(3, 2);
        assert!(s.add(Image::new(2, 3, 1u8).view()).is_err());
        s.add(Image::new(3, 2, f32::NAN).view()).unwrap();
        s.add(Image::new(3, 2, 0.5f32).view()).unwrap();
        assert_eq!(s.count(), 2);
        assert_eq!(s.mean().get(1, 2), 0.25);
    }
}
