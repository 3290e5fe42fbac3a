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
        for &v in row {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    (lo <= hi).then_some((lo, hi))
}

/// `numpy.histogram(finite pixels, bins=nbins)` with the range taken from the data.
///
/// As NumPy, a zero-width range is widened to `[v - 0.5, v + 0.5]`. Returns `None` when
/// `nbins == 0` or no pixel is finite.
pub fn histogram(img: ImageView<f32>, nbins: usize) -> Option<Histogram> {
    let range = finite_range(img)?;
    histogram_in_range(img, nbins, range)
}

/// [`histogram`] with the finite range already known (one pass fewer).
fn histogram_in_range(
    img: ImageView<f32>,
    nbins: usize,
    (mut first, mut last): (f32, f32),
) -> Option<Histogram> {
    if nbins == 0 {
        return None;
    }
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    // numpy.linspace(first, last, nbins + 1) in float32: i * step + first, last edge = last.
    let step = (last - first) / nbins as f32;
    let mut edges: Vec<f32> = (0..=nbins).map(|i| i as f32 * step + first).collect();
    edges[nbins] = last;
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
    let mut counts = vec![0u64; nbins];
    for lane in lanes.chunks_exact(nbins) {
        for (c, &l) in counts.iter_mut().zip(lane) {
            *c += l;
        }
    }
    let bin_centers = edges.windows(2).map(|e| (e[0] + e[1]) / 2.0).collect();
    Some(Histogram {
        counts,
        edges,
        bin_centers,
    })
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
    let n = a.len();
    if n < 8 {
        let mut s = -0.0f64;
        for &v in a {
            s += v;
        }
        s
    } else if n <= 128 {
        let mut r = [0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for (k, rk) in r.iter_mut().enumerate() {
                *rk += a[i + k];
            }
            i += 8;
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            s += v;
        }
        s
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

fn mean(a: &[f64]) -> f64 {
    pairwise_sum(a) / a.len() as f64
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
/// the parity test runs it on the float64 image), with numpy's pairwise summation.
///
/// References: C. H. Li, C. K. Lee, "Minimum cross entropy thresholding", Pattern
/// Recognition 26 (1993) 617–625; C. H. Li, P. K. S. Tam, Pattern Recognition Letters 18
/// (1998) 771–776.
///
/// Returns `None` for an image without finite pixels or a constant one.
pub fn li(img: ImageView<f32>) -> Option<f32> {
    let pixels = finite_pixels(img);
    let first = *pixels.first()?;
    if pixels.iter().all(|&v| v == first) {
        return None;
    }
    let min = pixels.iter().copied().fold(f64::INFINITY, f64::min);
    // The smallest gap between distinct values, from the f32 values sorted as integer keys
    // (radix sort: the comparison sort of the f64 copy dominated the run time). Subtracting
    // `min` is monotone, so the smallest non-zero gap of the shifted sorted values is the
    // one `li_f64` finds after sorting and deduplicating them.
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
    li_iterate(pixels, min, tolerance / 2.0).map(|t| t as f32)
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

/// Ascending LSD radix sort, two 16-bit passes.
fn radix_sort_u32(keys: &mut Vec<u32>) {
    let mut tmp = vec![0u32; keys.len()];
    for shift in [0u32, 16] {
        let mut count = vec![0usize; 1 << 16];
        for &k in keys.iter() {
            count[((k >> shift) & 0xffff) as usize] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & 0xffff) as usize;
            tmp[count[d]] = k;
            count[d] += 1;
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
    let mut t_next = mean(&image);
    let mut t_curr = -2.0 * tolerance;
    let mut fore = Vec::with_capacity(image.len());
    let mut back = Vec::with_capacity(image.len());
    // The iteration converges in a handful of steps; the cap only guards against a cycle.
    let mut steps = 0;
    while (t_next - t_curr).abs() > tolerance && steps < 10_000 {
        steps += 1;
        t_curr = t_next;
        fore.clear();
        back.clear();
        for &v in &image {
            if v > t_curr {
                fore.push(v);
            } else {
                back.push(v);
            }
        }
        if fore.is_empty() || back.is_empty() {
            break;
        }
        let mean_fore = mean(&fore);
        let mean_back = mean(&back);
        if mean_back == 0.0 {
            break;
        }
        t_next = (mean_back - mean_fore) / (mean_back.ln() - mean_fore.ln());
    }
    let t = t_next + min;
    t.is_finite().then_some(t)
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
        let mut state = 7u64;
        let mut rnd = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
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
}
