//! Grey-level erosion, dilation and opening with a square window, in O(1) per pixel
//! whatever the window (van Herk / Gil–Werman running extrema).
//!
//! Pixels outside the image take no part, which for a minimum or maximum is the same as
//! `scipy.ndimage.grey_erosion` / `grey_dilation` with `mode='nearest'`.
//! Reference: M. van Herk, "A fast algorithm for local minimum and maximum filters on
//! rectangular and octagonal kernels", Pattern Recognit. Lett. 13 (1992) 517–521.
//!
//! Two paths give the same bits. The scalar reference (`filter`) runs the recurrences along
//! each row, then down the columns with `f32::min`/`max`. The fast path, for images without
//! NaN or −0.0 (there a plain comparison orders the values exactly as `f32::min`/`max` do),
//! filters columns only, many at once (vectorised; AVX2 chosen at run time), a strip of
//! columns and one block of 2r+1 rows at a time so the running extrema stay in cache; the
//! rows are filtered as the columns of the transposed image. A square's minimum is the
//! minimum of the row minima of the column minima in either order, so the result is the
//! same.

use ipscope_image::{Image, ImageView};

#[derive(Clone, Copy)]
enum Op {
    Min,
    Max,
}

impl Op {
    #[inline(always)]
    fn f(self, a: f32, b: f32) -> f32 {
        match self {
            Op::Min => a.min(b),
            Op::Max => a.max(b),
        }
    }
    fn pad(self) -> f32 {
        match self {
            Op::Min => f32::INFINITY,
            Op::Max => f32::NEG_INFINITY,
        }
    }
}

/// Running extremum of a 1-D signal over the window `[i - r, i + r]` (clipped).
fn line(src: &[f32], r: usize, op: Op, buf: &mut Vec<f32>, g: &mut Vec<f32>, out: &mut [f32]) {
    let n = src.len();
    let k = 2 * r + 1;
    // Padded signal of length n + 2r, cut into blocks of k: g = prefix extremum within the
    // block, h = suffix extremum; the window starting at j is op(h[j], g[j + k - 1]).
    let m = n + 2 * r;
    buf.clear();
    buf.resize(m, op.pad());
    buf[r..r + n].copy_from_slice(src);
    g.clear();
    g.resize(m, op.pad());
    for (bg, bb) in g.chunks_mut(k).zip(buf.chunks(k)) {
        let mut acc = op.pad();
        for (x, &v) in bg.iter_mut().zip(bb) {
            acc = op.f(acc, v);
            *x = acc;
        }
    }
    // Suffix extrema in place of the padded signal (it is not needed afterwards).
    for bb in buf.chunks_mut(k) {
        let mut acc = op.pad();
        for x in bb.iter_mut().rev() {
            acc = op.f(acc, *x);
            *x = acc;
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = op.f(buf[i], g[i + k - 1]);
    }
}

fn filter(src: ImageView<f32>, r: usize, op: Op) -> Image<f32> {
    let (w, h) = (src.width(), src.height());
    let mut rows = Image::new(w, h, 0f32);
    let (mut buf, mut g) = (Vec::new(), Vec::new());
    for y in 0..h {
        line(src.row(y), r, op, &mut buf, &mut g, rows.row_mut(y));
    }
    // Columns: the same recurrences, one image row at a time for all columns at once.
    let k = 2 * r + 1;
    let m = h + 2 * r;
    let pad = vec![op.pad(); w];
    let row_at = |j: usize| -> &[f32] {
        if j < r || j >= r + h {
            &pad
        } else {
            rows.row(j - r)
        }
    };
    let mut gp = vec![op.pad(); m * w];
    let mut hp = vec![op.pad(); m * w];
    for j in 0..m {
        let v = row_at(j);
        if j % k == 0 {
            gp[j * w..(j + 1) * w].copy_from_slice(v);
        } else {
            let (prev, cur) = gp.split_at_mut(j * w);
            let prev = &prev[(j - 1) * w..];
            for ((c, &p), &x) in cur[..w].iter_mut().zip(prev).zip(v) {
                *c = op.f(p, x);
            }
        }
    }
    for j in (0..m).rev() {
        let v = row_at(j);
        if j % k == k - 1 || j == m - 1 {
            hp[j * w..(j + 1) * w].copy_from_slice(v);
        } else {
            let (cur, next) = hp.split_at_mut((j + 1) * w);
            let cur = &mut cur[j * w..];
            for ((c, &p), &x) in cur.iter_mut().zip(&next[..w]).zip(v) {
                *c = op.f(p, x);
            }
        }
    }
    let mut out = Image::new(w, h, 0f32);
    for y in 0..h {
        let a = &hp[y * w..(y + 1) * w];
        let b = &gp[(y + k - 1) * w..(y + k) * w];
        for ((o, &x), &z) in out.row_mut(y).iter_mut().zip(a).zip(b) {
            *o = op.f(x, z);
        }
    }
    out
}

/// Whether the fast path orders every pixel as `f32::min`/`max` do: no NaN (ignored by
/// them, not by a comparison) and no −0.0 (which they may or may not rank below +0.0).
fn plain_order(src: ImageView<f32>) -> bool {
    // A fold, not `any`: without the early exit the scan vectorises.
    src.rows().all(|row| {
        !row.iter().fold(false, |bad, &v| {
            bad | v.is_nan() | (v.to_bits() == 0x8000_0000)
        })
    })
}

/// The extremum of a fast-path pass: `MAX` selects the maximum.
#[inline(always)]
fn pick<const MAX: bool>(a: f32, b: f32) -> f32 {
    if MAX {
        if b > a {
            b
        } else {
            a
        }
    } else if b < a {
        b
    } else {
        a
    }
}

/// Lanes of the fixed-size chunks below: loading a whole chunk before storing it lets the
/// compiler vectorise without run-time overlap checks (which sent the AVX2 build to the
/// scalar loop).
const LANES: usize = 16;

/// `out[i] = pick(a[i], b[i])`.
#[inline(always)]
fn combine<const MAX: bool>(out: &mut [f32], a: &[f32], b: &[f32]) {
    let n = out.len().min(a.len()).min(b.len());
    let (out, a, b) = (&mut out[..n], &a[..n], &b[..n]);
    let mut oc = out.chunks_exact_mut(LANES);
    let (mut ac, mut bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for ((o, x), y) in (&mut oc).zip(&mut ac).zip(&mut bc) {
        let mut r = [0f32; LANES];
        for l in 0..LANES {
            r[l] = pick::<MAX>(x[l], y[l]);
        }
        o.copy_from_slice(&r);
    }
    for ((o, &x), &y) in oc
        .into_remainder()
        .iter_mut()
        .zip(ac.remainder())
        .zip(bc.remainder())
    {
        *o = pick::<MAX>(x, y);
    }
}

/// `acc[i] = pick(acc[i], v[i])`.
#[inline(always)]
fn accumulate<const MAX: bool>(acc: &mut [f32], v: &[f32]) {
    let n = acc.len().min(v.len());
    let (acc, v) = (&mut acc[..n], &v[..n]);
    let mut ac = acc.chunks_exact_mut(LANES);
    let mut vc = v.chunks_exact(LANES);
    for (a, x) in (&mut ac).zip(&mut vc) {
        let mut r = [0f32; LANES];
        for l in 0..LANES {
            r[l] = pick::<MAX>(a[l], x[l]);
        }
        a.copy_from_slice(&r);
    }
    for (a, &x) in ac.into_remainder().iter_mut().zip(vc.remainder()) {
        *a = pick::<MAX>(*a, x);
    }
}

/// Columns per strip of [`columns`]: 2r+1 rows of running extrema for this many columns
/// stay in the core's cache.
const STRIP: usize = 512;

/// Extremum over the rows `y − r ..= y + r` (clipped) of each column of a `w`-wide
/// row-major image, for the output rows `y0..` held in `out` (whole rows, `y0` a multiple
/// of 2r+1, so the band starts a block); `hs` is scratch.
///
/// van Herk's recurrences on blocks of k = 2r+1 rows of the image padded by r rows on
/// each side: `hs` holds the suffix extrema of one block, a running prefix extremum walks
/// the next block, and the window starting at padded row y is their combination.
#[inline(always)]
fn columns<const MAX: bool>(
    src: &[f32],
    w: usize,
    r: usize,
    y0: usize,
    out: &mut [f32],
    hs: &mut Vec<f32>,
) {
    let h = src.len() / w.max(1);
    let rows_end = y0 + out.len() / w.max(1);
    let k = 2 * r + 1;
    let m = h + 2 * r;
    let pad = if MAX {
        f32::NEG_INFINITY
    } else {
        f32::INFINITY
    };
    // Padded row j, columns c0..c1 (None: a padding row, which changes no extremum).
    let row = |j: usize, c0: usize, c1: usize| -> Option<&[f32]> {
        (j >= r && j < r + h).then(|| &src[(j - r) * w + c0..(j - r) * w + c1])
    };
    let mut acc = vec![pad; STRIP.min(w)];
    for c0 in (0..w).step_by(STRIP) {
        let c1 = (c0 + STRIP).min(w);
        let sw = c1 - c0;
        hs.clear();
        hs.resize(k * sw, pad);
        for b0 in (y0..rows_end).step_by(k) {
            // Suffix extrema of padded rows b0..b0+k (the block of output rows b0..).
            let end = (b0 + k).min(m);
            for j in (b0..end).rev() {
                let i = j - b0;
                let (cur, next) = hs.split_at_mut((i + 1) * sw);
                let cur = &mut cur[i * sw..];
                match (row(j, c0, c1), j + 1 < end) {
                    (Some(v), true) => combine::<MAX>(cur, &next[..sw], v),
                    (Some(v), false) => cur.copy_from_slice(v),
                    (None, true) => cur.copy_from_slice(&next[..sw]),
                    (None, false) => cur.fill(pad),
                }
            }
            // Output row b0 sees its whole block; row b0 + i sees the block's suffix from
            // i and the next block's prefix up to i − 1.
            let o0 = (b0 - y0) * w;
            out[o0 + c0..o0 + c1].copy_from_slice(&hs[..sw]);
            let acc = &mut acc[..sw];
            acc.fill(pad);
            for i in 1..k.min(rows_end - b0) {
                let oy = (b0 + i - y0) * w;
                if let Some(v) = row(b0 + k + i - 1, c0, c1) {
                    accumulate::<MAX>(acc, v);
                }
                combine::<MAX>(&mut out[oy + c0..oy + c1], &hs[i * sw..(i + 1) * sw], acc);
            }
        }
    }
}

/// Transpose of a `w`-wide row-major image into `out` (`h`-wide). A tile of T×T goes
/// through a local buffer, so both the reads and the writes are runs of T contiguous
/// values (writing single values T rows apart was slower than the filter passes).
#[inline(always)]
fn transpose(src: &[f32], w: usize, out: &mut [f32]) {
    const T: usize = 64;
    let h = src.len() / w.max(1);
    let mut tile = [0f32; T * T];
    for y0 in (0..h).step_by(T) {
        let th = T.min(h - y0);
        for x0 in (0..w).step_by(T) {
            let tw = T.min(w - x0);
            for dy in 0..th {
                let row = &src[(y0 + dy) * w + x0..(y0 + dy) * w + x0 + tw];
                for (dx, &v) in row.iter().enumerate() {
                    tile[dx * T + dy] = v;
                }
            }
            for dx in 0..tw {
                out[(x0 + dx) * h + y0..(x0 + dx) * h + y0 + th]
                    .copy_from_slice(&tile[dx * T..dx * T + th]);
            }
        }
    }
}

/// One [`columns`] pass with the extremum chosen at run time, over bands of output rows
/// (whole blocks of 2r+1 rows) on idle workers of the current rayon pool: every block is
/// computed as in one pass over the image, so the bits do not depend on the split.
fn pass(max: bool, src: &[f32], w: usize, r: usize, out: &mut [f32]) {
    super::par::for_each_aligned_row_band(out, w, 2 * r + 1, Vec::new, |hs, y0, band| {
        columns_dispatched(max, src, w, r, y0, band, hs)
    });
}

super::dispatched! {
    /// [`columns`] with the extremum chosen at run time, compiled for AVX2 as well (minima
    /// and maxima are exact, so both give the same bits).
    fn columns_dispatched(
        max: bool,
        src: &[f32],
        w: usize,
        r: usize,
        y0: usize,
        out: &mut [f32],
        hs: &mut Vec<f32>,
    ) {
        if max {
            columns::<true>(src, w, r, y0, out, hs)
        } else {
            columns::<false>(src, w, r, y0, out, hs)
        }
    }
}

// `transpose_dispatched`: [`transpose`] compiled for AVX2 as well, chosen at run time.
super::dispatched!(transpose_dispatched = transpose(src: &[f32], w: usize, out: &mut [f32]));

/// The fast path: the filter `first` (maximum when true), then `second` if any, each over
/// the columns and the rows. Ordered Fv, transpose, Fh, Sh, transpose, Sv, so a pair takes
/// two transposes like one filter. The column passes are compiled for AVX2 as well, chosen
/// at run time, and split into bands of rows on idle workers ([`pass`]).
fn fast(src: ImageView<f32>, r: usize, first: bool, second: Option<bool>) -> Image<f32> {
    let (w, h) = (src.width(), src.height());
    // The first pass reads a contiguous source where it lies (a field is), else a copy.
    let copy;
    let source = match src.as_contiguous() {
        Some(px) => px,
        None => {
            copy = src.rows().flatten().copied().collect::<Vec<f32>>();
            &copy[..]
        }
    };
    let mut b = vec![0f32; w * h];
    pass(first, source, w, r, &mut b);
    let mut a = vec![0f32; w * h];
    transpose_dispatched(&b, w, &mut a);
    pass(first, &a, h, r, &mut b);
    if let Some(second) = second {
        pass(second, &b, h, r, &mut a);
        std::mem::swap(&mut a, &mut b);
    }
    transpose_dispatched(&b, h, &mut a);
    if let Some(second) = second {
        pass(second, &a, w, r, &mut b);
        std::mem::swap(&mut a, &mut b);
    }
    // `a` holds w·h values, in the source's orientation.
    Image::from_vec(w, h, a).unwrap_or_else(|_| unreachable!())
}

/// Minimum over the (2r+1)² square around each pixel.
pub fn erode(src: ImageView<f32>, r: usize) -> Image<f32> {
    if plain_order(src) && !src.is_empty() {
        fast(src, r, false, None)
    } else {
        filter(src, r, Op::Min)
    }
}

/// Maximum over the (2r+1)² square around each pixel.
pub fn dilate(src: ImageView<f32>, r: usize) -> Image<f32> {
    if plain_order(src) && !src.is_empty() {
        fast(src, r, true, None)
    } else {
        filter(src, r, Op::Max)
    }
}

/// Grey opening (erosion, then dilation) with the (2r+1)² square.
pub fn open(src: ImageView<f32>, r: usize) -> Image<f32> {
    if plain_order(src) && !src.is_empty() {
        return fast(src, r, false, Some(true));
    }
    let e = filter(src, r, Op::Min);
    dilate(e.view(), r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force extremum over the clipped (2r+1)² window.
    fn naive(img: &Image<f32>, r: usize, max: bool) -> Image<f32> {
        let (w, h) = (img.width(), img.height());
        Image::from_fn(w, h, |y, x| {
            let mut best = if max {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            };
            for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                    let v = img.get(yy, xx);
                    best = if max { best.max(v) } else { best.min(v) };
                }
            }
            best
        })
    }

    #[test]
    fn views_inside_a_larger_image_filter_as_their_copies() {
        // A crop is not contiguous: the filters copy it; a whole image is read in place.
        let mut state = 99u64;
        let big = Image::from_fn(37, 23, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32
        });
        let crop = big.view().crop(3, 5, 15, 26).unwrap();
        assert!(crop.as_contiguous().is_none());
        let copy = crop.to_image();
        for r in [1, 4] {
            assert_eq!(open(crop, r), open(copy.view(), r), "r{r}");
            assert_eq!(erode(crop, r), naive(&copy, r, false), "r{r}");
            assert_eq!(dilate(crop, r), naive(&copy, r, true), "r{r}");
        }
    }

    #[test]
    fn running_extrema_equal_brute_force() {
        let mut state = 12345u64;
        for (w, h) in [(1, 1), (7, 3), (13, 29), (40, 17)] {
            let img = Image::from_fn(w, h, |_, _| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32
            });
            for r in [0, 1, 2, 5, 30] {
                assert_eq!(erode(img.view(), r), naive(&img, r, false), "{w}x{h} r{r}");
                assert_eq!(dilate(img.view(), r), naive(&img, r, true), "{w}x{h} r{r}");
                let e = naive(&img, r, false);
                assert_eq!(open(img.view(), r), naive(&e, r, true), "{w}x{h} r{r}");
            }
        }
    }

    fn bits(img: &Image<f32>) -> Vec<u32> {
        img.as_slice().iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn fast_path_equals_the_scalar_reference() {
        // Float noise with repeats, ±inf and +0.0, on shapes that cover one pixel, single
        // rows and columns, several column strips (w > STRIP) and windows wider than the
        // image.
        let mut state = 99u64;
        let mut rnd = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (w, h) in [(1, 1), (1, 9), (9, 1), (700, 5), (6, 530), (33, 47)] {
            let img = Image::from_fn(w, h, |_, _| {
                let u = rnd();
                if u < 0.01 {
                    f32::INFINITY
                } else if u < 0.02 {
                    f32::NEG_INFINITY
                } else if u < 0.1 {
                    0.0
                } else {
                    // + 0.0: rounding may give −0.0, which the fast path leaves out.
                    ((u - 0.5) * 1e3).round() as f32 * 0.37 + 0.0
                }
            });
            assert!(plain_order(img.view()));
            for r in [0, 1, 2, 7, 50, 600] {
                let (e, d) = (
                    filter(img.view(), r, Op::Min),
                    filter(img.view(), r, Op::Max),
                );
                assert_eq!(bits(&erode(img.view(), r)), bits(&e), "{w}x{h} r{r}");
                assert_eq!(bits(&dilate(img.view(), r)), bits(&d), "{w}x{h} r{r}");
                let o = filter(e.view(), r, Op::Max);
                assert_eq!(bits(&open(img.view(), r)), bits(&o), "{w}x{h} r{r}");
            }
        }
        // Bands of rows on several threads (blocks of 2r+1 rows per band): the same bits.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (w, h) in [(6, 530), (700, 130), (33, 470)] {
            let img = Image::from_fn(w, h, |_, _| ((rnd() - 0.5) * 1e3).round() as f32 + 0.0);
            assert!(plain_order(img.view()));
            for r in [0, 1, 2, 7, 50] {
                let e = filter(img.view(), r, Op::Min);
                let o = filter(e.view(), r, Op::Max);
                let (pe, po) = pool.install(|| (erode(img.view(), r), open(img.view(), r)));
                assert_eq!(bits(&pe), bits(&e), "{w}x{h} r{r}, 3 threads");
                assert_eq!(bits(&po), bits(&o), "{w}x{h} r{r}, 3 threads");
            }
        }
    }

    #[test]
    fn nan_and_negative_zero_take_the_reference_path() {
        // f32::min ignores NaN where a comparison would not, and may rank −0.0 either way:
        // such images are filtered by the reference, which gives the brute-force result.
        let img = Image::from_fn(11, 8, |y, x| match (y * 11 + x) % 9 {
            0 => f32::NAN,
            4 => -0.0,
            k => k as f32 - 3.0,
        });
        assert!(!plain_order(img.view()));
        let nan_only = Image::from_fn(3, 3, |y, x| if (y, x) == (1, 1) { 1.0 } else { f32::NAN });
        assert!(!plain_order(nan_only.view()));
        for r in [0, 1, 3] {
            assert_eq!(
                bits(&erode(img.view(), r)),
                bits(&filter(img.view(), r, Op::Min))
            );
            assert_eq!(
                bits(&dilate(img.view(), r)),
                bits(&filter(img.view(), r, Op::Max))
            );
            // NaN is ignored; a window of NaN only gives the padding (+inf for a minimum).
            let e = erode(nan_only.view(), r);
            assert_eq!(e.get(1, 1), 1.0, "r{r}");
            let corner = if r == 0 { f32::INFINITY } else { 1.0 };
            assert_eq!(e.get(0, 0), corner, "r{r}");
        }
    }
}
