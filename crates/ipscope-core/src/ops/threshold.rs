//! Global thresholds.
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

use ipscope_image::ImageView;

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
    if nbins == 0 {
        return None;
    }
    let (mut first, mut last) = finite_range(img)?;
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    // numpy.linspace(first, last, nbins + 1) in float32: i * step + first, last edge = last.
    let step = (last - first) / nbins as f32;
    let mut edges: Vec<f32> = (0..=nbins).map(|i| i as f32 * step + first).collect();
    edges[nbins] = last;
    let mut counts = vec![0u64; nbins];
    let denom = last - first;
    let nb = nbins as f32;
    for row in img.rows() {
        for &v in row {
            if !(v >= first && v <= last) {
                continue;
            }
            // numpy's fast path: estimate, then correct by one bin against the edges.
            let f = ((v - first) / denom) * nb;
            let mut idx = (f as usize).min(nbins - 1);
            if v < edges[idx] && idx > 0 {
                idx -= 1;
            }
            if v >= edges[idx + 1] && idx != nbins - 1 {
                idx += 1;
            }
            counts[idx] += 1;
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
    let hist = histogram(img, nbins)?;
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
}
