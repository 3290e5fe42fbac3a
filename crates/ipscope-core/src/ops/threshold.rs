//! Thresholds: Otsu (two- and multi-class), Li, triangle, CellProfiler's robust background,
//! and the window-based local threshold, each mirroring a named peer implementation.
//!
//! [`otsu`] reproduces `skimage.filters.threshold_otsu(image, nbins)` for floating-point
//! images (scikit-image 0.26, NumPy 2): the histogram is `numpy.histogram(image, bins=nbins)`
//! over `[min, max]` with float32 bin edges (`numpy.linspace` in float32), bin centres are
//! `(edges[:-1] + edges[1:]) / 2` in float32, and the between-class variance is evaluated in
//! float32 exactly as scikit-image does (it casts the counts to float32), so the returned
//! value is the same bin centre, ties resolved to the first maximum like `numpy.argmax`.
//!
//! Reference: N. Otsu, "A threshold selection method from gray-level histograms",
//! IEEE Trans. Sys. Man Cyber. 9 (1979) 62–66.
//!
//! Differences from scikit-image, on purpose:
//! * NaN and ±inf pixels are ignored (scikit-image raises on them).
//! * An empty, all-non-finite or constant image gives `None` (scikit-image returns the
//!   constant value for a constant image and raises for an empty one).

use ipscope_image::{Image, ImageView};

use crate::ops::filter::{gaussian_kernel, GAUSSIAN_TRUNCATE};

/// A histogram with equal-width bins, as `numpy.histogram` builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Pixel count per bin.
    pub counts: Vec<u64>,
    /// `nbins + 1` float32 bin edges; the last bin includes its right edge.
    pub edges: Vec<f32>,
    /// Bin centres, `(edges[i] + edges[i + 1]) / 2` in float32.
    pub bin_centers: Vec<f32>,
}

/// Finite min and max of a view, or `None` when it holds no finite value.
fn finite_range(img: ImageView<f32>) -> Option<(f32, f32)> {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for row in img.rows() {
        let (l, h) = finite_range_of(row);
        lo = lo.min(l);
        hi = hi.max(h);
    }
    (lo <= hi).then_some((lo, hi))
}

/// Min and max of the finite values of `row` (±inf when it has none): with AVX2 sixteen at a
/// time ([`finite_range_avx2`]), else one at a time. Min and max are exact, so both give
/// the same result.
fn finite_range_of(row: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { finite_range_avx2(row) };
    }
    finite_range_scalar(row)
}

/// [`finite_range_of`] one value at a time: the reference and the path without AVX2.
fn finite_range_scalar(row: &[f32]) -> (f32, f32) {
    row.iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        })
}

/// [`finite_range_of`] in AVX2 registers, two of eight lanes each for the min and the max:
/// a value whose magnitude is not below +inf (±inf, NaN) becomes +inf for the min and −inf
/// for the max (blends), then `vminps`/`vmaxps`. The compiler's own vectorisation of the
/// same selects kept converting the comparison masks to bytes and back (2.4 ms a 2048²
/// field, against 0.6 ms here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn finite_range_avx2(row: &[f32]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let chunks = row.chunks_exact(16);
    let rest = chunks.remainder();
    let inf = _mm256_set1_ps(f32::INFINITY);
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let (mut lo0, mut lo1, mut hi0, mut hi1) = (inf, inf, ninf, ninf);
    for c in chunks {
        // SAFETY: `c` holds 16 f32, read as two unaligned groups of eight.
        let (a, b) = unsafe {
            (
                _mm256_loadu_ps(c.as_ptr()),
                _mm256_loadu_ps(c.as_ptr().add(8)),
            )
        };
        let fa = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_and_ps(a, magnitude), inf);
        let fb = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_and_ps(b, magnitude), inf);
        lo0 = _mm256_min_ps(_mm256_blendv_ps(inf, a, fa), lo0);
        lo1 = _mm256_min_ps(_mm256_blendv_ps(inf, b, fb), lo1);
        hi0 = _mm256_max_ps(_mm256_blendv_ps(ninf, a, fa), hi0);
        hi1 = _mm256_max_ps(_mm256_blendv_ps(ninf, b, fb), hi1);
    }
    let mut lo = [0f32; 8];
    let mut hi = [0f32; 8];
    // SAFETY: the arrays hold eight f32 each.
    unsafe {
        _mm256_storeu_ps(lo.as_mut_ptr(), _mm256_min_ps(lo0, lo1));
        _mm256_storeu_ps(hi.as_mut_ptr(), _mm256_max_ps(hi0, hi1));
    }
    let (l, h) = finite_range_scalar(rest);
    (
        lo.iter().fold(l, |a, &b| a.min(b)),
        hi.iter().fold(h, |a, &b| a.max(b)),
    )
}

/// `numpy.histogram(finite pixels, bins=nbins)` with the range taken from the data.
///
/// As NumPy, a zero-width range is widened to `[v - 0.5, v + 0.5]`. Returns `None` when
/// `nbins == 0` or no pixel is finite.
pub fn histogram(img: ImageView<f32>, nbins: usize) -> Option<Histogram> {
    let range = finite_range(img)?;
    histogram_in_range(img, nbins, range)
}

/// `numpy.histogram(values, bins=nbins, range=range)` of a slice of values with a range
/// known beforehand (e.g. from an earlier pass over values too many to hold at once): the
/// counts of several slices with the same range add up to the counts of their union, bin for
/// bin. Values outside the range and NaN are not counted. `None` when `nbins == 0`.
pub fn histogram_of_slice(values: &[f32], nbins: usize, range: (f32, f32)) -> Option<Histogram> {
    // An empty slice counts nothing; a lone NaN (never counted) stands for it, as a view
    // needs a pixel.
    let nan = [f32::NAN];
    let values = if values.is_empty() { &nan[..] } else { values };
    let img = ImageView::from_slice(values, values.len(), 1, values.len()).ok()?;
    histogram_in_range(img, nbins, range)
}

/// [`histogram`] with the finite range already known (one pass fewer).
///
/// numpy's bin search, vectorised: a block of pixels gets its bin estimates
/// ((v − first) / (last − first) · nbins), then each estimate is corrected by one bin against
/// the float32 edges. The edges are recomputed as `numpy.linspace` forms them (bin i starts at
/// i · step + first, a multiply and an add, each rounded; the last edge is `last`), so the
/// whole search is branch-free arithmetic that compiles to AVX2 when the CPU has it. Pixels
/// outside `[first, last]` and NaN go to a bin past the end that is not counted. Counting
/// stays one pixel at a time, into sixteen u32 tables (16 KB for 256 bins) summed into u64
/// totals: most pixels of a field fall in a few background bins, and one table would make
/// each increment wait for the previous.
/// The same counts as [`histogram_in_range_scalar`] (test `vector_bins_equal_the_scalar_reference`).
fn histogram_in_range(img: ImageView<f32>, nbins: usize, range: (f32, f32)) -> Option<Histogram> {
    histogram_in_range_flushed(img, nbins, range, 1 << 31)
}

/// [`histogram_in_range`], its u32 tables added to the totals once `flush_every` pixels
/// were counted (the tests flush often). At `2^31` even a lane that got every pixel (rows
/// one pixel wide) stays below `2^32` between flushes.
fn histogram_in_range_flushed(
    img: ImageView<f32>,
    nbins: usize,
    (first, last): (f32, f32),
    flush_every: usize,
) -> Option<Histogram> {
    if nbins == 0 {
        return None;
    }
    if nbins >= 1 << 24 {
        return histogram_in_range_scalar(img, nbins, (first, last));
    }
    let (first, last, step, edges) = histogram_edges((first, last), nbins);
    const BLOCK: usize = 256;
    const LANES: usize = 16;
    let stride = nbins + 1;
    let mut bins = [0u32; BLOCK];
    // Counts in u32 tables, added to the u64 totals before any lane could reach 2^32.
    let mut lanes = vec![0u32; LANES * stride];
    let mut totals = vec![0u64; stride];
    let mut pending = 0usize;
    let flush = |lanes: &mut [u32], totals: &mut [u64]| {
        for lane in lanes.chunks_exact_mut(stride) {
            for (t, l) in totals.iter_mut().zip(lane.iter_mut()) {
                *t += u64::from(*l);
                *l = 0;
            }
        }
    };
    for row in img.rows() {
        for chunk in row.chunks(BLOCK) {
            let bins = &mut bins[..chunk.len()];
            find_bins(chunk, bins, first, last, step, nbins);
            for group in bins.chunks(LANES) {
                for (lane, &b) in lanes.chunks_exact_mut(stride).zip(group) {
                    debug_assert!((b as usize) < stride);
                    // SAFETY: `find_bins` gives bins in `0..=nbins`, below `stride` (the
                    // bounds check would cost a tenth of the histogram's time).
                    unsafe { *lane.get_unchecked_mut(b as usize) += 1 };
                }
            }
            pending += chunk.len();
            if pending >= flush_every {
                flush(&mut lanes, &mut totals);
                pending = 0;
            }
        }
    }
    flush(&mut lanes, &mut totals);
    Some(sum_lanes(&totals, stride, nbins, edges))
}

/// numpy's histogram edges for `nbins` bins over `range`: a zero-width range widened to
/// `[v − 0.5, v + 0.5]`, then `numpy.linspace(first, last, nbins + 1)` in float32 (edge i =
/// i · step + first, the last edge = last). Returns (first, last, step, edges).
pub fn histogram_edges(
    (mut first, mut last): (f32, f32),
    nbins: usize,
) -> (f32, f32, f32, Vec<f32>) {
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let step = (last - first) / nbins as f32;
    let mut edges: Vec<f32> = (0..=nbins).map(|i| i as f32 * step + first).collect();
    edges[nbins] = last;
    (first, last, step, edges)
}

/// The histogram from per-lane counts (`lanes` tables of `stride ≥ nbins` bins; bins past
/// `nbins` are not counted) and the edges.
fn sum_lanes(lanes: &[u64], stride: usize, nbins: usize, edges: Vec<f32>) -> Histogram {
    let mut counts = vec![0u64; nbins];
    for lane in lanes.chunks_exact(stride) {
        for (c, &l) in counts.iter_mut().zip(lane) {
            *c += l;
        }
    }
    let bin_centers = edges.windows(2).map(|e| (e[0] + e[1]) / 2.0).collect();
    Histogram {
        counts,
        edges,
        bin_centers,
    }
}

/// The bin of each value of `chunk` (see [`histogram_in_range`]); `nbins` for a value
/// outside `[first, last]` or NaN. `nbins < 2^24`.
///
/// The estimate only has to fall within one bin of the value's bin (the correction against
/// the edges moves it by one), so one multiplication by `nbins / (last − first)` stands for
/// numpy's division then multiplication: the two differ by a few units in the last place,
/// far below a bin for `nbins < 2^24`. Where that factor overflows (a range of a few
/// subnormals) the division is kept.
#[inline(always)]
fn find_bins_body(chunk: &[f32], out: &mut [u32], first: f32, last: f32, step: f32, nbins: usize) {
    let (denom, nb) = (last - first, nbins as f32);
    let scale = nb / denom;
    if scale.is_finite() {
        bins_from_estimates(chunk, out, first, last, step, nbins, |v| {
            (v - first) * scale
        });
    } else {
        bins_from_estimates(chunk, out, first, last, step, nbins, |v| {
            ((v - first) / denom) * nb
        });
    }
}

/// [`find_bins_body`] with the bin estimate `estimate(v)` (within one bin of the right one).
#[inline(always)]
fn bins_from_estimates(
    chunk: &[f32],
    out: &mut [u32],
    first: f32,
    last: f32,
    step: f32,
    nbins: usize,
    estimate: impl Fn(f32) -> f32,
) {
    let top = nbins as i32 - 1;
    let top_f = top as f32;
    for (o, &v) in out.iter_mut().zip(chunk) {
        // Clamped to [0, top] in float32 first (NaN to 0: `max` takes the number), then
        // truncated: the bins of `(estimate as i32).clamp(0, top)`, without the saturating
        // conversion's per-lane checks that keep the loop from vectorising.
        let est = estimate(v).max(0.0).min(top_f);
        // SAFETY: `est` is finite and within [0, top], so it fits an i32.
        let i = unsafe { est.to_int_unchecked::<i32>() };
        let lo = i as f32 * step + first;
        let hi = if i == top {
            last
        } else {
            (i + 1) as f32 * step + first
        };
        let down = (v < lo) & (i > 0);
        let up = !down & (v >= hi) & (i != top);
        let bin = i - i32::from(down) + i32::from(up);
        let inside = (v >= first) & (v <= last);
        *o = if inside { bin as u32 } else { nbins as u32 };
    }
}

// `find_bins`: [`find_bins_body`] compiled for AVX2 as well, chosen at run time (no fused
// multiply-add, so both give the same bins).
crate::ops::dispatched!(find_bins = find_bins_body(
    chunk: &[f32],
    out: &mut [u32],
    first: f32,
    last: f32,
    step: f32,
    nbins: usize,
));

/// [`histogram_in_range`] one pixel at a time: the reference its vectorised bin search is
/// tested against, and the path for more than 2^24 bins (where bin numbers stop being exact
/// in float32).
fn histogram_in_range_scalar(
    img: ImageView<f32>,
    nbins: usize,
    range: (f32, f32),
) -> Option<Histogram> {
    if nbins == 0 {
        return None;
    }
    let (first, last, _, edges) = histogram_edges(range, nbins);
    let denom = last - first;
    let nb = nbins as f32;
    // The bin estimates of a block of pixels are computed together (the division
    // vectorises), then corrected and counted one by one. Consecutive pixels count into
    // four separate tables, summed at the end: most pixels of a field fall in a few
    // background bins, and one table would make each increment wait for the previous one.
    const BLOCK: usize = 256;
    const LANES: usize = 4;
    let mut est = [0f32; BLOCK];
    let mut lanes = vec![0u64; LANES * nbins];
    for row in img.rows() {
        for chunk in row.chunks(BLOCK) {
            for (e, &v) in est.iter_mut().zip(chunk) {
                *e = ((v - first) / denom) * nb;
            }
            for (k, (&f, &v)) in est.iter().zip(chunk).enumerate() {
                if !(v >= first && v <= last) {
                    continue;
                }
                // numpy's fast path: estimate, then correct by one bin against the edges.
                // The corrections are data-dependent and hard to predict on noisy images,
                // so they are computed without branches (`&` does not short-circuit).
                let mut idx = (f as usize).min(nbins - 1);
                idx -= usize::from((v < edges[idx]) & (idx > 0));
                idx += usize::from((v >= edges[idx + 1]) & (idx != nbins - 1));
                lanes[(k % LANES) * nbins + idx] += 1;
            }
        }
    }
    Some(sum_lanes(&lanes, nbins, nbins, edges))
}

/// Otsu's threshold of the finite pixels of `img` with `nbins` bins (scikit-image uses 256).
///
/// Returns `None` for an empty image, one without finite pixels, or a constant one (see the
/// module docs). Foreground is conventionally `pixel > threshold`.
pub fn otsu(img: ImageView<f32>, nbins: usize) -> Option<f32> {
    let (lo, hi) = finite_range(img)?;
    if lo == hi {
        return None;
    }
    let hist = histogram_in_range(img, nbins, (lo, hi))?;
    otsu_from_histogram(&hist.counts, &hist.bin_centers)
}

/// Otsu's threshold from [`histogram`]'s result, as [`otsu`] gives it for the image: `None`
/// for a constant image (its histogram was widened to one occupied bin).
pub fn otsu_of_histogram(hist: &Histogram) -> Option<f32> {
    if hist.counts.iter().filter(|&&c| c > 0).count() < 2 {
        return None;
    }
    otsu_from_histogram(&hist.counts, &hist.bin_centers)
}

/// Otsu's threshold from a histogram, as `threshold_otsu(hist=(counts, bin_centers))`.
///
/// Leading and trailing empty bins are trimmed first, as scikit-image does. Returns `None`
/// when the lengths differ or fewer than two bins remain.
pub fn otsu_from_histogram(counts: &[u64], bin_centers: &[f32]) -> Option<f32> {
    if counts.len() != bin_centers.len() {
        return None;
    }
    let start = counts.iter().position(|&c| c > 0)?;
    let end = counts.iter().rposition(|&c| c > 0)? + 1;
    let (counts, centers) = (&counts[start..end], &bin_centers[start..end]);
    let n = counts.len();
    if n < 2 {
        return None;
    }
    // scikit-image casts counts to float32, so every step below is float32 arithmetic with
    // sequential cumulative sums (numpy.cumsum), reproduced operation by operation.
    let c32: Vec<f32> = counts.iter().map(|&c| c as f32).collect();
    let mut weight1 = vec![0f32; n];
    let mut mean1 = vec![0f32; n];
    let (mut w, mut m) = (0f32, 0f32);
    for i in 0..n {
        w += c32[i];
        m += c32[i] * centers[i];
        weight1[i] = w;
        mean1[i] = m / w;
    }
    let mut weight2 = vec![0f32; n];
    let mut mean2 = vec![0f32; n];
    let (mut w, mut m) = (0f32, 0f32);
    for i in (0..n).rev() {
        w += c32[i];
        m += c32[i] * centers[i];
        weight2[i] = w;
        mean2[i] = m / w;
    }
    // numpy.argmax: the first maximum, and the first NaN if there is one.
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for i in 0..n - 1 {
        let d = mean1[i] - mean2[i + 1];
        let v = (weight1[i] * weight2[i + 1]) * (d * d);
        if v.is_nan() {
            best = i;
            break;
        }
        if v > best_v || i == 0 {
            best_v = v;
            best = i;
        }
    }
    Some(centers[best])
}

/// numpy's pairwise summation (`pairwise_sum` in `loops_utils.h`), so that means of many
/// pixels round the same way as `numpy.mean` on a contiguous float64 array.
fn pairwise_sum(a: &[f64]) -> f64 {
    pairwise_at(a, 0, a.len())
}

/// [`pairwise_sum`] of the `n` values `p.at(a)`, `p.at(a + 1)`, ...
fn pairwise_at<P: LiPixels + ?Sized>(p: &P, a: usize, n: usize) -> f64 {
    if n < 8 {
        let mut s = -0.0f64;
        for i in a..a + n {
            s += p.at(i);
        }
        s
    } else if n <= 128 {
        let mut r = [0f64; 8];
        for (k, rk) in r.iter_mut().enumerate() {
            *rk = p.at(a + k);
        }
        let mut i = 8;
        while i < n - (n % 8) {
            for (k, rk) in r.iter_mut().enumerate() {
                *rk += p.at(a + i + k);
            }
            i += 8;
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for j in a + i..a + n {
            s += p.at(j);
        }
        s
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_at(p, a, n2) + pairwise_at(p, a + n2, n - n2)
    }
}

/// numpy's pairwise sum of a sequence of known length, fed in pieces: the same leaves
/// (runs of at most 128 values, summed as [`pairwise_sum`] does) and the same additions, in
/// the same order, as [`pairwise_sum`] of the whole sequence collected into an array, with
/// only the current leaf held.
struct PairwiseSink {
    /// What is left to do, last first: `Some(n)` sums the next `n` values, `None` adds the
    /// two sums on top of `sums`.
    work: Vec<Option<usize>>,
    sums: Vec<f64>,
    /// The current leaf's values so far, and its length (0 once all is summed).
    leaf: Vec<f64>,
    need: usize,
}

impl PairwiseSink {
    fn new(n: usize) -> PairwiseSink {
        let mut sink = PairwiseSink {
            work: vec![Some(n)],
            sums: Vec::new(),
            leaf: Vec::with_capacity(128),
            need: 0,
        };
        sink.advance();
        sink
    }

    /// Does the additions due and opens the next leaf (`need` = 0 when there is none).
    fn advance(&mut self) {
        while let Some(w) = self.work.pop() {
            match w {
                None => {
                    let b = self.sums.pop().unwrap_or(0.0);
                    let a = self.sums.pop().unwrap_or(0.0);
                    self.sums.push(a + b);
                }
                Some(0) => self.sums.push(pairwise_sum(&[])),
                Some(n) if n <= 128 => {
                    self.need = n;
                    return;
                }
                Some(n) => {
                    // As `pairwise_at`: the first n2 values, then the rest, then their sum.
                    let mut n2 = n / 2;
                    n2 -= n2 % 8;
                    self.work.extend([None, Some(n - n2), Some(n2)]);
                }
            }
        }
        self.need = 0;
    }

    /// Takes the next values (no more than the length given in all).
    fn extend(&mut self, mut xs: &[f64]) {
        while !xs.is_empty() && self.need > 0 {
            if self.leaf.is_empty() && xs.len() >= self.need {
                // A whole leaf in `xs`: summed where it lies.
                self.sums.push(pairwise_sum(&xs[..self.need]));
                xs = &xs[self.need..];
            } else {
                let take = (self.need - self.leaf.len()).min(xs.len());
                self.leaf.extend_from_slice(&xs[..take]);
                xs = &xs[take..];
                if self.leaf.len() < self.need {
                    return;
                }
                self.sums.push(pairwise_sum(&self.leaf));
                self.leaf.clear();
            }
            self.advance();
        }
    }

    /// The sum (of what was given, if that fell short of the length).
    fn finish(mut self) -> f64 {
        if !self.leaf.is_empty() {
            let leaf = std::mem::take(&mut self.leaf);
            self.sums.push(pairwise_sum(&leaf));
        }
        self.sums
            .iter()
            .copied()
            .reduce(|a, b| a + b)
            .unwrap_or(-0.0)
    }
}

/// The shifted finite pixels Li's iteration reads (minus their minimum), in raster order.
trait LiPixels {
    /// How many pixels.
    fn count(&self) -> usize;
    /// Pixel `i` (`i < count()`).
    fn at(&self, i: usize) -> f64;
    /// The f32 pixels whose values these are, when they are (a minimum of zero): then the
    /// f32 bits of pixel `i`, less the sign, are those of `at(i)`.
    fn unshifted(&self) -> Option<&[f32]> {
        None
    }
}

impl LiPixels for [f64] {
    fn count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn at(&self, i: usize) -> f64 {
        self[i]
    }
}

/// The pixels of an image whose pixels are all finite and contiguous, each less `min` when
/// read: the values of the shifted f64 copy [`li`] otherwise makes (`f64::from(v) - min`,
/// the same operation), without making it.
struct Shifted<'a> {
    px: &'a [f32],
    min: f64,
}

impl LiPixels for Shifted<'_> {
    fn count(&self) -> usize {
        self.px.len()
    }
    #[inline(always)]
    fn at(&self, i: usize) -> f64 {
        f64::from(self.px[i]) - self.min
    }
    fn unshifted(&self) -> Option<&[f32]> {
        // v − (±0) is v, or +0 for v = −0: the same value, and the same bits but the sign.
        (self.min == 0.0).then_some(self.px)
    }
}

fn mean(a: &[f64]) -> f64 {
    pairwise_sum(a) / a.len() as f64
}

/// [`mean`] of the pixels of `p`.
fn mean_of<P: LiPixels + ?Sized>(p: &P) -> f64 {
    pairwise_at(p, 0, p.count()) / p.count() as f64
}

/// Finite pixels of a view as f64, in raster order.
fn finite_pixels(img: ImageView<f32>) -> Vec<f64> {
    img.rows()
        .flat_map(|r| r.iter())
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect()
}

/// Multi-level Otsu thresholds, as `skimage.filters.threshold_multiotsu(image, classes,
/// nbins)`: `classes - 1` ascending thresholds that maximise the between-class variance
/// over the histogram of the finite pixels.
///
/// Reproduces scikit-image's look-up-table search (`_get_multiotsu_thresh_indices_lut`),
/// float32 throughout, with bin indices as the first moment, so ties break the same way.
/// `classes = 2` is Otsu's method on the same histogram.
///
/// Reference: P.-S. Liao, T.-S. Chen, P.-C. Chung, "A fast algorithm for multilevel
/// thresholding", J. Inf. Sci. Eng. 17 (2001) 713–727.
///
/// Returns `None` when `classes < 2`, the image has no finite pixel, or fewer than
/// `classes` bins are occupied (scikit-image raises).
pub fn multiotsu(img: ImageView<f32>, classes: usize, nbins: usize) -> Option<Vec<f32>> {
    if classes < 2 {
        return None;
    }
    let hist = histogram(img, nbins)?;
    multiotsu_from_histogram(&hist.counts, &hist.bin_centers, classes)
}

/// [`multiotsu`] on a histogram (`threshold_multiotsu(hist=(counts, centres))` with the
/// image's histogram normalised to probabilities first, as scikit-image does).
pub fn multiotsu_from_histogram(
    counts: &[u64],
    bin_centers: &[f32],
    classes: usize,
) -> Option<Vec<f32>> {
    if classes < 2 || counts.len() != bin_centers.len() || counts.is_empty() {
        return None;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // skimage.exposure.histogram(normalize=True): float64 division, then float32.
    let prob: Vec<f32> = counts
        .iter()
        .map(|&c| (c as f64 / total as f64) as f32)
        .collect();
    let nvalues = prob.iter().filter(|&&p| p != 0.0).count();
    let thresh_count = classes - 1;
    if nvalues < classes {
        return None;
    }
    let idx: Vec<usize> = if nvalues == classes {
        prob.iter()
            .enumerate()
            .filter(|(_, &p)| p != 0.0)
            .map(|(i, _)| i)
            .take(thresh_count)
            .collect()
    } else {
        multiotsu_indices(&prob, thresh_count)
    };
    Some(idx.iter().map(|&i| bin_centers[i]).collect())
}

/// scikit-image's `_set_var_btwcls_lut` + `_set_thresh_indices_lut`.
fn multiotsu_indices(prob: &[f32], thresh_count: usize) -> Vec<usize> {
    let nbins = prob.len();
    let lut_idx = |i: usize, j: usize| (i * (2 * nbins - i + 1)) / 2 + j - i;
    let mut var = vec![0f32; nbins * (nbins + 1) / 2];
    let mut zeroth = vec![0f32; nbins];
    let mut first = vec![0f32; nbins];
    zeroth[0] = prob[0];
    first[0] = prob[0];
    for i in 1..nbins {
        zeroth[i] = zeroth[i - 1] + prob[i];
        first[i] = first[i - 1] + i as f32 * prob[i];
        if zeroth[i] > 0.0 {
            var[i] = (first[i] * first[i]) / zeroth[i];
        }
    }
    for i in 1..nbins {
        for j in i..nbins {
            let z = zeroth[j] - zeroth[i - 1];
            if z > 0.0 {
                let f = first[j] - first[i - 1];
                var[lut_idx(i, j)] = (f * f) / z;
            }
        }
    }
    struct Search<'a> {
        var: &'a [f32],
        nbins: usize,
        count: usize,
        current: Vec<usize>,
        best: Vec<usize>,
        max_sigma: f32,
    }
    impl Search<'_> {
        fn get(&self, i: usize, j: usize) -> f32 {
            self.var[(i * (2 * self.nbins - i + 1)) / 2 + j - i]
        }
        fn run(&mut self, hist_idx: usize, thresh_idx: usize) {
            if thresh_idx < self.count {
                for idx in hist_idx..self.nbins - self.count + thresh_idx {
                    self.current[thresh_idx] = idx;
                    self.run(idx + 1, thresh_idx + 1);
                }
            } else {
                let c = &self.current;
                let mut sigma = self.get(0, c[0]) + self.get(c[self.count - 1] + 1, self.nbins - 1);
                for k in 0..self.count - 1 {
                    sigma += self.get(c[k] + 1, c[k + 1]);
                }
                if sigma > self.max_sigma {
                    self.max_sigma = sigma;
                    self.best.clone_from(&self.current);
                }
            }
        }
    }
    let mut s = Search {
        var: &var,
        nbins,
        count: thresh_count,
        current: vec![0; thresh_count],
        best: vec![0; thresh_count],
        max_sigma: 0.0,
    };
    s.run(0, 0);
    s.best
}

/// Li's minimum cross-entropy threshold, as `skimage.filters.threshold_li(image)` for a
/// float image: iterate `t = (μ_b − μ_f) / (ln μ_b − ln μ_f)` from the mean until it moves
/// less than half the smallest gap between distinct pixel values.
///
/// Computed in f64 on the finite pixels (scikit-image works in the image's float type;
/// the parity test runs it on the float64 image), with numpy's pairwise summation. The
/// steps run on the sorted pixel values with prefix sums and only the last one on the
/// pixels themselves, which gives the same bits as re-partitioning every pixel at every
/// step (see `li_sorted`; where a step is too close to call, the pixels decide).
///
/// References: C. H. Li, C. K. Lee, "Minimum cross entropy thresholding", Pattern
/// Recognition 26 (1993) 617–625; C. H. Li, P. K. S. Tam, Pattern Recognition Letters 18
/// (1998) 771–776.
///
/// Returns `None` for an image without finite pixels or a constant one.
pub fn li(img: ImageView<f32>) -> Option<f32> {
    // A contiguous image without NaN or infinities (a field) is read in place, each pixel
    // shifted as it is read; otherwise from a shifted f64 copy of its finite pixels.
    if let Some(px) = img.as_contiguous().filter(|px| all_finite(px)) {
        // The minimum as the copy's fold finds it, up to the sign of a zero minimum (which
        // `f64::min` leaves open, and which no step of the iteration distinguishes).
        let (lo, hi) = finite_range(img)?;
        if lo == hi {
            return None;
        }
        let min = f64::from(lo);
        return li_shifted(img, &Shifted { px, min }, min);
    }
    li_copied(img)
}

/// [`li`] from the shifted f64 copy of the finite pixels (any view).
fn li_copied(img: ImageView<f32>) -> Option<f32> {
    let pixels = finite_pixels(img);
    let first = *pixels.first()?;
    if pixels.iter().all(|&v| v == first) {
        return None;
    }
    let min = pixels.iter().copied().fold(f64::INFINITY, f64::min);
    let mut image = pixels;
    for v in &mut image {
        *v -= min;
    }
    li_shifted(img, &image[..], min)
}

/// Whether every value of `px` is finite (one pass, no early exit, so it vectorises).
fn all_finite(px: &[f32]) -> bool {
    px.chunks(4096)
        .all(|c| c.iter().fold(true, |a, v| a & v.is_finite()))
}

/// [`li`] of the shifted finite pixels `image` of `img` (not constant) and their minimum.
fn li_shifted<P: LiPixels + ?Sized>(img: ImageView<f32>, image: &P, min: f64) -> Option<f32> {
    let t = if min == 0.0 {
        // Non-negative values (the usual case after a top-hat): no sort unless a stop is
        // too close to call with the tolerance's bounds.
        let mut values = Buckets::new(image);
        let mut tol = LiTolerance {
            exact: None,
            bounds: values.tolerance_bounds(image),
            img,
            min,
        };
        match li_sorted(image, &mut values, &mut tol) {
            LiSorted::Done(t) => t,
            LiSorted::Undecided => li_pixels(image, tol.get()),
        }
    } else {
        let (keys, tolerance) = li_tolerance(img, min);
        let mut values = SortedKeys::new(keys, min);
        let mut tol = LiTolerance {
            exact: Some(tolerance),
            bounds: (tolerance, tolerance),
            img,
            min,
        };
        match li_sorted(image, &mut values, &mut tol) {
            LiSorted::Done(t) => t,
            LiSorted::Undecided => li_pixels(image, tolerance),
        }
    } + min;
    t.is_finite().then_some(t as f32)
}

/// The finite pixels' sorted keys and Li's stopping tolerance: half the smallest gap between
/// distinct values minus `min`.
///
/// The f32 values are sorted as integer keys (radix sort: the comparison sort of the f64
/// copy dominated the run time). Subtracting `min` is monotone, so the smallest non-zero
/// gap of the shifted sorted values is the one `li_f64` finds after sorting and
/// deduplicating them.
fn li_tolerance(img: ImageView<f32>, min: f64) -> (Vec<u32>, f64) {
    let mut keys: Vec<u32> = img
        .rows()
        .flat_map(|r| r.iter())
        .filter(|v| v.is_finite())
        .map(|&v| f32_key(if v == 0.0 { 0.0 } else { v }))
        .collect();
    radix_sort_u32(&mut keys);
    let mut tolerance = f64::INFINITY;
    let mut prev: Option<f64> = None;
    for w in keys.windows(2) {
        if w[0] == w[1] {
            continue;
        }
        let a = prev.unwrap_or_else(|| f64::from(f32_from_key(w[0])) - min);
        let b = f64::from(f32_from_key(w[1])) - min;
        if b > a {
            tolerance = tolerance.min(b - a);
        }
        prev = Some(b);
    }
    (keys, tolerance / 2.0)
}

/// `f32::total_cmp`'s order as an unsigned integer key.
fn f32_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`f32_key`].
fn f32_from_key(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

/// Ascending LSD radix sort, four 8-bit passes (one counting pass for all four; a digit
/// every key shares is skipped). 256 buckets keep the scatter's write positions in cache,
/// which 16-bit digits (65,536 positions) did not.
fn radix_sort_u32(keys: &mut Vec<u32>) {
    let mut count = [[0usize; 256]; 4];
    for &k in keys.iter() {
        for (d, c) in count.iter_mut().enumerate() {
            c[((k >> (8 * d)) & 0xff) as usize] += 1;
        }
    }
    let n = keys.len();
    let mut tmp = vec![0u32; n];
    for (d, c) in count.iter_mut().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut sum = 0;
        for x in c.iter_mut() {
            let m = *x;
            *x = sum;
            sum += m;
        }
        let shift = 8 * d;
        for &k in keys.iter() {
            let b = ((k >> shift) & 0xff) as usize;
            tmp[c[b]] = k;
            c[b] += 1;
        }
        std::mem::swap(keys, &mut tmp);
    }
}

/// [`li`] on a list of finite values, in f64.
pub fn li_f64(values: &[f64]) -> Option<f64> {
    let image: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let first = *image.first()?;
    if image.iter().all(|&v| v == first) {
        return None;
    }
    let min = image.iter().copied().fold(f64::INFINITY, f64::min);
    let mut uniq: Vec<f64> = image.iter().map(|v| v - min).collect();
    uniq.sort_by(f64::total_cmp);
    uniq.dedup();
    let tolerance = uniq
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min)
        / 2.0;
    li_iterate(image, min, tolerance)
}

/// Li's iteration on the finite, non-constant `image` with its minimum and stopping
/// tolerance.
fn li_iterate(mut image: Vec<f64>, min: f64, tolerance: f64) -> Option<f64> {
    for v in &mut image {
        *v -= min;
    }
    let t = li_pixels(&image[..], tolerance) + min;
    t.is_finite().then_some(t)
}

/// scikit-image's iteration on the shifted pixels (minimum 0), each step re-partitioning
/// every pixel and summing both sides pairwise: the reference [`li_sorted`] must equal.
fn li_pixels<P: LiPixels + ?Sized>(image: &P, tolerance: f64) -> f64 {
    let mut t_next = mean_of(image);
    let mut t_curr = -2.0 * tolerance;
    // The iteration converges in a handful of steps; the cap only guards against a cycle.
    let mut steps = 0;
    while (t_next - t_curr).abs() > tolerance && steps < LI_MAX_STEPS {
        steps += 1;
        t_curr = t_next;
        match li_step(image, t_curr, None) {
            Some(t) => t_next = t,
            None => break,
        }
    }
    t_next
}

/// Steps of Li's iteration before it stops regardless (a guard against a cycle).
const LI_MAX_STEPS: usize = 10_000;

/// One step of scikit-image's iteration: the pixels above `t` and the others, their means
/// by numpy's pairwise summation, and the next threshold; `None` where scikit-image stops
/// (an empty side, or a background mean of 0).
///
/// Each side is summed as it is read (one count, then one pass per side), in raster order
/// as numpy sums the array of that side, without making the arrays.
///
/// `above`, when known, is the number of pixels above `t` (else they are counted).
fn li_step<P: LiPixels + ?Sized>(image: &P, t: f64, above: Option<usize>) -> Option<f64> {
    let n = image.count();
    let above =
        above.unwrap_or_else(|| (0..n).map(|i| usize::from(image.at(i) > t)).sum::<usize>());
    if above == 0 || above == n {
        return None;
    }
    // Blocks of pixels split without branches (each value written to both sides' buffers,
    // each side's count moved on where it belongs), then summed side by side.
    let (mut fore, mut back) = (PairwiseSink::new(above), PairwiseSink::new(n - above));
    const BLOCK: usize = 256;
    let (mut fb, mut bb) = ([0f64; BLOCK], [0f64; BLOCK]);
    for i0 in (0..n).step_by(BLOCK) {
        let (mut f, mut b) = (0, 0);
        for i in i0..(i0 + BLOCK).min(n) {
            let v = image.at(i);
            let up = usize::from(v > t);
            fb[f] = v;
            bb[b] = v;
            f += up;
            b += 1 - up;
        }
        fore.extend(&fb[..f]);
        back.extend(&bb[..b]);
    }
    let (fore, back) = (fore.finish(), back.finish());
    let mean_fore = fore / above as f64;
    let mean_back = back / (n - above) as f64;
    if mean_back == 0.0 {
        return None;
    }
    Some((mean_back - mean_fore) / (mean_back.ln() - mean_fore.ln()))
}

/// What [`li_sorted`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LiSorted {
    /// [`li_pixels`]' result, bit for bit.
    Done(f64),
    /// A step too close to call (see [`li_sorted`]); [`li_pixels`] decides.
    Undecided,
}

/// Relative error bound used by [`li_sorted`] for a threshold computed from its sums
/// against the same threshold from numpy's pairwise sums. The pairwise sum of n ≥ 0 values
/// is within about (log₂ n + 20) ε of the exact sum (≈ 5e-15 for 10⁸ pixels), the block
/// sums of [`li_sorted`] within 64 ε ≈ 7e-15; with the foreground mean at least
/// [`LI_MIN_RATIO`] times the background mean, the cancellation in
/// (μ_b − μ_f) / (ln μ_b − ln μ_f) multiplies their sum by at most ≈ 25, so 1e-11 leaves
/// a margin of about 30.
const LI_REL_ERR: f64 = 1e-11;

/// Smallest foreground/background mean ratio [`li_sorted`] decides by itself.
const LI_MIN_RATIO: f64 = 1.1;

/// `a + b` as an unevaluated double-double sum (Knuth's TwoSum).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// Double-double plus double.
#[inline(always)]
fn dd_add((hi, lo): (f64, f64), x: f64) -> (f64, f64) {
    let (s, e) = two_sum(hi, x);
    let lo = lo + e;
    let hi = s + lo;
    (hi, lo - (hi - s))
}

/// The shifted finite pixel values in ascending order, as [`li_sorted`] reads them.
trait SortedValues {
    /// How many values.
    fn len(&self) -> usize;
    /// How many values are ≤ `t`.
    fn below(&mut self, t: f64) -> usize;
    /// The `i`-th smallest value.
    fn value(&mut self, i: usize) -> f64;
    /// Sum of the `k` smallest values, as a double-double within 64 ε of the exact sum.
    fn prefix(&mut self, k: usize) -> (f64, f64);
}

/// Values from their radix-sorted keys, with prefix sums at block boundaries.
struct SortedKeys {
    keys: Vec<u32>,
    min: f64,
    pre: Vec<(f64, f64)>,
}

impl SortedKeys {
    const BLOCK: usize = 64;

    fn new(keys: Vec<u32>, min: f64) -> SortedKeys {
        let mut v = SortedKeys {
            keys,
            min,
            pre: Vec::new(),
        };
        let n = v.keys.len();
        let mut acc = (0.0f64, 0.0f64);
        let mut pre = Vec::with_capacity(n / Self::BLOCK + 2);
        for i0 in (0..n).step_by(Self::BLOCK) {
            pre.push(acc);
            acc = dd_add(acc, v.block_sum(i0, (i0 + Self::BLOCK).min(n)));
        }
        if n.is_multiple_of(Self::BLOCK) {
            pre.push(acc);
        }
        v.pre = pre;
        v
    }

    fn val(&self, i: usize) -> f64 {
        f64::from(f32_from_key(self.keys[i])) - self.min
    }

    /// Sum of values i0..i1 (at most one block, so within BLOCK·ε of the exact sum).
    fn block_sum(&self, i0: usize, i1: usize) -> f64 {
        (i0..i1).fold(0.0f64, |s, i| s + self.val(i))
    }
}

impl SortedValues for SortedKeys {
    fn len(&self) -> usize {
        self.keys.len()
    }
    fn below(&mut self, t: f64) -> usize {
        let min = self.min;
        // Values are non-decreasing in key order.
        self.keys
            .partition_point(|&k| f64::from(f32_from_key(k)) - min <= t)
    }
    fn value(&mut self, i: usize) -> f64 {
        self.val(i)
    }
    fn prefix(&mut self, k: usize) -> (f64, f64) {
        let b = k / Self::BLOCK;
        dd_add(self.pre[b], self.block_sum(b * Self::BLOCK, k))
    }
}

/// Non-negative f32 values (the shifted pixels when their minimum is 0) without a sort:
/// counted in buckets of their top 16 bits (sign, exponent, 7 mantissa bits), which are
/// in the values' order. Within a bucket every value is (m + low) · 2^e with m and e the
/// bucket's, so its sum is exact from the count and the sum of the low 16 bits. Only the
/// buckets a query falls inside are listed (one pass over the pixels each) and sorted.
struct Buckets<'a, P: LiPixels + ?Sized> {
    image: &'a P,
    /// Occupied buckets, ascending: (top 16 bits, count, Σ low 16 bits).
    occupied: Vec<(u32, u64, u64)>,
    /// Values before each occupied bucket (one more entry: the total).
    start: Vec<usize>,
    /// Sums before each occupied bucket, double-double (one more entry: the total).
    sums: Vec<(f64, f64)>,
    /// Listed buckets: index in `occupied`, sorted low bits, their prefix sums.
    listed: Vec<(usize, Vec<u16>, Vec<u64>)>,
}

impl<'a, P: LiPixels + ?Sized> Buckets<'a, P> {
    /// The f32 bits of the non-negative value `v` (an exact f32 held in an f64).
    fn bits(v: f64) -> u32 {
        // -0.0 counts as 0.0, as in the keys of `li_tolerance`.
        (v as f32).to_bits() & 0x7fff_ffff
    }

    /// The mantissa of bucket `top` without its low 16 bits, and the bucket's scale 2^e.
    fn scale(top: u32) -> (u64, f64) {
        let exp = (top >> 7) & 0xff;
        let m_hi = u64::from(top & 0x7f) << 16;
        let pow2 = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
        if exp == 0 {
            (m_hi, pow2(-149))
        } else {
            (m_hi | (1 << 23), pow2(i64::from(exp) - 150))
        }
    }

    /// Exact value of Σ (m_hi + low) · 2^e over `count` values with Σ low = `low_sum`, as
    /// a double-double.
    fn exact(top: u32, count: u64, low_sum: u64) -> (f64, f64) {
        let (m_hi, scale) = Self::scale(top);
        let total = u128::from(count) * u128::from(m_hi) + u128::from(low_sum);
        let hi = total as f64;
        let lo = (total as i128 - hi as i128) as f64;
        (hi * scale, lo * scale)
    }

    fn new(image: &'a P) -> Buckets<'a, P> {
        // Each bucket's count and sum of low bits side by side (one cache line per pixel),
        // in two tables, even and odd pixels: a run of pixels in one bucket then updates two
        // entries in turn instead of waiting on one entry's previous update.
        const TOPS: usize = 1 << 16;
        let mut acc = vec![[0u64; 2]; 2 * TOPS];
        let (even, odd) = acc.split_at_mut(TOPS);
        let n = image.count();
        let add = |table: &mut [[u64; 2]], b: u32| {
            let e = &mut table[(b >> 16) as usize];
            e[0] += 1;
            e[1] += u64::from(b & 0xffff);
        };
        if let Some(px) = image.unshifted() {
            for pair in px.chunks_exact(2) {
                add(even, pair[0].to_bits() & 0x7fff_ffff);
                add(odd, pair[1].to_bits() & 0x7fff_ffff);
            }
        } else {
            for i in (0..n / 2 * 2).step_by(2) {
                add(even, Self::bits(image.at(i)));
                add(odd, Self::bits(image.at(i + 1)));
            }
        }
        if n % 2 == 1 {
            add(even, Self::bits(image.at(n - 1)));
        }
        for (e, o) in even.iter_mut().zip(odd.iter()) {
            e[0] += o[0];
            e[1] += o[1];
        }
        let count = |t: usize| even[t][0];
        let low = |t: usize| even[t][1];
        let mut occupied = Vec::new();
        let (mut start, mut sums) = (vec![0usize], vec![(0.0f64, 0.0f64)]);
        let (mut n, mut acc) = (0usize, (0.0f64, 0.0f64));
        for t in 0..1usize << 16 {
            if count(t) > 0 {
                occupied.push((t as u32, count(t), low(t)));
                n += count(t) as usize;
                let (h, l) = Self::exact(t as u32, count(t), low(t));
                acc = dd_add(dd_add(acc, h), l);
                start.push(n);
                sums.push(acc);
            }
        }
        Buckets {
            image,
            occupied,
            start,
            sums,
            listed: Vec::new(),
        }
    }

    fn value_of(top: u32, low: u16) -> f64 {
        let (m_hi, scale) = Self::scale(top);
        (m_hi + u64::from(low)) as f64 * scale
    }

    /// Bounds of Li's tolerance (half the smallest gap between distinct values): at least
    /// half the smallest spacing of f32 values in an occupied bucket, at most half the
    /// smallest difference between distinct neighbouring pixels.
    fn tolerance_bounds(&self, image: &P) -> (f64, f64) {
        let finest = self
            .occupied
            .iter()
            .map(|o| Self::scale(o.0).1)
            .fold(f64::INFINITY, f64::min);
        // The smallest non-zero difference (a minimum, so in any order): four running
        // minima over consecutive differences, without branches, then the rest.
        let mut gaps = [f64::INFINITY; 4];
        let n = image.count();
        let mut i = 1;
        while i + 4 <= n {
            for (k, g) in gaps.iter_mut().enumerate() {
                let d = (image.at(i + k) - image.at(i + k - 1)).abs();
                let d = if d > 0.0 { d } else { f64::INFINITY };
                *g = if d < *g { d } else { *g };
            }
            i += 4;
        }
        for j in i..n {
            let d = (image.at(j) - image.at(j - 1)).abs();
            if d > 0.0 && d < gaps[0] {
                gaps[0] = d;
            }
        }
        let gap = gaps
            .iter()
            .copied()
            .fold(f64::INFINITY, |a, b| if b < a { b } else { a });
        // The gaps are differences of f64 values, each within ε of the exact one.
        (0.5 * finest * (1.0 - 1e-12), 0.5 * gap * (1.0 + 1e-12))
    }

    /// The occupied bucket holding sorted index i (i < len).
    fn bucket_of_index(&self, i: usize) -> usize {
        self.start.partition_point(|&s| s <= i) - 1
    }

    /// Sorted low bits of occupied bucket `o` and their prefix sums (listed on first use).
    ///
    /// One pass over the pixels lists the neighbouring buckets too, up to 1/64 of the
    /// pixels in all: Li's steps close in on the threshold, so the next queries mostly
    /// fall among them.
    fn list(&mut self, o: usize) -> usize {
        if let Some(p) = self.listed.iter().position(|l| l.0 == o) {
            return p;
        }
        let budget = (self.len() / 64).max(self.occupied[o].1 as usize);
        let (mut a, mut b) = (o, o + 1);
        let mut taken = self.occupied[o].1 as usize;
        let is_listed =
            |listed: &Vec<(usize, Vec<u16>, Vec<u64>)>, q: usize| listed.iter().any(|l| l.0 == q);
        loop {
            let mut grew = false;
            if a > 0 && !is_listed(&self.listed, a - 1) {
                let c = self.occupied[a - 1].1 as usize;
                if taken + c <= budget {
                    a -= 1;
                    taken += c;
                    grew = true;
                }
            }
            if b < self.occupied.len() && !is_listed(&self.listed, b) {
                let c = self.occupied[b].1 as usize;
                if taken + c <= budget {
                    b += 1;
                    taken += c;
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        let (lo_top, hi_top) = (self.occupied[a].0, self.occupied[b - 1].0);
        let mut bits: Vec<u32> = Vec::with_capacity(taken);
        let (lo_bits, hi_bits) = (lo_top << 16, hi_top << 16 | 0xffff);
        if let Some(px) = self.image.unshifted() {
            // Blocks with no value in the listed buckets (most) are passed over after one
            // branch-free test of the whole block.
            for block in px.chunks(32) {
                let any = block.iter().fold(false, |a, v| {
                    let x = v.to_bits() & 0x7fff_ffff;
                    a | ((x >= lo_bits) & (x <= hi_bits))
                });
                if any {
                    for v in block {
                        let x = v.to_bits() & 0x7fff_ffff;
                        if (lo_bits..=hi_bits).contains(&x) {
                            bits.push(x);
                        }
                    }
                }
            }
        } else {
            for i in 0..self.image.count() {
                let x = Self::bits(self.image.at(i));
                if (lo_top..=hi_top).contains(&(x >> 16)) {
                    bits.push(x);
                }
            }
        }
        bits.sort_unstable();
        let mut at = 0;
        for q in a..b {
            let c = self.occupied[q].1 as usize;
            let lows: Vec<u16> = bits[at..at + c]
                .iter()
                .map(|&x| (x & 0xffff) as u16)
                .collect();
            at += c;
            let mut pre = Vec::with_capacity(c + 1);
            let mut s = 0u64;
            pre.push(0);
            for &l in &lows {
                s += u64::from(l);
                pre.push(s);
            }
            self.listed.push((q, lows, pre));
        }
        self.listed
            .iter()
            .position(|l| l.0 == o)
            .unwrap_or_else(|| unreachable!())
    }
}

impl<P: LiPixels + ?Sized> SortedValues for Buckets<'_, P> {
    fn len(&self) -> usize {
        self.start[self.start.len() - 1]
    }
    fn below(&mut self, t: f64) -> usize {
        // Buckets whose largest possible value is ≤ t lie wholly below; the next one may
        // straddle t.
        let o = self
            .occupied
            .partition_point(|b| Self::value_of(b.0, u16::MAX) <= t);
        if o == self.occupied.len() || Self::value_of(self.occupied[o].0, 0) > t {
            return self.start[o];
        }
        let top = self.occupied[o].0;
        let p = self.list(o);
        let within = self.listed[p]
            .1
            .partition_point(|&l| Self::value_of(top, l) <= t);
        self.start[o] + within
    }
    fn value(&mut self, i: usize) -> f64 {
        let o = self.bucket_of_index(i);
        let top = self.occupied[o].0;
        let r = i - self.start[o];
        let p = self.list(o);
        Self::value_of(top, self.listed[p].1[r])
    }
    fn prefix(&mut self, k: usize) -> (f64, f64) {
        if k >= self.len() {
            return self.sums[self.sums.len() - 1];
        }
        let o = self.bucket_of_index(k);
        let r = k - self.start[o];
        if r == 0 {
            return self.sums[o];
        }
        let top = self.occupied[o].0;
        let p = self.list(o);
        let (h, l) = Self::exact(top, r as u64, self.listed[p].2[r]);
        dd_add(dd_add(self.sums[o], h), l)
    }
}

/// Li's stopping tolerance: known, or bounds and the way to compute it exactly.
struct LiTolerance<'a> {
    exact: Option<f64>,
    bounds: (f64, f64),
    img: ImageView<'a, f32>,
    min: f64,
}

impl LiTolerance<'_> {
    /// The exact tolerance (computed on first use).
    fn get(&mut self) -> f64 {
        match self.exact {
            Some(t) => t,
            None => {
                let t = li_tolerance(self.img, self.min).1;
                self.exact = Some(t);
                t
            }
        }
    }

    /// Whether scikit-image's loop stops (a change of `d` ≤ the tolerance) when the
    /// change it computes is within `e` of `d`; `None` when too close to call.
    fn stops(&mut self, d: f64, e: f64) -> Option<bool> {
        if self.exact.is_none() {
            let (lo, hi) = self.bounds;
            if d + e < lo {
                return Some(true);
            }
            if d - e > hi {
                return Some(false);
            }
        }
        let tol = self.get();
        if e > 0.0 && (d - tol).abs() <= e {
            return None;
        }
        Some(d <= tol)
    }
}

/// [`li_pixels`] without re-partitioning the pixels at every step.
///
/// Every step of scikit-image's iteration depends on the pixels only through the partition
/// at the current threshold, and the partition only through its size k once the values are
/// sorted (`values`). So the steps run on the sorted values with prefix sums: each
/// threshold is then within [`LI_REL_ERR`] of the one numpy's pairwise sums give, which
/// decides the same partition as long as no pixel value lies within that margin of it, and
/// the same stop as long as the step is not within the margin of the tolerance. Where
/// either is too close to call, or the means are too close for the bound, it gives up
/// ([`LiSorted::Undecided`]). Otherwise the final threshold is the pixel path's final step
/// (pairwise sums over the final partition, in raster order), so the result is
/// [`li_pixels`]' bit for bit. `image` holds the pixels minus their minimum, in raster
/// order.
fn li_sorted<P: LiPixels + ?Sized>(
    image: &P,
    values: &mut dyn SortedValues,
    tol: &mut LiTolerance,
) -> LiSorted {
    let n = values.len();
    if n != image.count() || n < 2 {
        return LiSorted::Undecided;
    }
    let total = values.prefix(n);
    let err = |t: f64| LI_REL_ERR * t.abs();
    // (threshold, whether it is the pixel path's exactly). The first step always runs:
    // scikit-image starts from t = −2·tolerance and the mean, at least 0, is farther than
    // the tolerance from it.
    let mut t_next = (mean_of(image), true);
    let mut t_curr;
    let mut last: Option<usize> = None;
    let mut steps = 0;
    loop {
        steps += 1;
        t_curr = t_next;
        let k = values.below(t_curr.0);
        if k == 0 || k == n {
            return LiSorted::Undecided;
        }
        if !t_curr.1 {
            let e = err(t_curr.0);
            if t_curr.0 - values.value(k - 1) <= e || values.value(k) - t_curr.0 <= e {
                return LiSorted::Undecided;
            }
        }
        if last == Some(k) {
            // The same partition gives the same threshold, exactly: the pixel path stops.
            break;
        }
        let sb = values.prefix(k);
        let (hi, lo) = two_sum(total.0, -sb.0);
        let sf = hi + (lo + (total.1 - sb.1));
        let mean_back = (sb.0 + sb.1) / k as f64;
        let mean_fore = sf / (n - k) as f64;
        if !(mean_back > 0.0 && mean_fore >= LI_MIN_RATIO * mean_back) {
            return LiSorted::Undecided;
        }
        let t = (mean_back - mean_fore) / (mean_back.ln() - mean_fore.ln());
        if !t.is_finite() {
            return LiSorted::Undecided;
        }
        t_next = (t, false);
        last = Some(k);
        if steps >= LI_MAX_STEPS {
            break;
        }
        let d = (t_next.0 - t_curr.0).abs();
        let e = if t_curr.1 {
            err(t_next.0)
        } else {
            err(t_next.0) + err(t_curr.0)
        };
        match tol.stops(d, e) {
            Some(true) => break,
            Some(false) => {}
            None => return LiSorted::Undecided,
        }
    }
    match last {
        // The pixel path's last step, on the same partition (no pixel value lies between
        // its threshold and the largest value at or below it).
        Some(k) => {
            // The k smallest values are those at or below the split.
            let split = values.value(k - 1);
            match li_step(image, split, Some(n - k)) {
                Some(t) => LiSorted::Done(t),
                None => LiSorted::Undecided,
            }
        }
        None => LiSorted::Undecided,
    }
}

/// The triangle threshold, as `skimage.filters.threshold_triangle(image, nbins)`: the bin
/// farthest from the line joining the histogram's peak to the end of its longer tail.
///
/// Reference: G. W. Zack, W. E. Rogers, S. A. Latt, "Automatic measurement of sister
/// chromatid exchange frequency", J. Histochem. Cytochem. 25 (1977) 741–753.
///
/// Returns `None` for an image without finite pixels or a constant one.
pub fn triangle(img: ImageView<f32>, nbins: usize) -> Option<f32> {
    let (lo, hi) = finite_range(img)?;
    if lo == hi {
        return None;
    }
    let hist = histogram(img, nbins)?;
    triangle_from_histogram(&hist.counts, &hist.bin_centers)
}

/// [`triangle`] on a histogram (counts and bin centres).
pub fn triangle_from_histogram(counts: &[u64], bin_centers: &[f32]) -> Option<f32> {
    let nbins = counts.len();
    if nbins == 0 || bin_centers.len() != nbins {
        return None;
    }
    let mut arg_peak = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c > counts[arg_peak] {
            arg_peak = i;
        }
    }
    let peak_height = counts[arg_peak] as f64;
    let arg_low = counts.iter().position(|&c| c > 0)?;
    let arg_high = counts.iter().rposition(|&c| c > 0)?;
    if arg_low == arg_high {
        return None;
    }
    let flip = (arg_peak as i64 - arg_low as i64) < (arg_high as i64 - arg_peak as i64);
    let hist: Vec<u64> = if flip {
        counts.iter().rev().copied().collect()
    } else {
        counts.to_vec()
    };
    let (arg_low, arg_peak) = if flip {
        (nbins - arg_high - 1, nbins - arg_peak - 1)
    } else {
        (arg_low, arg_peak)
    };
    let width = (arg_peak - arg_low) as f64;
    let norm = (peak_height * peak_height + width * width).sqrt();
    let (ph, wd) = (peak_height / norm, width / norm);
    let mut best = 0usize;
    let mut best_v = f64::NEG_INFINITY;
    for x in 0..arg_peak - arg_low {
        let len = ph * x as f64 - wd * hist[x + arg_low] as f64;
        if len > best_v {
            best_v = len;
            best = x;
        }
    }
    let mut level = best + arg_low;
    if flip {
        level = nbins - level - 1;
    }
    Some(bin_centers[level])
}

/// Settings of CellProfiler's "Robust Background" threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustBackgroundParams {
    /// Share of the darkest pixels discarded before the statistics. Default 0.05.
    pub lower_outlier_fraction: f64,
    /// Share of the brightest pixels discarded. Default 0.05.
    pub upper_outlier_fraction: f64,
    /// Standard deviations above the mean. Default 2.
    pub deviations: f64,
}

impl Default for RobustBackgroundParams {
    fn default() -> Self {
        RobustBackgroundParams {
            lower_outlier_fraction: 0.05,
            upper_outlier_fraction: 0.05,
            deviations: 2.0,
        }
    }
}

/// CellProfiler's "Robust Background" threshold with its defaults (mean and standard
/// deviation): sort the finite pixels, trim the outlier fractions at both ends, return
/// mean + `deviations` · sd of the rest. Mirrors `centrosome.threshold.
/// get_robust_background_threshold` (CellProfiler 4), including its quirk of trimming
/// nothing at all when the lower trim rounds to zero pixels. Fewer than 3 pixels give
/// `None` (centrosome returns 0); a constant image gives `None`.
pub fn robust_background(img: ImageView<f32>, params: &RobustBackgroundParams) -> Option<f32> {
    robust_background_f64(&finite_pixels(img), params).map(|t| t as f32)
}

/// [`robust_background`] on a list of values, in f64.
pub fn robust_background_f64(values: &[f64], params: &RobustBackgroundParams) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = v.len();
    if n < 3 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    if v[0] == v[n - 1] {
        return None;
    }
    // Python's round(): half to even.
    let round = |x: f64| -> usize {
        let r = x.round_ties_even();
        if r.is_finite() && r > 0.0 {
            r as usize
        } else {
            0
        }
    };
    let low = round(n as f64 * params.lower_outlier_fraction);
    let hi = n.saturating_sub(round(n as f64 * params.upper_outlier_fraction));
    let im = if low == 0 {
        &v[..]
    } else if low < hi {
        &v[low..hi]
    } else {
        return None;
    };
    let m = mean(im);
    let dev: Vec<f64> = im.iter().map(|&x| (x - m) * (x - m)).collect();
    let sd = mean(&dev).sqrt();
    let t = m + sd * params.deviations;
    t.is_finite().then_some(t)
}

/// SciPy's `mode='reflect'` index (half-sample symmetric, `d c b a | a b c d | d c b a`),
/// valid for offsets of any size.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let p = 2 * n;
    let m = i.rem_euclid(p);
    (if m >= n { p - 1 - m } else { m }) as usize
}

/// Gaussian filter with SciPy's `mode='reflect'`, `truncate=4.0`, float32 in and out, in
/// the same order of operations as [`crate::ops::filter::gaussian_blur`].
fn gaussian_reflect(src: ImageView<f32>, sigma: f64) -> Image<f32> {
    let kernel = gaussian_kernel(sigma, GAUSSIAN_TRUNCATE);
    let (w, h) = (src.width(), src.height());
    if kernel.len() == 1 || src.is_empty() {
        return src.to_image();
    }
    let r = kernel.len() / 2;
    let centre = kernel[r];
    // Down the columns first, as scipy.ndimage does (axis 0, then axis 1).
    let mut tmp = Image::new(w, h, 0f32);
    let mut acc = vec![0f64; w];
    for y in 0..h {
        for (a, &v) in acc.iter_mut().zip(src.row(y)) {
            *a = f64::from(v) * centre;
        }
        for j in (1..=r).rev() {
            let up = src.row(reflect(y as i64 - j as i64, h));
            let down = src.row(reflect((y + j) as i64, h));
            let kw = kernel[r + j];
            for ((a, &u), &d) in acc.iter_mut().zip(up).zip(down) {
                *a += (f64::from(u) + f64::from(d)) * kw;
            }
        }
        for (o, &a) in tmp.row_mut(y).iter_mut().zip(&acc) {
            *o = a as f32;
        }
    }
    let mut out = Image::new(w, h, 0f32);
    for y in 0..h {
        let src = tmp.row(y);
        let dst = out.row_mut(y);
        for (x, d) in dst.iter_mut().enumerate() {
            let mut a = f64::from(src[x]) * centre;
            for j in (1..=r).rev() {
                let l = src[reflect(x as i64 - j as i64, w)];
                let rr = src[reflect((x + j) as i64, w)];
                a += (f64::from(l) + f64::from(rr)) * kernel[r + j];
            }
            *d = a as f32;
        }
    }
    out
}

/// Local (adaptive) threshold image, as `skimage.filters.threshold_local(image, block_size,
/// method='gaussian', offset, mode='reflect')`: the image smoothed with a Gaussian of
/// σ = (block_size − 1) / 6, minus `offset`. A pixel is foreground when it exceeds its
/// local threshold.
///
/// Returns `None` when `block_size` is even or zero (scikit-image raises).
pub fn local(img: ImageView<f32>, block_size: usize, offset: f32) -> Option<Image<f32>> {
    if block_size == 0 || block_size.is_multiple_of(2) {
        return None;
    }
    let sigma = (block_size as f64 - 1.0) / 6.0;
    let mut t = gaussian_reflect(img, sigma);
    for v in t.as_mut_slice() {
        *v -= offset;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    /// The AVX2 range against the scalar one on rows of every length up to 70 with NaN,
    /// ±inf, ±0 and extreme values scattered through them.
    #[test]
    fn vector_range_equals_the_scalar_one() {
        let mut next = crate::testing::lcg32(0x51ed_270b);
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            f32::MAX,
            -f32::MAX,
        ];
        for len in 0..=70 {
            for density in [0u32, 1, 4, 10] {
                let row: Vec<f32> = (0..len)
                    .map(|_| {
                        if next() % 10 < density {
                            special[(next() % special.len() as u32) as usize]
                        } else {
                            (next() % 20_001) as f32 / 100.0 - 100.0
                        }
                    })
                    .collect();
                let want = finite_range_scalar(&row);
                assert_eq!(finite_range_of(&row), want, "{row:?}");
            }
        }
    }

    #[test]
    fn finite_range_skips_nan_and_infinities() {
        let mut v: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 1001) as f32 - 500.0)
            .collect();
        v[5] = f32::NAN;
        v[17] = f32::INFINITY;
        v[1001] = f32::NEG_INFINITY;
        v[999] = -0.0;
        let want = v
            .iter()
            .filter(|x| x.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        for w in [1usize, 3, 8, 17, 1003] {
            let img = Image::from_vec(w, v.len() / w, v[..v.len() / w * w].to_vec()).unwrap();
            let sub: Vec<f32> = v[..v.len() / w * w].to_vec();
            let want_sub = sub
                .iter()
                .filter(|x| x.is_finite())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            assert_eq!(finite_range(img.view()), Some(want_sub), "width {w}");
        }
        assert_eq!(want, (-500.0, 500.0));
        let none = Image::from_vec(3, 1, vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).unwrap();
        assert_eq!(finite_range(none.view()), None);
        // The largest finite magnitudes count; eight lanes and a remainder.
        let mut big = vec![1.0f32; 19];
        big[2] = f32::MAX;
        big[11] = -f32::MAX;
        big[18] = f32::INFINITY;
        let big = Image::from_vec(19, 1, big).unwrap();
        assert_eq!(finite_range(big.view()), Some((-f32::MAX, f32::MAX)));
    }

    #[test]
    fn vector_bins_equal_the_scalar_reference() {
        // Random values, values on and next to every edge, NaN, ±inf, a constant image, one
        // bin and odd bin counts; the range given or taken from the data.
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut rnd = || (next() >> 40) as f32 / (1u64 << 24) as f32;
        for nbins in [1usize, 2, 3, 7, 256, 1000, 4099] {
            for (first, last) in [
                (0.0f32, 1.0f32),
                (-3.5, 1e-3),
                (100.0, 65535.0),
                (0.25, 0.25),
                // A range of subnormals: nbins / (last − first) overflows f32.
                (0.0, 1e-40),
                (-2e-41, 3e-41),
            ] {
                let step = (last - first) / nbins as f32;
                let mut v: Vec<f32> = (0..3001).map(|_| first + (last - first) * rnd()).collect();
                for i in 0..=nbins {
                    let e = i as f32 * step + first;
                    v.extend([e, e.next_up(), e.next_down()]);
                }
                v.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, first, last, 0.0]);
                let w = v.len();
                let img = Image::from_vec(w, 1, v.clone()).unwrap();
                let want = histogram_in_range_scalar(img.view(), nbins, (first, last));
                let got = histogram_in_range(img.view(), nbins, (first, last));
                assert_eq!(got, want, "{nbins} bins, [{first}, {last}]");
                let flushed = histogram_in_range_flushed(img.view(), nbins, (first, last), 300);
                assert_eq!(flushed, want, "{nbins} bins, flushed every block");
                assert_eq!(histogram(img.view(), nbins), {
                    let r = finite_range(img.view()).unwrap();
                    histogram_in_range_scalar(img.view(), nbins, r)
                });
                // The body as built (no AVX2) gives the same bins as the dispatched one.
                let (f, l) = if first == last {
                    (first - 0.5, last + 0.5)
                } else {
                    (first, last)
                };
                let step = (l - f) / nbins as f32;
                for c in v.chunks(256) {
                    let (mut a, mut b) = (vec![0u32; c.len()], vec![0u32; c.len()]);
                    find_bins(c, &mut a, f, l, step, nbins);
                    find_bins_body(c, &mut b, f, l, step, nbins);
                    assert_eq!(a, b);
                }
            }
        }
        let constant = Image::new(5, 3, 7.0f32);
        assert_eq!(
            histogram(constant.view(), 256),
            histogram_in_range_scalar(constant.view(), 256, (7.0, 7.0))
        );
    }

    #[test]
    fn degenerate_images_have_no_threshold() {
        let empty = Image::new(0, 0, 0.0f32);
        assert_eq!(otsu(empty.view(), 256), None);
        let constant = Image::new(4, 4, 0.3f32);
        assert_eq!(otsu(constant.view(), 256), None);
        let nan = Image::new(3, 3, f32::NAN);
        assert_eq!(otsu(nan.view(), 256), None);
        let one = Image::new(1, 1, 1.0f32);
        assert_eq!(otsu(one.view(), 256), None);
        let two = Image::from_vec(2, 1, vec![0.0f32, 1.0]).unwrap();
        assert_eq!(otsu(two.view(), 0), None);
    }

    #[test]
    fn two_levels_split_between_them_and_nan_is_ignored() {
        let img = Image::from_fn(10, 10, |r, _| if r < 5 { 0.1f32 } else { 0.9 });
        let t = otsu(img.view(), 256).unwrap();
        assert!(t > 0.1 && t < 0.9, "{t}");
        let mut with_nan = img.clone();
        with_nan.set(0, 0, f32::NAN);
        with_nan.set(9, 9, f32::INFINITY);
        let t2 = otsu(with_nan.view(), 256).unwrap();
        assert!(t2 > 0.1 && t2 < 0.9);
    }

    #[test]
    fn histogram_counts_every_finite_pixel_and_last_bin_is_closed() {
        let img = Image::from_fn(7, 3, |r, c| (r * 7 + c) as f32 / 20.0);
        let h = histogram(img.view(), 5).unwrap();
        assert_eq!(h.counts.iter().sum::<u64>(), 21);
        assert_eq!(h.edges.len(), 6);
        assert_eq!(*h.edges.last().unwrap(), 1.0);
        assert!(h.counts[4] > 0);
        let c = Image::new(2, 2, 2.0f32);
        let hc = histogram(c.view(), 4).unwrap();
        assert_eq!(hc.edges[0], 1.5);
        assert_eq!(hc.counts.iter().sum::<u64>(), 4);
    }

    #[test]
    fn from_histogram_trims_and_checks() {
        assert_eq!(otsu_from_histogram(&[1, 2], &[0.0]), None);
        assert_eq!(otsu_from_histogram(&[0, 5, 0], &[0.0, 1.0, 2.0]), None);
        assert_eq!(otsu_from_histogram(&[], &[]), None);
        let t = otsu_from_histogram(&[0, 10, 0, 10, 0], &[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t, Some(1.0));
    }

    #[test]
    fn li_with_radix_gaps_equals_li_f64() {
        // li() finds the gap tolerance from radix-sorted f32 keys; li_f64 from the sorted
        // shifted f64 copy. Same result, bit for bit, on varied fields (negative values,
        // -0.0, repeats, wide and narrow ranges, NaN).
        let mut rnd = crate::testing::lcg_unit(7u64);
        for case in 0..12 {
            let img = Image::from_fn(61, 47, |r, c| {
                let u = rnd();
                let v = match case % 4 {
                    0 => (u * 255.0).round() / 255.0,
                    1 => u * 1e-3 + 0.5,
                    2 => (u - 0.3) * 1e4,
                    _ => u.powi(3) * 1e30,
                } as f32;
                if (r + c) % 97 == 0 {
                    f32::NAN
                } else if (r * c) % 89 == 1 {
                    -0.0
                } else {
                    v
                }
            });
            let want = li_f64(&finite_pixels(img.view())).map(|t| t as f32);
            assert_eq!(
                li(img.view()).map(f32::to_bits),
                want.map(f32::to_bits),
                "case {case}"
            );
        }
        let keys: Vec<u32> = [3.5f32, -1.0, 0.0, 7.25, -8.0]
            .iter()
            .map(|&v| f32_key(v))
            .collect();
        let mut sorted = keys.clone();
        radix_sort_u32(&mut sorted);
        let back: Vec<f32> = sorted.iter().map(|&k| f32_from_key(k)).collect();
        assert_eq!(back, vec![-8.0, -1.0, 0.0, 3.5, 7.25]);
    }

    #[test]
    fn sunk_pairwise_sums_equal_the_sums_of_the_collected_values() {
        // The sink takes a side's values in pieces; numpy sums the array of that side.
        // Every length up to 600 and a few long ones, values of mixed magnitude (so that the
        // order of additions shows in the bits), pieces of varied length.
        let mut rnd = crate::testing::lcg_unit(11u64);
        let lengths: Vec<usize> = (0..600).chain([1000, 4097, 65_536, 100_003]).collect();
        for n in lengths {
            let v: Vec<f64> = (0..n)
                .map(|i| rnd() * 10f64.powi((i % 9) as i32 - 4))
                .collect();
            for first in [1, 5, 128, 300] {
                let mut sink = PairwiseSink::new(n);
                let (mut at, mut piece) = (0, first);
                while at < n {
                    let end = (at + piece).min(n);
                    sink.extend(&v[at..end]);
                    at = end;
                    piece = piece * 7 % 300 + 1;
                }
                let got = sink.finish();
                assert_eq!(
                    got.to_bits(),
                    pairwise_sum(&v).to_bits(),
                    "n {n}, first {first}"
                );
            }
            let s = Shifted {
                px: &v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                min: 0.25,
            };
            let copy: Vec<f64> = s.px.iter().map(|&x| f64::from(x) - 0.25).collect();
            assert_eq!(mean_of(&s).to_bits(), mean_of(&copy[..]).to_bits(), "n {n}");
        }
    }

    /// scikit-image's step as numpy computes it: both sides collected, then their means.
    fn li_step_collected(image: &[f64], t: f64) -> Option<f64> {
        let fore: Vec<f64> = image.iter().copied().filter(|&v| v > t).collect();
        let back: Vec<f64> = image.iter().copied().filter(|&v| v <= t).collect();
        if fore.is_empty() || back.is_empty() {
            return None;
        }
        let (mean_fore, mean_back) = (mean(&fore), mean(&back));
        if mean_back == 0.0 {
            return None;
        }
        Some((mean_back - mean_fore) / (mean_back.ln() - mean_fore.ln()))
    }

    #[test]
    fn li_steps_equal_the_steps_on_collected_sides() {
        // The step splits blocks of pixels without branches and sums each side as it goes;
        // the result must be the collected sides' bit for bit: lengths around the block
        // size, thresholds taking none, few, half, most and all of the pixels, values of
        // mixed magnitude, zeros.
        let mut rnd = crate::testing::lcg_unit(23u64);
        for n in [1usize, 2, 7, 255, 256, 257, 1000, 70_001] {
            let image: Vec<f64> = (0..n)
                .map(|i| {
                    if i % 13 == 0 {
                        0.0
                    } else {
                        rnd() * 10f64.powi((i % 7) as i32 - 3)
                    }
                })
                .collect();
            let mut sorted = image.clone();
            sorted.sort_by(f64::total_cmp);
            let ts = [
                -1.0,
                0.0,
                sorted[n / 10],
                sorted[n / 2],
                sorted[n - 1] * 0.99,
                1e9,
            ];
            for t in ts {
                let want = li_step_collected(&image, t);
                let above = image.iter().filter(|&&v| v > t).count();
                for known in [None, Some(above)] {
                    assert_eq!(
                        li_step(&image[..], t, known).map(f64::to_bits),
                        want.map(f64::to_bits),
                        "n {n}, t {t}, count {known:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn li_in_place_equals_li_of_the_copy() {
        // Contiguous fields without NaN are read in place; the same fields through the
        // shifted copy must give the same threshold bit for bit: minimum 0 (the bucket
        // path), -0.0 among the pixels and as the minimum, negative values, repeats.
        let mut rnd = crate::testing::lcg_unit(3u64);
        let mut decided = 0;
        for case in 0..16 {
            let img = Image::from_fn(97, 83, |r, c| {
                let u = rnd();
                let blob = if (r / 20 + c / 20) % 3 == 0 { 0.4 } else { 0.0 };
                let v = match case % 4 {
                    0 => ((u * 0.05 + blob) * 255.0).round() / 255.0,
                    1 => u * 0.05 + blob,
                    2 => (u - 0.3) * 1e3 + blob * 1e3,
                    _ => (u * 0.05 + blob) * 65535.0,
                } as f32;
                let v = if case >= 8 { v.max(0.0) } else { v };
                if case >= 12 && (r * c) % 31 == 5 {
                    -0.0
                } else if case % 8 == 1 && (r, c) == (5, 5) {
                    0.0
                } else {
                    v
                }
            });
            assert!(img.view().as_contiguous().is_some_and(all_finite));
            let got = li(img.view());
            decided += usize::from(got.is_some());
            assert_eq!(
                got.map(f32::to_bits),
                li_copied(img.view()).map(f32::to_bits),
                "case {case}"
            );
        }
        assert!(decided >= 14, "only {decided} thresholds");
        // A cropped view (not contiguous) and a field with an infinity take the copy.
        let big = Image::from_fn(40, 30, |r, c| ((r * 7 + c * 3) % 11) as f32);
        let crop = big.view().crop(2, 3, 20, 30).unwrap();
        assert!(crop.as_contiguous().is_none());
        assert_eq!(li(crop), li_copied(crop));
        let inf = Image::from_fn(40, 30, |r, c| {
            if r == c {
                f32::INFINITY
            } else {
                (r % 5) as f32
            }
        });
        assert!(!all_finite(inf.as_slice()));
        assert_eq!(li(inf.view()), li_copied(inf.view()));
    }

    /// The finite pixels minus their minimum, and their minimum, as [`li`] prepares them.
    fn li_inputs(img: &Image<f32>) -> (Vec<f64>, f64) {
        let mut image = finite_pixels(img.view());
        let min = image.iter().copied().fold(f64::INFINITY, f64::min);
        for v in &mut image {
            *v -= min;
        }
        (image, min)
    }

    /// [`li_sorted`] on radix-sorted keys and, where the minimum is 0, on buckets with the
    /// tolerance's bounds, each with the pixel iteration's answer.
    fn li_paths(img: &Image<f32>) -> Vec<(&'static str, LiSorted, f64)> {
        let (image, min) = li_inputs(img);
        let image = &image[..];
        let (keys, tol) = li_tolerance(img.view(), min);
        let want = li_pixels(image, tol);
        let mut exact = LiTolerance {
            exact: Some(tol),
            bounds: (tol, tol),
            img: img.view(),
            min,
        };
        let mut out = vec![(
            "sorted keys",
            li_sorted(image, &mut SortedKeys::new(keys, min), &mut exact),
            want,
        )];
        if min == 0.0 {
            let mut buckets = Buckets::new(image);
            let mut bounded = LiTolerance {
                exact: None,
                bounds: buckets.tolerance_bounds(image),
                img: img.view(),
                min,
            };
            assert!(bounded.bounds.0 <= tol && tol <= bounded.bounds.1);
            out.push((
                "buckets",
                li_sorted(image, &mut buckets, &mut bounded),
                want,
            ));
        }
        out
    }

    #[test]
    fn li_on_sorted_values_equals_the_pixel_iteration() {
        // Large fields: blurred nuclei-like discs on a noisy background (float values, as
        // the top-hat gives them), the same rounded to integers (u8 and u16 ranges), and
        // a field with a NaN and negative values. The sorted path must decide on its own
        // here (a path that always deferred to the pixels would pass trivially) and give
        // the pixel iteration's threshold bit for bit.
        let mut rnd = crate::testing::lcg_unit(0x5eed_u64);
        let size = 512;
        let mut discs = Image::new(size, size, 0.0f32);
        for _ in 0..90 {
            let (cy, cx) = (rnd() * size as f64, rnd() * size as f64);
            let (rad, amp) = (4.0 + 8.0 * rnd(), 0.05 + 0.3 * rnd());
            let span = |c: f64| (c - rad).max(0.0) as usize..((c + rad + 1.0) as usize).min(size);
            for y in span(cy) {
                for x in span(cx) {
                    let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
                    if d2 < rad * rad {
                        let v = discs.get(y, x).max((amp * (1.0 - d2 / (rad * rad))) as f32);
                        discs.set(y, x, v);
                    }
                }
            }
        }
        let noisy = Image::from_fn(size, size, |y, x| {
            discs.get(y, x) + 0.01 + (0.004 * rnd()) as f32 + 0.02 * (x as f32 / size as f32)
        });
        let smooth = crate::ops::filter::gaussian_blur(noisy.view(), 1.0);
        let floor = smooth
            .as_slice()
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        let fields = [
            ("float", smooth.clone()),
            // Minimum 0, as after the top-hat: the bucket path.
            ("float from 0", smooth.map(|v| v - floor)),
            ("u8", smooth.map(|v| (v * 255.0 * 2.0).round().min(255.0))),
            (
                "u8 from 0",
                smooth.map(|v| ((v - floor) * 255.0 * 2.0).round().min(255.0)),
            ),
            (
                "u16 from 0",
                smooth.map(|v| ((v - floor) * 65535.0).round()),
            ),
            (
                "nan and negatives",
                Image::from_fn(size, size, |y, x| {
                    if (y, x) == (3, 4) {
                        f32::NAN
                    } else {
                        smooth.get(y, x) - 0.05
                    }
                }),
            ),
        ];
        let mut bucket_cases = 0;
        for (name, img) in fields {
            for (path, got, want) in li_paths(&img) {
                assert_eq!(got, LiSorted::Done(want), "{name}, {path}");
                bucket_cases += usize::from(path == "buckets");
            }
            let li_want = li_f64(&finite_pixels(img.view())).map(|t| t as f32);
            assert_eq!(li(img.view()), li_want, "{name}");
        }
        assert_eq!(bucket_cases, 3);
        // Foreground barely brighter than the background: beyond the error bound, so the
        // pixels decide, and li() still equals the pixel iteration.
        let close = Image::from_fn(64, 64, |y, x| {
            if (y, x) == (0, 0) {
                0.0
            } else {
                100.0 + ((y * 64 + x) % 7) as f32 * 0.5
            }
        });
        for (path, got, _) in li_paths(&close) {
            assert_eq!(got, LiSorted::Undecided, "{path}");
        }
        assert_eq!(
            li(close.view()),
            li_f64(&finite_pixels(close.view())).map(|t| t as f32)
        );
    }
}
