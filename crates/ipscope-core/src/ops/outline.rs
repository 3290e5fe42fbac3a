//! Object outlines and outline overlays for looking at segmentations.
//!
//! [`outlines`] marks the inner boundary of every object, as
//! `skimage.segmentation.find_boundaries(labels, connectivity=1, mode='inner')`: an object
//! pixel is on the outline when one of its 4-neighbours carries another label (background
//! included). Pixels outside the image do not count as another label.

use ipscope_image::{Image, ImageView, Pixel, SampleType};

/// Inner outlines of all objects of a label image (0 = background).
pub fn outlines(labels: ImageView<u32>) -> Image<bool> {
    let (w, h) = (labels.width(), labels.height());
    let mut out = Image::new(w, h, false);
    for r in 0..h {
        let row = labels.row(r);
        // Outside the image counts as the same label: compare with the pixel itself.
        let up = if r > 0 { labels.row(r - 1) } else { row };
        let down = if r + 1 < h { labels.row(r + 1) } else { row };
        outline_row(row, up, down, out.row_mut(r));
    }
    out
}

/// An 8-bit grey overlay for inspection: the image stretched between its 0.5th and 99.5th
/// percentiles (of finite pixels) onto 0..=191, with outline pixels set to 255.
///
/// Errors when the label image differs in size from the image.
pub fn outline_overlay(
    image: ImageView<f32>,
    labels: ImageView<u32>,
) -> Result<Image<u8>, crate::Error> {
    crate::ensure_shape(
        "labels",
        (image.width(), image.height()),
        (labels.width(), labels.height()),
    )?;
    let (lo, hi) = finite_percentiles(image, 0.005, 0.995);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let edges = outlines(labels);
    let mut out = Image::new(image.width(), image.height(), 0u8);
    for r in 0..image.height() {
        let (src, e) = (image.row(r), edges.row(r));
        // Branch-free so that it vectorises; a NaN pixel is 0 (`grey_of`).
        for ((o, &s), &edge) in out.row_mut(r).iter_mut().zip(src).zip(e) {
            *o = if edge { 255 } else { grey_of(s, lo, span) };
        }
    }
    Ok(out)
}

/// The [`outline_overlay`] of `image` (pixels read as f32, [`Pixel::to_f32`]) shrunk by `k`
/// (at least 1) in both directions: a `ceil(w / k)` × `ceil(h / k)` image whose pixel is 255
/// when its k × k block (clipped at the image's edge) holds an outline pixel, else the
/// block's mean grey, rounded down.
///
/// The same values as averaging the full-size overlay block by block, without making it:
/// one row of outline flags and greys at a time, so a 2048² field needs no full-size
/// buffer and is read once after the percentiles' two passes.
///
/// Errors when the label image differs in size from the image.
pub fn outline_thumbnail<T: Pixel>(
    image: ImageView<T>,
    labels: ImageView<u32>,
    k: usize,
) -> Result<Image<u8>, crate::Error> {
    crate::ensure_shape(
        "labels",
        (image.width(), image.height()),
        (labels.width(), labels.height()),
    )?;
    let (w, h) = (image.width(), image.height());
    let k = k.max(1);
    let (tw, th) = (w.div_ceil(k), h.div_ceil(k));
    let (lo, hi) = pixel_percentiles(image, 0.005, 0.995);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut out = Image::new(tw, th, 0u8);
    // Per column, over the rows of the current band of k rows: the sum of greys and whether
    // an outline pixel was seen; reduced to blocks once per band.
    let mut col_sum = vec![0u32; w];
    let mut col_edge = vec![0u8; w];
    let mut edge = vec![false; w];
    for tr in 0..th {
        col_sum.fill(0);
        col_edge.fill(0);
        let rows = tr * k..((tr + 1) * k).min(h);
        let n_rows = rows.len() as u64;
        for r in rows {
            let (src, row) = (image.row(r), labels.row(r));
            let up = if r > 0 { labels.row(r - 1) } else { row };
            let down = if r + 1 < h { labels.row(r + 1) } else { row };
            outline_row(row, up, down, &mut edge);
            add_row(src, &edge, &mut col_sum, &mut col_edge, lo, span);
        }
        let blocks = col_sum.chunks(k).zip(col_edge.chunks(k));
        for (o, (sums, edges)) in out.row_mut(tr).iter_mut().zip(blocks) {
            let n = n_rows * sums.len() as u64;
            *o = if edges.iter().any(|&e| e != 0) {
                255
            } else {
                (sums.iter().map(|&v| u64::from(v)).sum::<u64>() / n.max(1)) as u8
            };
        }
    }
    Ok(out)
}

/// Adds a row's greys to `col_sum` and its outline flags to `col_edge` (`add_row`: also
/// compiled for AVX2, chosen at run time). A separate body, not `dispatched!`'s in-place
/// form, so that the test can run the baseline build beside the dispatched one.
#[inline(always)]
fn add_row_body<T: Pixel>(
    src: &[T],
    edge: &[bool],
    col_sum: &mut [u32],
    col_edge: &mut [u8],
    lo: f32,
    span: f32,
) {
    for (((cs, ce), &s), &e) in col_sum
        .iter_mut()
        .zip(col_edge.iter_mut())
        .zip(src)
        .zip(edge)
    {
        *cs += u32::from(grey_of(s.to_f32(), lo, span));
        *ce |= u8::from(e);
    }
}

crate::ops::dispatched!(add_row<T: Pixel> = add_row_body(
    src: &[T],
    edge: &[bool],
    col_sum: &mut [u32],
    col_edge: &mut [u8],
    lo: f32,
    span: f32,
));

/// The overlay's grey of one pixel: the pixel stretched onto 0..=191 and rounded; NaN gives
/// 0 (the clamp keeps it, [`round_grey`] maps it to 0).
#[inline(always)]
fn grey_of(s: f32, lo: f32, span: f32) -> u8 {
    round_grey(((s - lo) / span).clamp(0.0, 1.0) * 191.0)
}

crate::ops::dispatched! {
/// The [`outlines`] flags of one row, given the rows above and below (the row itself at the
/// image's edges); compiled for AVX2 too and chosen at run time (`dispatched!`).
fn outline_row(row: &[u32], up: &[u32], down: &[u32], out: &mut [bool]) {
    let w = row.len();
    let edge_at = |c: usize| {
        let l = row[c];
        let left = if c > 0 { row[c - 1] } else { l };
        let right = if c + 1 < w { row[c + 1] } else { l };
        l != 0 && (left != l || right != l || up[c] != l || down[c] != l)
    };
    if w < 3 {
        for (c, o) in out.iter_mut().enumerate() {
            *o = edge_at(c);
        }
        return;
    }
    out[0] = edge_at(0);
    out[w - 1] = edge_at(w - 1);
    // The interior, as slices shifted by one column, so that it vectorises.
    let inner = out[1..w - 1]
        .iter_mut()
        .zip(&row[..w - 2])
        .zip(&row[1..w - 1])
        .zip(&row[2..])
        .zip(&up[1..w - 1])
        .zip(&down[1..w - 1]);
    for (((((o, &left), &l), &right), &u), &d) in inner {
        // `&`, not `&&`: with the short circuit the neighbours are loaded only under a mask
        // (`vpmaskmovd`), which AMD cores run several times slower than plain loads.
        *o = (l != 0) & ((left != l) | (right != l) | (u != l) | (d != l));
    }
}
}

/// Index of the `q` percentile among `n` sorted values (nearest rank, as the overlay uses).
fn rank_of(n: usize, q: f64) -> usize {
    ((n - 1) as f64 * q).round() as usize
}

/// The elements at ranks `i_lo <= i_hi` of `values` in `f32::total_cmp` order (those a
/// full sort would put there), by two selections (linear time; the slice is reordered).
fn select_pair(values: &mut [f32], i_lo: usize, i_hi: usize) -> (f32, f32) {
    let (left, &mut hi, _) = values.select_nth_unstable_by(i_hi, f32::total_cmp);
    // Everything left of `i_hi` is at most `hi`, so rank `i_lo < i_hi` lies among them.
    let lo = if i_lo < i_hi {
        *left.select_nth_unstable_by(i_lo, f32::total_cmp).1
    } else {
        hi
    };
    (lo, hi)
}

/// A u32 in the order of `f32::total_cmp`.
#[inline(always)]
fn total_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The `q_lo` and `q_hi` (`q_lo <= q_hi`) percentiles (nearest rank) of the image's finite
/// pixels in `f32::total_cmp` order, 0 when there are none, without copying them: a histogram of
/// the top 16 bits of their [`total_key`]s gives the bucket and the rank inside it of each
/// percentile, and a second pass collects only those buckets' pixels to select from. The
/// same elements as sorting all finite pixels.
fn finite_percentiles(image: ImageView<f32>, q_lo: f64, q_hi: f64) -> (f32, f32) {
    finite_percentiles_by(image, q_lo, q_hi, |v| v)
}

/// [`finite_percentiles`] of the pixels read as f32. For u8 and u16 pixels (all finite,
/// exact as f32) one histogram of the values themselves gives the element at each rank;
/// other types go through [`finite_percentiles_by`].
fn pixel_percentiles<T: Pixel>(image: ImageView<T>, q_lo: f64, q_hi: f64) -> (f32, f32) {
    if !matches!(T::SAMPLE, SampleType::U8 | SampleType::U16) {
        return finite_percentiles_by(image, q_lo, q_hi, T::to_f32);
    }
    // Two tables for alternate pixels, summed after: neighbouring pixels often share a
    // value, and one table would make each increment wait for the one before.
    let mut hist = vec![0u32; 1 << 16];
    let mut odd = vec![0u32; 1 << 16];
    let bin = |p: T| {
        // SAFETY: T is u8 or u16 (checked above), so the f32 is an integer in 0..=65535.
        (unsafe { p.to_f32().to_int_unchecked::<u32>() } & 0xffff) as usize
    };
    for row in image.rows() {
        let pairs = row.chunks_exact(2);
        if let [p] = pairs.remainder() {
            hist[bin(*p)] += 1;
        }
        for pair in pairs {
            hist[bin(pair[0])] += 1;
            odd[bin(pair[1])] += 1;
        }
    }
    for (h, &o) in hist.iter_mut().zip(&odd) {
        *h += o;
    }
    let n = image.width() * image.height();
    if n == 0 {
        return (0.0, 0.0);
    }
    let at = |rank: usize| -> f32 {
        let mut below = 0usize;
        for (v, &count) in hist.iter().enumerate() {
            below += count as usize;
            if rank < below {
                return v as f32;
            }
        }
        unreachable!("rank {rank} is below the {n} counted values")
    };
    (at(rank_of(n, q_lo)), at(rank_of(n, q_hi)))
}

/// [`finite_percentiles`] of the pixels read through `value`.
fn finite_percentiles_by<T: Pixel>(
    image: ImageView<T>,
    q_lo: f64,
    q_hi: f64,
    value: impl Fn(T) -> f32,
) -> (f32, f32) {
    let mut hist = vec![0u32; 1 << 16];
    let mut n = 0usize;
    for row in image.rows() {
        for &p in row {
            let v = value(p);
            if v.is_finite() {
                hist[(total_key(v) >> 16) as usize] += 1;
                n += 1;
            }
        }
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    // Bucket of a rank, and the rank of its first element.
    let locate = |rank: usize| -> (u32, usize) {
        let mut below = 0usize;
        for (b, &count) in hist.iter().enumerate() {
            if rank < below + count as usize {
                return (b as u32, below);
            }
            below += count as usize;
        }
        unreachable!("rank {rank} is below the {n} counted values")
    };
    let (i_lo, i_hi) = (rank_of(n, q_lo), rank_of(n, q_hi));
    let ((b_lo, first_lo), (b_hi, first_hi)) = (locate(i_lo), locate(i_hi));
    let (mut in_lo, mut in_hi) = (Vec::new(), Vec::new());
    for row in image.rows() {
        for &p in row {
            let v = value(p);
            if v.is_finite() {
                let b = total_key(v) >> 16;
                if b == b_lo {
                    in_lo.push(v);
                } else if b == b_hi {
                    in_hi.push(v);
                }
            }
        }
    }
    if b_lo == b_hi {
        return select_pair(&mut in_lo, i_lo - first_lo, i_hi - first_lo);
    }
    let lo = *in_lo
        .select_nth_unstable_by(i_lo - first_lo, f32::total_cmp)
        .1;
    let hi = *in_hi
        .select_nth_unstable_by(i_hi - first_hi, f32::total_cmp)
        .1;
    (lo, hi)
}

/// `x.round() as u8` for `0 <= x <= 255` without the libm call (`round` has no baseline
/// x86-64 instruction): the integer part plus one when the fraction is at least one half.
/// `x - t` is exact (`t` is `x` truncated, both in the same binade or `t = 0`), so the
/// comparison is the one `round` makes. NaN gives 0 (as `NaN as u8` does). No saturating
/// cast, so that a row of them vectorises.
#[inline(always)]
fn round_grey(x: f32) -> u8 {
    let x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 255.0) };
    // SAFETY: x is finite and within 0..=255, so its truncation fits an i32.
    let t = unsafe { x.to_int_unchecked::<i32>() };
    (t + i32::from(x - t as f32 >= 0.5)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_ranks_equal_the_sorted_ones() {
        // Random values with ties, signed zeros and a range of sizes, against a full sort.
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for n in [1usize, 2, 3, 7, 100, 201, 1000, 4099] {
            for ties in [false, true] {
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        let x = next();
                        if ties {
                            [0.0, -0.0, 1.0, 2.5][(x % 4) as usize]
                        } else {
                            (x >> 40) as f32 / 7.0 - 1000.0
                        }
                    })
                    .collect();
                let mut sorted = v.clone();
                sorted.sort_by(f32::total_cmp);
                for (ql, qh) in [(0.005, 0.995), (0.0, 1.0), (0.5, 0.5), (0.25, 0.75)] {
                    let want = (sorted[rank_of(n, ql)], sorted[rank_of(n, qh)]);
                    let got = select_pair(&mut v.clone(), rank_of(n, ql), rank_of(n, qh));
                    assert_eq!(
                        (got.0.to_bits(), got.1.to_bits()),
                        (want.0.to_bits(), want.1.to_bits()),
                        "n {n} ties {ties} q {ql} {qh}"
                    );
                }
            }
        }
    }

    /// The previous pixel-by-pixel `outlines` and `outline_overlay` (full sort, branches,
    /// `f32::round`): the references the row-slice, selection and branch-free versions equal.
    fn outlines_reference(labels: ImageView<u32>) -> Image<bool> {
        let (w, h) = (labels.width(), labels.height());
        let mut out = Image::new(w, h, false);
        for r in 0..h {
            let row = labels.row(r);
            for c in 0..w {
                let l = row[c];
                if l == 0 {
                    continue;
                }
                let differs = (c > 0 && row[c - 1] != l)
                    || (c + 1 < w && row[c + 1] != l)
                    || (r > 0 && labels.get(r - 1, c) != l)
                    || (r + 1 < h && labels.get(r + 1, c) != l);
                out.set(r, c, differs);
            }
        }
        out
    }

    fn overlay_reference(image: ImageView<f32>, labels: ImageView<u32>) -> Image<u8> {
        let mut finite: Vec<f32> = image
            .rows()
            .flat_map(|r| r.iter().copied())
            .filter(|v| v.is_finite())
            .collect();
        finite.sort_by(f32::total_cmp);
        let pick = |q: f64| -> f32 {
            if finite.is_empty() {
                0.0
            } else {
                finite[((finite.len() - 1) as f64 * q).round() as usize]
            }
        };
        let (lo, hi) = (pick(0.005), pick(0.995));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let edges = outlines_reference(labels);
        Image::from_fn(image.width(), image.height(), |r, c| {
            if edges.get(r, c) {
                255
            } else {
                let v = ((image.get(r, c) - lo) / span).clamp(0.0, 1.0);
                if v.is_finite() {
                    (v * 191.0).round() as u8
                } else {
                    0
                }
            }
        })
    }

    #[test]
    fn outlines_and_overlay_equal_the_pixelwise_reference() {
        let mut next = crate::testing::xorshift(0x1234_5678_9abc_def1);
        for (w, h) in [(1, 1), (1, 6), (6, 1), (2, 3), (19, 11), (128, 77)] {
            for kind in 0..4 {
                // Blocky labels (runs of equal values) with background, and noisy pixels.
                let labels = Image::from_fn(w, h, |r, c| {
                    let x = next();
                    if kind == 3 {
                        (x % 3) as u32
                    } else {
                        ((r / 3 + c / 4 + (x % 2) as usize) % 4) as u32
                    }
                });
                let image = Image::from_fn(w, h, |_, _| {
                    let x = next();
                    match kind {
                        0 => (x % 65536) as f32 / 65535.0,
                        1 => [f32::NAN, f32::INFINITY, -1.0, 0.5, 3.0][(x % 5) as usize],
                        2 => 7.0,
                        _ => ((x >> 20) % 1000) as f32 - 300.0,
                    }
                });
                let o = outlines(labels.view());
                assert_eq!(o, outlines_reference(labels.view()), "{w}x{h} {kind}");
                let ov = outline_overlay(image.view(), labels.view()).unwrap();
                assert_eq!(
                    ov,
                    overlay_reference(image.view(), labels.view()),
                    "{w}x{h} {kind}"
                );
            }
        }
    }

    /// The full-size overlay averaged block by block, as the report's thumbnail did before
    /// [`outline_thumbnail`]: 255 where a block holds an outline pixel, else the mean grey.
    fn thumbnail_reference(image: ImageView<f32>, labels: ImageView<u32>, k: usize) -> Image<u8> {
        let ov = overlay_reference(image, labels);
        let (w, h) = (ov.width(), ov.height());
        Image::from_fn(w.div_ceil(k), h.div_ceil(k), |tr, tc| {
            let (mut sum, mut n, mut edge) = (0u64, 0u64, false);
            for r in tr * k..((tr + 1) * k).min(h) {
                for c in tc * k..((tc + 1) * k).min(w) {
                    let v = ov.get(r, c);
                    edge |= v == 255;
                    sum += u64::from(v);
                    n += 1;
                }
            }
            if edge {
                255
            } else {
                (sum / n) as u8
            }
        })
    }

    #[test]
    fn thumbnail_equals_the_block_averaged_overlay() {
        let mut next = crate::testing::xorshift(0x0bad_cafe_f00d_1234);
        for (w, h) in [(1, 1), (1, 6), (7, 1), (19, 11), (64, 64), (130, 77)] {
            for k in [1, 2, 3, 8, 50] {
                for kind in 0..3 {
                    let labels = Image::from_fn(w, h, |r, c| {
                        let x = next();
                        match kind {
                            0 => ((r / 5 + c / 6 + (x % 2) as usize) % 4) as u32,
                            1 => 0,
                            _ => (x % 3) as u32,
                        }
                    });
                    let raw = Image::from_fn(w, h, |_, _| (next() % 65536) as u16);
                    let image = raw.map(|v| v as f32);
                    let want = thumbnail_reference(image.view(), labels.view(), k);
                    let got = outline_thumbnail(image.view(), labels.view(), k).unwrap();
                    assert_eq!(got, want, "{w}x{h} k {k} kind {kind}");
                    // Integer pixels read as f32 give the same thumbnail as their f32 copy.
                    let got = outline_thumbnail(raw.view(), labels.view(), k).unwrap();
                    assert_eq!(got, want, "u16 {w}x{h} k {k} kind {kind}");
                    let raw8 = raw.map(|v| (v >> 8) as u8);
                    let want8 = thumbnail_reference(raw8.map(f32::from).view(), labels.view(), k);
                    let got8 = outline_thumbnail(raw8.view(), labels.view(), k).unwrap();
                    assert_eq!(got8, want8, "u8 {w}x{h} k {k} kind {kind}");
                }
            }
        }
        let nan = Image::new(5, 4, f32::NAN);
        let z = Image::new(5, 4, 0u32);
        let t = outline_thumbnail(nan.view(), z.view(), 2).unwrap();
        assert_eq!((t.width(), t.height()), (3, 2));
        assert!(t.as_slice().iter().all(|&v| v == 0));
        assert!(outline_thumbnail(nan.view(), Image::new(4, 4, 0u32).view(), 2).is_err());
        let empty = Image::new(0, 0, 0f32);
        assert!(
            outline_thumbnail(empty.view(), Image::new(0, 0, 0u32).view(), 0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bucketed_percentiles_equal_the_sorted_finite_pixels() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for (w, h) in [(1, 1), (3, 1), (1, 5), (17, 9), (64, 64), (333, 7)] {
            for kind in 0..5 {
                let img = Image::from_fn(w, h, |_, _| {
                    let x = next();
                    match kind {
                        // Wide range of magnitudes and signs.
                        0 => {
                            f32::from_bits((x >> 32) as u32 & 0x7f7f_ffff)
                                * [1.0, -1.0][(x & 1) as usize]
                        }
                        // u16 pixels on CellProfiler's scale (many share a bucket).
                        1 => (x % 65536) as f32 / 65535.0,
                        // A narrow band: every value in one or two buckets, with ties.
                        2 => 0.25 + (x % 5) as f32 * f32::EPSILON,
                        // Non-finite pixels mixed in, and signed zeros.
                        3 => [
                            f32::NAN,
                            f32::INFINITY,
                            f32::NEG_INFINITY,
                            0.0,
                            -0.0,
                            1.5,
                            -2.5,
                        ][(x % 7) as usize],
                        _ => f32::NAN,
                    }
                });
                let mut finite: Vec<f32> = img
                    .as_slice()
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                finite.sort_by(f32::total_cmp);
                for (ql, qh) in [(0.005, 0.995), (0.0, 1.0), (0.5, 0.5), (0.3, 0.31)] {
                    let want = if finite.is_empty() {
                        (0.0f32, 0.0f32)
                    } else {
                        (
                            finite[rank_of(finite.len(), ql)],
                            finite[rank_of(finite.len(), qh)],
                        )
                    };
                    let got = finite_percentiles(img.view(), ql, qh);
                    assert_eq!(
                        (got.0.to_bits(), got.1.to_bits()),
                        (want.0.to_bits(), want.1.to_bits()),
                        "{w}x{h} kind {kind} q {ql} {qh}"
                    );
                }
            }
        }
    }

    #[test]
    fn dispatched_rows_equal_the_baseline_build() {
        let mut rnd = crate::testing::lcg32(29);
        for w in [1usize, 7, 8, 31, 64, 1000] {
            let src: Vec<u16> = (0..w).map(|_| (rnd() % 65536) as u16).collect();
            let srcf: Vec<f32> = src
                .iter()
                .map(|&v| match v % 97 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    _ => v as f32 / 3.0 - 900.0,
                })
                .collect();
            let edge: Vec<bool> = (0..w).map(|_| rnd().is_multiple_of(5)).collect();
            for (lo, span) in [(0.0f32, 65535.0f32), (1234.5, 777.25), (-3.0, 1e-3)] {
                let start: Vec<u32> = (0..w).map(|_| rnd() % 1000).collect();
                let (mut a, mut b) = (start.clone(), start.clone());
                let (mut ea, mut eb) = (vec![0u8; w], vec![0u8; w]);
                add_row(&src, &edge, &mut a, &mut ea, lo, span);
                add_row_body(&src, &edge, &mut b, &mut eb, lo, span);
                assert_eq!((&a, &ea), (&b, &eb), "u16, width {w}");
                let (mut a, mut b) = (start.clone(), start);
                add_row(&srcf, &edge, &mut a, &mut ea, lo, span);
                add_row_body(&srcf, &edge, &mut b, &mut eb, lo, span);
                assert_eq!((&a, &ea), (&b, &eb), "f32, width {w}");
            }
        }
    }

    #[test]
    fn integer_percentiles_equal_the_sorted_pixels() {
        fn check<T: Pixel>(img: Image<T>) {
            let mut all: Vec<f32> = img.as_slice().iter().map(|p| p.to_f32()).collect();
            all.sort_by(f32::total_cmp);
            for (ql, qh) in [(0.005, 0.995), (0.0, 1.0), (0.5, 0.5), (0.3, 0.31)] {
                let want = (all[rank_of(all.len(), ql)], all[rank_of(all.len(), qh)]);
                let got = pixel_percentiles(img.view(), ql, qh);
                assert_eq!(got, want, "{}x{} q {ql} {qh}", img.width(), img.height());
            }
        }
        let mut rnd = crate::testing::lcg32(61);
        // Odd and even widths (the pairs' remainder), few and many distinct values.
        for (w, h) in [(1, 1), (3, 1), (1, 5), (17, 9), (64, 64), (333, 7)] {
            for levels in [2u32, 300, 65536] {
                let px16 = Image::from_fn(w, h, |_, _| (rnd() % levels) as u16);
                check(px16.map(|v| v as u8));
                check(px16);
            }
        }
    }

    #[test]
    fn grey_rounding_equals_round() {
        // Every f32 in [0, 191] near a half-integer and a dense sweep of the range.
        for k in 0..=191u32 {
            let mut x = k as f32 + 0.5;
            for _ in 0..64 {
                x = f32::from_bits(x.to_bits() - 1);
            }
            for _ in 0..129 {
                if x <= 191.0 {
                    assert_eq!(round_grey(x), x.round() as u8, "{x}");
                }
                x = f32::from_bits(x.to_bits() + 1);
            }
        }
        for i in 0..=2_000_000u32 {
            let x = i as f32 * (191.0 / 2_000_000.0);
            assert_eq!(round_grey(x), x.round() as u8, "{x}");
        }
        assert_eq!(round_grey(0.0), 0);
        assert_eq!(round_grey(191.0), 191);
        assert_eq!(round_grey(255.0), 255);
        assert_eq!(round_grey(f32::NAN), 0);
    }

    #[test]
    fn inner_outline_of_a_square_and_touching_objects() {
        let l = Image::from_fn(6, 5, |r, c| {
            if (1..4).contains(&r) && (1..3).contains(&c) {
                1
            } else if (1..4).contains(&r) && (3..5).contains(&c) {
                2
            } else {
                0
            }
        });
        let o = outlines(l.view());
        // Every pixel of these thin objects touches background or the other object.
        for r in 1..4 {
            for c in 1..5 {
                assert!(o.get(r, c), "{r},{c}");
            }
        }
        assert!(!o.get(0, 0));
        let big = Image::new(5, 5, 3u32);
        let ob = outlines(big.view());
        assert!(
            ob.as_slice().iter().all(|&b| !b),
            "image border is not an outline"
        );
    }

    #[test]
    fn overlay_marks_outlines_and_survives_odd_input() {
        let img = Image::from_fn(4, 4, |r, _| r as f32);
        let l = Image::from_fn(4, 4, |r, c| u32::from(r < 2 && c < 2));
        let ov = outline_overlay(img.view(), l.view()).unwrap();
        assert_eq!(ov.get(1, 1), 255);
        assert_ne!(ov.get(0, 0), 255, "the image border is no outline");
        assert!(ov.get(3, 3) <= 191);
        let nan = Image::new(3, 3, f32::NAN);
        let z = Image::new(3, 3, 0u32);
        assert!(outline_overlay(nan.view(), z.view())
            .unwrap()
            .as_slice()
            .iter()
            .all(|&v| v == 0));
        assert!(outline_overlay(nan.view(), Image::new(2, 3, 0u32).view()).is_err());
        let empty = Image::new(0, 0, 0f32);
        assert!(outline_overlay(empty.view(), Image::new(0, 0, 0u32).view())
            .unwrap()
            .is_empty());
    }
}
