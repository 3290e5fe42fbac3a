//! Linear filters.
//!
//! [`gaussian_blur`] reproduces `scipy.ndimage.gaussian_filter(image, sigma, mode='nearest',
//! truncate=4.0)`, which is what `skimage.filters.gaussian` calls with its defaults
//! (scikit-image 0.26: `mode='nearest'`, `truncate=4.0`, float32 stays float32). Like SciPy
//! it filters separably, first along axis 0 (down the columns), then along axis 1,
//! accumulating in f64 and storing the intermediate image as f32 (SciPy writes the first
//! pass into the float32 output array). The parity test finds it bit-identical to SciPy in
//! most cases and within 3e-8 otherwise.

use std::mem::MaybeUninit;

use ipscope_image::{Image, ImageView};

use super::par;

/// Truncation of the Gaussian kernel in standard deviations (SciPy's default).
pub const GAUSSIAN_TRUNCATE: f64 = 4.0;

/// The normalised 1-D Gaussian kernel SciPy builds (`scipy.ndimage._filters._gaussian_kernel1d`):
/// radius `int(truncate * sigma + 0.5)`, weights `exp(-x² / 2σ²)` divided by their sum.
///
/// Returns `[1.0]` for a non-positive or non-finite `sigma`.
pub fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    if !(sigma > 0.0 && sigma.is_finite() && truncate.is_finite()) {
        return vec![1.0];
    }
    // Python's int() truncates toward zero.
    let radius = (truncate * sigma + 0.5).max(0.0) as usize;
    let s2 = sigma * sigma;
    let r = radius as i64;
    let mut k: Vec<f64> = (-r..=r)
        .map(|x| (-0.5 / s2 * (x * x) as f64).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    for w in &mut k {
        *w /= sum;
    }
    k
}

/// Gaussian smoothing with edge replication, as `scipy.ndimage.gaussian_filter(mode='nearest',
/// truncate=4.0)` / `skimage.filters.gaussian` with defaults.
///
/// `sigma <= 0` (or NaN) returns a copy. NaN pixels spread to their neighbourhood, as in SciPy.
pub fn gaussian_blur(src: ImageView<f32>, sigma: f32) -> Image<f32> {
    let kernel = gaussian_kernel(f64::from(sigma), GAUSSIAN_TRUNCATE);
    if kernel.len() == 1 || src.is_empty() {
        return src.to_image();
    }
    correlate_separable(src, &kernel)
}

/// [`gaussian_blur`] of many small images one after another (the declumping's crop of the
/// distance map around each object) with the kernel made once and the buffers reused: no
/// allocation per image once they have grown. Each image runs as one band on the calling
/// thread, with the same arithmetic as [`gaussian_blur`].
pub struct GaussianCrops {
    kernel: Vec<f64>,
    ring: Vec<f64>,
    acc: Vec<f64>,
    line: Vec<f64>,
    out: Vec<f32>,
}

impl GaussianCrops {
    pub fn new(sigma: f32) -> Self {
        GaussianCrops {
            kernel: gaussian_kernel(f64::from(sigma), GAUSSIAN_TRUNCATE),
            ring: Vec::new(),
            acc: Vec::new(),
            line: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The kernel's radius: a pixel's value depends on the pixels at most this far away.
    pub fn radius(&self) -> usize {
        self.kernel.len() / 2
    }

    /// [`gaussian_blur`] of `src`, in a buffer the next call reuses. Errors only if the
    /// view could not be made (it cannot: the buffer holds the image's pixels).
    pub fn blur(
        &mut self,
        src: ImageView<f32>,
    ) -> Result<ImageView<'_, f32>, ipscope_image::Error> {
        let (w, h) = (src.width(), src.height());
        let n = w * h;
        self.out.clear();
        if self.kernel.len() == 1 || n == 0 {
            for row in src.rows() {
                self.out.extend_from_slice(row);
            }
        } else {
            let (taps, r) = (self.kernel.len(), self.kernel.len() / 2);
            self.ring.resize(taps * w, 0.0);
            self.acc.resize(w, 0.0);
            self.line.resize(w + 2 * r, 0.0);
            self.out.reserve(n);
            separable(
                src,
                &self.kernel,
                0,
                &mut self.ring[..taps * w],
                &mut self.acc[..w],
                &mut self.line[..w + 2 * r],
                &mut self.out.spare_capacity_mut()[..n],
            );
            // SAFETY: `separable` wrote all `n` elements (every row in full, as in
            // `correlate_separable`).
            unsafe { self.out.set_len(n) };
        }
        ImageView::from_slice(&self.out, w, h, w)
    }
}

/// [`gaussian_blur`] of a 16-bit image scaled onto 0..=1, each pixel `v / 65535` rounded to
/// f32 (the nuclei segmentation's input, [`unit_scale_u16`]): the same bits as the blur of
/// the scaled image, without making it. Each input row is scaled as the column pass widens
/// it, so the field is read as 2 bytes a pixel and no 4-byte copy is written and read back.
pub fn gaussian_blur_unit_u16(src: ImageView<u16>, sigma: f32) -> Image<f32> {
    let kernel = gaussian_kernel(f64::from(sigma), GAUSSIAN_TRUNCATE);
    if kernel.len() == 1 || src.is_empty() {
        return src.map(unit_scale_u16);
    }
    correlate_separable(src, &kernel)
}

/// A 16-bit pixel on 0..=1: `(v / 65535) as f32`, by the reciprocal (the same f32 for all
/// 65,536 values, tested where the segmentation scales its input).
#[inline(always)]
pub fn unit_scale_u16(v: u16) -> f32 {
    (f64::from(v) * (1.0 / 65535.0)) as f32
}

/// A pixel as the Gaussian's passes read it, widened to f64: an f32 as it is, a u16 scaled
/// onto 0..=1 first ([`unit_scale_u16`]).
trait GaussianInput: Copy + Send + Sync {
    fn widen(self) -> f64;
}

impl GaussianInput for f32 {
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl GaussianInput for u16 {
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(unit_scale_u16(self))
    }
}

/// Correlates every column, then every row, with a symmetric odd-length kernel, edges
/// replicated: SciPy's two passes, the column pass's output stored as f32 in between.
///
/// Each output row is made whole before the next: its column pass (from a ring of the
/// `2r + 1` input rows it needs, widened to f64 once each), stored as f32, then its row pass
/// in place while the row is still in cache. The intermediate image SciPy writes is never
/// made, so the field is read once and the output written once (separate passes read and
/// wrote the whole output twice, memory-bound on fields past the cache). The inner loops
/// run over contiguous columns, which the compiler vectorises; each output keeps SciPy's
/// order of operations, so the result is the same bits as the scalar reference passes
/// (test `vector_passes_equal_the_scalar_reference_bit_for_bit`).
fn correlate_separable<T: GaussianInput>(src: ImageView<T>, kernel: &[f64]) -> Image<f32> {
    let (w, h) = (src.width(), src.height());
    let n = w * h;
    // The output is written once, row by row, so it is not filled with zeros first (a
    // memset of the whole field).
    let mut data: Vec<f32> = Vec::with_capacity(n);
    let taps = kernel.len();
    let r = taps / 2;
    // Bands of output rows on idle workers; each row's arithmetic is unchanged.
    par::for_each_row_band(
        &mut data.spare_capacity_mut()[..n],
        w,
        || {
            (
                vec![0.0f64; taps * w],
                vec![0.0f64; w],
                vec![0.0f64; w + 2 * r],
            )
        },
        |(ring, acc, line), y0, band| separable(src, kernel, y0, ring, acc, line, band),
    );
    // SAFETY: the bands cover the `n` elements, and `separable` writes every element of its
    // band: each output row in full (`row_pass_row` stores all `w` columns). With `w` or `h`
    // zero, `n` is zero.
    unsafe { data.set_len(n) };
    // The buffer has `w * h` pixels, so this cannot fail.
    Image::from_vec(w, h, data).unwrap_or_else(|_| Image::new(w, h, 0.0))
}

crate::ops::dispatched! {
    /// The output rows `y0..` of both passes in `out` (whole rows; compiled once per
    /// instruction set by `dispatched!`). `ring` holds `2r + 1` rows: slot `t mod (2r + 1)` is
    /// input row `t` (clamped to the image) as f64; `line` (`w + 2r`) is the row pass's padded
    /// copy of a row.
    fn separable<T: GaussianInput>(
        src: ImageView<T>,
        kernel: &[f64],
        y0: usize,
        ring: &mut [f64],
        acc: &mut [f64],
        line: &mut [f64],
        out: &mut [MaybeUninit<f32>],
    ) {
        let w = src.width();
        let r = kernel.len() / 2;
        let last = src.height() - 1;
        let load = |ring: &mut [f64], t: usize| {
            // Row t − r of the image (t is offset by r so that it is never negative).
            let slot = t % kernel.len();
            let row = src.row(t.saturating_sub(r).min(last));
            for (d, &v) in ring[slot * w..(slot + 1) * w].iter_mut().zip(row) {
                *d = v.widen();
            }
        };
        for t in y0..=y0 + 2 * r {
            load(ring, t);
        }
        for (k, row) in out.chunks_exact_mut(w).enumerate() {
            if k > 0 {
                load(ring, y0 + k + 2 * r);
            }
            column_pass_row(ring, kernel, y0 + k + r, acc, line);
            row_pass_row(kernel, line, acc, row);
        }
    }
}

/// One output row of the column pass: the row whose rows `t − j`, `t + j` (offset by `r`, see
/// [`separable`]) are in `ring`, rounded to f32 as SciPy stores it between the passes, into
/// the middle `line[r..r + w]` of the row pass's padded line (as f64 again).
#[inline(always)]
fn column_pass_row(ring: &[f64], kernel: &[f64], t: usize, acc: &mut [f64], line: &mut [f64]) {
    let r = kernel.len() / 2;
    let w = acc.len();
    let out = &mut line[r..r + w];
    let line = |t: usize| {
        let slot = t % kernel.len();
        &ring[slot * w..(slot + 1) * w]
    };
    // SciPy's symmetric path (ni_filters.c): centre tap, then (x[i-j] + x[i+j]) * w[j]
    // from the outermost tap inwards; the same order keeps results bit-identical.
    let centre = kernel[r];
    let mid = line(t);
    // Blocks of BLOCK columns: the block's sums stay in registers over all taps instead of
    // going through `acc` once per tap. The rest of the row goes through `acc`.
    let full = w / BLOCK * BLOCK;
    for c0 in (0..full).step_by(BLOCK) {
        let mut a = [0.0f64; BLOCK];
        let m = &mid[c0..c0 + BLOCK];
        for k in 0..BLOCK {
            a[k] = m[k] * centre;
        }
        for j in (1..=r).rev() {
            let up = &line(t - j)[c0..c0 + BLOCK];
            let down = &line(t + j)[c0..c0 + BLOCK];
            let kw = kernel[r + j];
            for k in 0..BLOCK {
                a[k] += (up[k] + down[k]) * kw;
            }
        }
        for (o, &v) in out[c0..c0 + BLOCK].iter_mut().zip(&a) {
            *o = f64::from(v as f32);
        }
    }
    let acc = &mut acc[full..w];
    for (a, &v) in acc.iter_mut().zip(&mid[full..]) {
        *a = v * centre;
    }
    for j in (1..=r).rev() {
        let up = &line(t - j)[full..];
        let down = &line(t + j)[full..];
        let kw = kernel[r + j];
        for ((a, &u), &d) in acc.iter_mut().zip(up).zip(down) {
            *a += (u + d) * kw;
        }
    }
    for (o, &a) in out[full..].iter_mut().zip(acc.iter()) {
        *o = f64::from(a as f32);
    }
}

/// Columns per register block in the Gaussian's passes (32 f64: eight AVX2 registers; 16 was
/// 5 % slower at 2048², criterion).
const BLOCK: usize = 32;

/// One row of the row pass into `row` (every element written), from the column pass's row
/// in the middle of `line` (`w + 2r` entries; the ends are filled here, edges repeated);
/// `acc` has `w` entries.
#[inline(always)]
fn row_pass_row(kernel: &[f64], line: &mut [f64], acc: &mut [f64], row: &mut [MaybeUninit<f32>]) {
    let w = row.len();
    let r = kernel.len() / 2;
    let (first, lastv) = (line[r], line[r + w - 1]);
    line[..r].fill(first);
    line[r + w..].fill(lastv);
    let centre = kernel[r];
    // Register blocks of BLOCK columns, as in the column pass; the rest through `acc`.
    let full = w / BLOCK * BLOCK;
    for c0 in (0..full).step_by(BLOCK) {
        let mut a = [0.0f64; BLOCK];
        let m = &line[r + c0..r + c0 + BLOCK];
        for k in 0..BLOCK {
            a[k] = m[k] * centre;
        }
        for j in (1..=r).rev() {
            let kw = kernel[r - j];
            let left = &line[r - j + c0..r - j + c0 + BLOCK];
            let right = &line[r + j + c0..r + j + c0 + BLOCK];
            for k in 0..BLOCK {
                a[k] += (left[k] + right[k]) * kw;
            }
        }
        for (o, &v) in row[c0..c0 + BLOCK].iter_mut().zip(&a) {
            o.write(v as f32);
        }
    }
    let acc = &mut acc[full..w];
    for (a, &v) in acc.iter_mut().zip(&line[r + full..r + w]) {
        *a = v * centre;
    }
    for j in (1..=r).rev() {
        let kw = kernel[r - j];
        let left = &line[r - j + full..r - j + w];
        let right = &line[r + j + full..r + j + w];
        for ((a, &lv), &rv) in acc.iter_mut().zip(left).zip(right) {
            *a += (lv + rv) * kw;
        }
    }
    for (o, &a) in row[full..].iter_mut().zip(acc.iter()) {
        o.write(a as f32);
    }
}

/// The scalar reference of [`correlate_separable`]'s row pass: one pixel at a time, in
/// SciPy's order.
#[cfg(test)]
fn correlate_rows_reference(src: ImageView<f32>, kernel: &[f64]) -> Image<f32> {
    let (w, h) = (src.width(), src.height());
    let r = kernel.len() / 2;
    let mut out = Image::new(w, h, 0.0f32);
    let mut line = vec![0.0f64; w + 2 * r];
    for y in 0..h {
        let row = src.row(y);
        let (first, lastv) = (f64::from(row[0]), f64::from(row[w - 1]));
        line[..r].fill(first);
        for (l, &v) in line[r..r + w].iter_mut().zip(row) {
            *l = f64::from(v);
        }
        line[r + w..].fill(lastv);
        let centre = kernel[r];
        for (x, o) in out.row_mut(y).iter_mut().enumerate() {
            let c = x + r;
            let mut a = line[c] * centre;
            for j in (1..=r).rev() {
                a += (line[c - j] + line[c + j]) * kernel[r - j];
            }
            *o = a as f32;
        }
    }
    out
}

/// The scalar reference of [`correlate_separable`]'s column pass: one pixel at a time, in
/// SciPy's order.
#[cfg(test)]
fn correlate_columns_reference(src: ImageView<f32>, kernel: &[f64]) -> Image<f32> {
    let (w, h) = (src.width(), src.height());
    let r = kernel.len() / 2;
    Image::from_fn(w, h, |y, x| {
        let mut a = f64::from(src.get(y, x)) * kernel[r];
        for j in (1..=r).rev() {
            let u = src.get(y.saturating_sub(j), x);
            let d = src.get((y + j).min(h - 1), x);
            a += (f64::from(u) + f64::from(d)) * kernel[r + j];
        }
        a as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_scipy_radius_and_normalisation() {
        assert_eq!(gaussian_kernel(1.0, 4.0).len(), 9);
        assert_eq!(gaussian_kernel(2.5, 4.0).len(), 21);
        assert_eq!(gaussian_kernel(0.1, 4.0).len(), 1);
        assert_eq!(gaussian_kernel(0.0, 4.0), vec![1.0]);
        assert_eq!(gaussian_kernel(f64::NAN, 4.0), vec![1.0]);
        let s: f64 = gaussian_kernel(1.7, 4.0).iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn constant_image_is_unchanged_and_sum_is_kept_inside() {
        let img = Image::new(7, 5, 0.25f32);
        let out = gaussian_blur(img.view(), 1.5);
        assert!(out.as_slice().iter().all(|&v| (v - 0.25).abs() < 1e-6));
        let one = Image::new(1, 1, 3.0f32);
        assert_eq!(gaussian_blur(one.view(), 2.0).as_slice(), &[3.0]);
        let line = Image::from_fn(9, 1, |_, c| c as f32);
        let out = gaussian_blur(line.view(), 1.0);
        // A linear ramp is kept away from the replicated edges.
        assert!((out.get(0, 4) - 4.0).abs() < 1e-5);
    }

    #[test]
    fn zero_sigma_and_empty_are_copies() {
        let img = Image::from_fn(3, 2, |r, c| (r * 3 + c) as f32);
        assert_eq!(gaussian_blur(img.view(), 0.0), img);
        assert_eq!(gaussian_blur(img.view(), -1.0), img);
        let empty = Image::new(0, 4, 0.0f32);
        assert_eq!(gaussian_blur(empty.view(), 1.0).len(), 0);
    }

    #[test]
    fn vector_passes_equal_the_scalar_reference_bit_for_bit() {
        let mut state = 3u64;
        // Widths below, at and past the register block, with and without a remainder.
        for (w, h) in [(37, 29), (16, 5), (7, 20), (64, 3)] {
            let img = Image::from_fn(w, h, |_, _| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / 1e4 - 300.0
            });
            for sigma in [0.5, 1.0, 1.7, 3.0, 9.0] {
                let k = gaussian_kernel(sigma, GAUSSIAN_TRUNCATE);
                let both = correlate_separable(img.view(), &k);
                let cols_ref = correlate_columns_reference(img.view(), &k);
                let both_ref = correlate_rows_reference(cols_ref.view(), &k);
                let bits =
                    |i: &Image<f32>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&both), bits(&both_ref), "{w}x{h} sigma {sigma}");
            }
        }
    }

    #[test]
    fn row_bands_on_several_threads_give_the_same_bits() {
        let img = Image::from_fn(45, 600, |r, c| ((r * 131 + c * 71) % 1009) as f32 / 7.0);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let bits = |i: &Image<f32>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for sigma in [1.0, 4.5] {
            let want = bits(&one.install(|| gaussian_blur(img.view(), sigma)));
            for threads in [2, 3, 4] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = bits(&pool.install(|| gaussian_blur(img.view(), sigma)));
                assert_eq!(got, want, "sigma {sigma}, {threads} threads");
            }
        }
    }

    #[test]
    fn strided_view_is_filtered_like_its_copy() {
        let img = Image::from_fn(10, 8, |r, c| ((r * 7 + c * 3) % 5) as f32);
        let crop = img.view().crop(1, 2, 5, 6).unwrap();
        assert_eq!(
            gaussian_blur(crop, 1.2),
            gaussian_blur(crop.to_image().view(), 1.2)
        );
    }

    #[test]
    fn crops_in_reused_buffers_equal_gaussian_blur() {
        let mut next = crate::testing::lcg32(7);
        let field = Image::from_fn(90, 70, |_, _| (next() % 1000) as f32 / 7.0);
        for sigma in [0.5f32, 1.3, 0.0] {
            let mut crops = GaussianCrops::new(sigma);
            // Large, then smaller ones (the buffers are reused), narrower than the kernel,
            // one pixel, empty, and strided views of the field.
            for (r, c, h, w) in [
                (0, 0, 70, 90),
                (3, 5, 20, 31),
                (10, 40, 9, 2),
                (60, 80, 1, 1),
                (5, 5, 0, 3),
                (20, 10, 33, 44),
            ] {
                let view = field.view().crop(r, c, h, w).unwrap();
                let want = gaussian_blur(view, sigma);
                let got = crops.blur(view).unwrap().to_image();
                let bits =
                    |i: &Image<f32>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!((got.width(), got.height()), (w, h), "{sigma} {r} {c}");
                assert_eq!(bits(&got), bits(&want), "{sigma} {r} {c} {h} {w}");
            }
        }
    }
}
