//! Exact Euclidean distance transform.
//!
//! [`distance_transform_edt`] gives, for every foreground pixel, the Euclidean distance to
//! the nearest background pixel, as `scipy.ndimage.distance_transform_edt(mask)`: pixels
//! outside the image are *not* background. It is the two-pass separable algorithm of
//! P. Felzenszwalb & D. Huttenlocher, "Distance Transforms of Sampled Functions", Theory of
//! Computing 8 (2012): a 1-D distance down each column, then the lower envelope of parabolas
//! along each row. Squared distances are exact integers, so the result equals SciPy's
//! `sqrt` of the same integer, rounded to f32.
//!
//! Difference from SciPy: an image with no background pixel gives `+inf` everywhere (SciPy
//! returns distances to a phantom point outside the image).

use ipscope_image::{Image, ImageView};

use super::par;
use super::scan::{next_other_u32, next_zero_u32};

/// Euclidean distance of each foreground (`true`) pixel to the nearest background pixel;
/// 0 on background.
pub fn distance_transform_edt(mask: ImageView<bool>) -> Image<f32> {
    let (w, h) = (mask.width(), mask.height());
    let mut out = Image::new(w, h, 0.0f32);
    if w == 0 || h == 0 {
        return out;
    }
    // Pass 1: vertical distance (in pixels) to the nearest background pixel in the column,
    // row by row over whole rows so that the loops vectorise.
    const INF: u32 = u32::MAX;
    let mut g = vec![INF; w * h];
    for (c, &m) in g[..w].iter_mut().zip(mask.row(0)) {
        *c = if m { INF } else { 0 };
    }
    for r in 1..h {
        let (done, rest) = g.split_at_mut(r * w);
        let prev = &done[(r - 1) * w..];
        for ((c, &m), &p) in rest[..w].iter_mut().zip(mask.row(r)).zip(prev) {
            // INF + 1 saturates back to INF.
            *c = if m { p.saturating_add(1) } else { 0 };
        }
    }
    for r in (0..h.saturating_sub(1)).rev() {
        let (head, tail) = g.split_at_mut((r + 1) * w);
        let below = &tail[..w];
        for (c, &b) in head[r * w..].iter_mut().zip(below) {
            *c = (*c).min(b.saturating_add(1));
        }
    }
    // Pass 2: the lower envelope of the parabolas along each row ([`Envelope::row`]). Rows
    // are independent: bands of them go to idle workers of the current pool.
    let g = &g;
    let sqrt_table = sqrt_table((w * h / 4).min(1 << 14));
    let sqrt_table = &sqrt_table;
    par::for_each_row_band(
        out.as_mut_slice(),
        w,
        || Envelope::new(w),
        |env, r0, band| {
            for (r, orow) in band
                .chunks_exact_mut(w)
                .enumerate()
                .map(|(k, o)| (r0 + k, o))
            {
                env.row(&g[r * w..(r + 1) * w], orow, sqrt_table);
            }
        },
    );
    out
}

/// Square roots of the small squared distances (most of a field's), to look up: the same f64
/// `sqrt` of the same integer rounded to f32, without its latency per pixel.
fn sqrt_table(len: usize) -> Vec<f32> {
    (0..len as u32)
        .map(|x| f64::from(x).sqrt() as f32)
        .collect()
}

/// The distance of a squared distance: looked up in `table` when it is short enough.
#[inline]
fn root(sq: i64, table: &[f32]) -> f32 {
    match table.get(sq as usize) {
        Some(&v) => v,
        None => (sq as f64).sqrt() as f32,
    }
}

/// Scratch of the row pass for rows up to `w` pixels: the squared column distances `f`, the
/// parabolas of the lower envelope `v`, and the breakpoints between them as exact fractions
/// `zn / zd` (breakpoint k lies between parabolas v[k-1] and v[k]; index 0 is -inf).
/// `sq` and `best` are the scratch of [`window_row`].
struct Envelope {
    f: Vec<i64>,
    v: Vec<usize>,
    zn: Vec<i64>,
    zd: Vec<i64>,
    sq: Vec<u32>,
    best: Vec<u32>,
}

impl Envelope {
    fn new(w: usize) -> Self {
        Envelope {
            f: vec![0; w],
            v: vec![0; w],
            zn: vec![0; w + 1],
            zd: vec![1; w + 1],
            sq: Vec::new(),
            best: Vec::new(),
        }
    }

    /// The row pass over one row: `gr` holds each column's vertical distance to the
    /// background (0 on background, `u32::MAX` where a column has none); the distance of each
    /// pixel with `gr != 0` is written to `orow`, other pixels are not touched.
    ///
    /// The lower envelope of the parabolas (x - q)² + g(q)². Breakpoints are kept as exact
    /// fractions num / den (den > 0) and compared by cross-multiplication, so no division is
    /// needed; all terms fit i64 for any image that fits memory.
    ///
    /// Only runs of foreground pixels need work, and for a run [a, b) only columns
    /// a-1 ..= b: a column p further out is farther from every pixel of the run than the
    /// background pixel a-1 (or b) of the same row, so its parabola is never the lowest. The
    /// minimum, an exact integer, is the same as over the whole row.
    fn row(&mut self, gr: &[u32], orow: &mut [f32], sqrt_table: &[f32]) {
        const INF: u32 = u32::MAX;
        let Envelope { f, v, zn, zd, .. } = self;
        let w = gr.len();
        let mut a = 0usize;
        while a < w {
            a = next_other_u32(gr, a, 0);
            if a >= w {
                break;
            }
            let b = next_zero_u32(gr, a);
            let (lo, hi) = (a.saturating_sub(1), (b + 1).min(w));
            let mut k = 0usize; // number of parabolas in the envelope
            for q in lo..hi {
                if gr[q] == INF {
                    continue;
                }
                f[q] = i64::from(gr[q]) * i64::from(gr[q]);
                let fq = f[q] + (q * q) as i64;
                loop {
                    if k == 0 {
                        v[0] = q;
                        k = 1;
                        break;
                    }
                    let p = v[k - 1];
                    let num = fq - (f[p] + (p * p) as i64);
                    let den = 2 * (q - p) as i64;
                    // s <= z[k-1], with z[0] = -inf.
                    if k > 1 && num * zd[k - 1] <= zn[k - 1] * den {
                        k -= 1;
                    } else {
                        v[k] = q;
                        zn[k] = num;
                        zd[k] = den;
                        k += 1;
                        break;
                    }
                }
            }
            if k == 0 {
                // A whole row without a background pixel in any column: nothing in the image.
                orow[a..b].fill(f32::INFINITY);
                a = b;
                continue;
            }
            let mut j = 0usize;
            for (q, o) in orow.iter_mut().enumerate().take(b).skip(a) {
                // Advance while breakpoint j+1 lies strictly left of q.
                while j + 1 < k && zn[j + 1] < q as i64 * zd[j + 1] {
                    j += 1;
                }
                let p = v[j];
                let d = q.abs_diff(p) as i64;
                *o = root(d * d + f[p], sqrt_table);
            }
            a = b;
        }
    }
}

/// [`distance_transform_edt`] of the mask `labels != 0`, for a label image in which no two
/// different labels share an edge (the connected components of a mask, 4- or 8-connected, as
/// [`crate::ops::label::label`] numbers them): the same bits, computed in each object's
/// bounding box grown by one pixel instead of over the whole image.
///
/// Why the box suffices: a pixel that shares an edge with an object and is not the object's
/// own is background, since a foreground one would belong to the same component. From a
/// pixel p of the object to any pixel x, a staircase path of edge steps stays within p's and
/// x's rows and columns, so every pixel on it is no farther from p than x is; the first pixel
/// off the object on it is background. Hence a pixel of another label is never nearer than
/// some background pixel, and for x beyond a side of the grown box, the walk along p's row
/// or column toward that side leaves the object inside the grown box, nearer than x. So
/// taking every pixel of the grown box that is not the object's as background, and nothing
/// outside it, gives each of the object's pixels its distance.
///
/// Most of a nuclei field is background; the boxes cover a few times the objects' area, so
/// this reads a fraction of the pixels the whole-image passes do.
///
/// The output starts as this thread's zeroed buffer from [`recycle_distance_map`] when one
/// of the same size is kept (no whole-field zero fill), else as a new zeroed image.
pub fn distance_transform_edt_of_objects(labels: &ipscope_image::Labels) -> Image<f32> {
    use rayon::prelude::*;
    let (w, h) = (labels.width(), labels.height());
    let mut out = zeroed_map(w, h);
    if w == 0 || h == 0 {
        return out;
    }
    let lab = labels.image();
    let boxes = labels.bounding_boxes();
    let widest = boxes
        .iter()
        .flatten()
        .map(|b| b.3 - b.1 + 2)
        .max()
        .unwrap_or(0);
    let tallest = boxes
        .iter()
        .flatten()
        .map(|b| b.2 - b.0 + 2)
        .max()
        .unwrap_or(0);
    let sqrt_table = sqrt_table((widest * widest + tallest * tallest + 1).min(1 << 14));
    // Objects in chunks on the pool's workers, each object's distances written straight
    // into its own pixels of `out`.
    const CHUNK: usize = 64;
    let objects: Vec<(u32, (usize, usize, usize, usize))> = labels.object_boxes().collect();
    let shared = par::DisjointPixels::new(out.as_mut_slice());
    objects.par_chunks(CHUNK).for_each_init(
        || (Envelope::new(widest), Vec::new(), Vec::new()),
        |(env, g, row), chunk| {
            for &(l, (r0, c0, r1, c1)) in chunk {
                let (r0, c0) = (r0.saturating_sub(1), c0.saturating_sub(1));
                let (r1, c1) = ((r1 + 1).min(h), (c1 + 1).min(w));
                let bw = c1 - c0;
                object_distances(lab, l, (r0, c0, r1, c1), g, env, row, &sqrt_table);
                for r in r0..r1 {
                    let gr = &g[(r - r0) * bw..(r - r0 + 1) * bw];
                    let vr = &row[(r - r0) * bw..(r - r0 + 1) * bw];
                    for (k, (&x, &d)) in gr.iter().zip(vr).enumerate() {
                        if x != 0 {
                            // SAFETY: `g` is non-zero exactly on object `l`'s pixels
                            // (`object_distances`), and a pixel has one label, so no other
                            // task writes this pixel; nothing reads `out` meanwhile.
                            unsafe { shared.set(r * w + c0 + k, d) };
                        }
                    }
                }
            }
        },
    );
    out
}

std::thread_local! {
    /// A whole-field buffer of zeros for this thread's next distance map of the same size
    /// ([`recycle_distance_map`]).
    static ZEROED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A `w` × `h` image of zeros: this thread's kept buffer when it has that many pixels, else
/// a new one.
fn zeroed_map(w: usize, h: usize) -> Image<f32> {
    let n = w * h;
    let kept = ZEROED.with(|z| {
        let mut z = z.borrow_mut();
        if z.len() == n {
            std::mem::take(&mut *z)
        } else {
            Vec::new()
        }
    });
    if kept.len() == n && n > 0 {
        debug_assert!(kept.iter().all(|&v| v.to_bits() == 0));
        if let Ok(img) = Image::from_vec(w, h, kept) {
            return img;
        }
    }
    Image::new(w, h, 0.0f32)
}

/// Hands a distance map that is done with back to this thread for the next field's
/// [`distance_transform_edt_of_objects`]: the pixels of `mask` are set back to zero (the map
/// must be the transform of `mask`, or of components of it, and so zero everywhere else),
/// which touches a field's foreground runs instead of filling the whole next map with zeros.
/// A map of another size than `mask`, or an empty one, is dropped.
pub fn recycle_distance_map(dist: Image<f32>, mask: ImageView<bool>) {
    let (w, h) = (dist.width(), dist.height());
    if w * h == 0 || (mask.width(), mask.height()) != (w, h) {
        return;
    }
    let mut data = dist.into_vec();
    for (row, m) in data.chunks_exact_mut(w).zip(mask.rows()) {
        let mut a = ipscope_image::scan::next_other_bool(m, 0, false);
        while a < w {
            let b = ipscope_image::scan::next_other_bool(m, a, true);
            row[a..b].fill(0.0);
            a = ipscope_image::scan::next_other_bool(m, b, false);
        }
    }
    debug_assert!(
        data.iter().all(|&v| v.to_bits() == 0),
        "a recycled distance map was not zero off its mask"
    );
    ZEROED.with(|z| *z.borrow_mut() = data);
}

/// The distances of object `l`'s pixels in the box `(r0, c0, r1, c1)` (exclusive ends), pixels
/// of other labels taken as background: `g` gets the vertical distances (0 off the object),
/// `dist` the distances (meaningful where `g != 0`), both box-sized, row-major.
fn object_distances(
    lab: &Image<u32>,
    l: u32,
    (r0, c0, r1, c1): (usize, usize, usize, usize),
    g: &mut Vec<u32>,
    env: &mut Envelope,
    dist: &mut Vec<f32>,
    sqrt_table: &[f32],
) {
    let (bw, bh) = (c1 - c0, r1 - r0);
    g.clear();
    g.resize(bw * bh, 0);
    dist.clear();
    dist.resize(bw * bh, 0.0);
    vertical_distances(lab.view(), l, (r0, c0), bw, g);
    for r in 0..bh {
        let gr = &g[r * bw..(r + 1) * bw];
        let dr = &mut dist[r * bw..(r + 1) * bw];
        // The largest vertical distance of the row (u32::MAX where a column has no
        // background): short reaches take the windowed minimum, others the envelope.
        let reach = gr.iter().copied().max().unwrap_or(0);
        if reach <= ROW_WINDOW {
            let Envelope { sq, best, .. } = &mut *env;
            window_row(gr, dr, reach as usize, sq, best, sqrt_table);
        } else {
            env.row(gr, dr, sqrt_table);
        }
    }
}

crate::ops::dispatched! {
    /// The vertical distances to the nearest pixel that is not object `l`'s, for the box of
    /// `g.len() / bw` rows and `bw` columns at `(r0, c0)` of `lab`, into `g` (0 off the
    /// object, `u32::MAX` where a column of the box has no such pixel): a pass down, then a
    /// pass up. Branch-free, so that both passes vectorise (a branch on the label kept the
    /// pass down scalar); compiled for AVX2 as well (`dispatched!`), the same integers.
    fn vertical_distances(lab: ImageView<u32>, l: u32, origin: (usize, usize), bw: usize, g: &mut [u32]) {
        let (r0, c0) = origin;
        let bh = g.len() / bw.max(1);
        // All ones on the object's pixels, zero elsewhere.
        let own = |x: u32| u32::from(x == l).wrapping_neg();
        for (c, &x) in g[..bw].iter_mut().zip(&lab.row(r0)[c0..c0 + bw]) {
            *c = own(x);
        }
        for r in 1..bh {
            let (done, rest) = g.split_at_mut(r * bw);
            let prev = &done[(r - 1) * bw..];
            for ((c, &x), &p) in rest[..bw]
                .iter_mut()
                .zip(&lab.row(r0 + r)[c0..c0 + bw])
                .zip(prev)
            {
                *c = p.saturating_add(1) & own(x);
            }
        }
        for r in (0..bh.saturating_sub(1)).rev() {
            let (head, tail) = g.split_at_mut((r + 1) * bw);
            for (c, &b) in head[r * bw..].iter_mut().zip(&tail[..bw]) {
                *c = (*c).min(b.saturating_add(1));
            }
        }
    }
}

/// The largest vertical distance for which [`window_row`] replaces the envelope in a row: it
/// does about `reach` vectorised passes over the row, the envelope a constant (but scalar,
/// branchy) amount of work per pixel.
const ROW_WINDOW: u32 = 64;

/// The row pass of [`Envelope::row`] for a row whose vertical distances `gr` are all at most
/// `reach` (`reach <= ROW_WINDOW`): each pixel's squared distance is the minimum of
/// `(x - q)² + g(q)²` over `|x - q| < reach` within the row, which is the envelope's minimum
/// over the whole row, since `q = x` gives `g(x)² <= reach²` and a column `reach` or more
/// away gives at least that. Exact integers, the same square roots; written where
/// `gr != 0`, as `Envelope::row` writes them. `sq` and `best` are scratch.
fn window_row(
    gr: &[u32],
    out: &mut [f32],
    reach: usize,
    sq: &mut Vec<u32>,
    best: &mut Vec<u32>,
    sqrt_table: &[f32],
) {
    sq.clear();
    sq.extend(gr.iter().map(|&g| g * g));
    best.clear();
    best.resize(gr.len(), 0);
    row_window_min(sq, best, reach.saturating_sub(1));
    for ((o, &d), &g) in out.iter_mut().zip(best.iter()).zip(gr) {
        if g != 0 {
            *o = root(i64::from(d), sqrt_table);
        }
    }
}

crate::ops::dispatched! {
    /// `best[x] = min(sq[x], min over 1 <= k <= reach of sq[x ± k] + k²)`, columns beyond
    /// the row left out: a row's windowed lower envelope of squared distances, in `reach`
    /// vectorised passes over the whole row (exact integers; `sq` below 2^31 − reach²).
    fn row_window_min(sq: &[u32], best: &mut [u32], reach: usize) {
        let w = sq.len();
        best.copy_from_slice(sq);
        for k in 1..=reach.min(w.saturating_sub(1)) {
            let kk = (k * k) as u32;
            // Columns to the right (x + k) and to the left (x - k).
            for (b, &s) in best[..w - k].iter_mut().zip(&sq[k..]) {
                *b = (*b).min(s + kk);
            }
            for (b, &s) in best[k..].iter_mut().zip(&sq[..w - k]) {
                *b = (*b).min(s + kk);
            }
        }
    }
}

/// Whether each pixel's [`distance_transform_edt`] is at most `max` (`d <= max` on the same
/// f32 distances), without the transform when `max` is small.
///
/// A distance is `sqrt` of an integer `d²`, so `d <= max` holds exactly for `d² <= K`, the
/// largest such integer; no pixel farther than `R = floor(sqrt(K))` columns away can be
/// that close. So the vertical distance to the background is needed only up to `R + 1`, and
/// each pixel's minimum of `(q - p)² + g(p)²` only over the `2R + 1` columns `p` around it:
/// `2R + 1` vectorised passes over each row instead of the lower envelope of every run. For
/// `R > 16` (or `max` NaN or infinite) it thresholds the transform itself.
pub fn within_distance(mask: ImageView<bool>, max: f32) -> Image<bool> {
    let (w, h) = (mask.width(), mask.height());
    // The distance of a squared distance, as the transform computes it.
    let dist = |sq: u32| (f64::from(sq)).sqrt() as f32;
    const MAX_RADIUS: u32 = 16;
    let limit = (MAX_RADIUS + 1) * (MAX_RADIUS + 1);
    let fits = |sq: u32| dist(sq) <= max;
    // Radii past MAX_RADIUS (and NaN or infinite `max`): threshold the transform itself.
    if !max.is_finite() || w == 0 || h == 0 || fits(limit) {
        return distance_transform_edt(mask).map(|v| v <= max);
    }
    // K: the largest squared distance whose distance is at most `max`.
    let Some(k) = (0..limit).take_while(|&sq| fits(sq)).last() else {
        // Every distance is at least 0 > max.
        return Image::new(w, h, false);
    };
    let radius = (0..=MAX_RADIUS).rev().find(|r| r * r <= k).unwrap_or(0) as usize;
    // Vertical distance to the background in the column, capped at radius + 1 ("far").
    let cap = radius as u32 + 1;
    let mut g: Vec<u32> = Vec::with_capacity(w * h);
    g.extend(mask.row(0).iter().map(|&m| if m { cap } else { 0 }));
    for r in 1..h {
        g.extend_from_within((r - 1) * w..r * w);
        let row = &mut g[r * w..];
        for (c, &m) in row.iter_mut().zip(mask.row(r)) {
            *c = if m { (*c + 1).min(cap) } else { 0 };
        }
    }
    for r in (0..h - 1).rev() {
        let (head, tail) = g.split_at_mut((r + 1) * w);
        for (c, &b) in head[r * w..].iter_mut().zip(&tail[..w]) {
            *c = (*c).min(b + 1);
        }
    }
    let mut out = Image::new(w, h, false);
    let mut sq = vec![0u32; w];
    let mut best = vec![0u32; w];
    for (r, orow) in out.as_mut_slice().chunks_exact_mut(w).enumerate() {
        for (s, &v) in sq.iter_mut().zip(&g[r * w..(r + 1) * w]) {
            *s = v * v;
        }
        row_window_min(&sq, &mut best, radius);
        for (o, &b) in orow.iter_mut().zip(&best) {
            *o = b <= k;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(mask: &Image<bool>) -> Image<f32> {
        let (w, h) = (mask.width(), mask.height());
        Image::from_fn(w, h, |r, c| {
            let mut best = f64::INFINITY;
            for rr in 0..h {
                for cc in 0..w {
                    if !mask.get(rr, cc) {
                        let d = ((rr as f64 - r as f64).powi(2) + (cc as f64 - c as f64).powi(2))
                            .sqrt();
                        best = best.min(d);
                    }
                }
            }
            best as f32
        })
    }

    #[test]
    fn within_distance_equals_the_thresholded_transform() {
        let mut lcg = crate::testing::lcg32(11u64);
        let mut next = || u64::from(lcg());
        for (w, h) in [(1, 1), (1, 7), (9, 1), (23, 17), (40, 33)] {
            for density in [0u64, 1, 5, 9, 10] {
                let mask = Image::from_fn(w, h, |_, _| next() % 10 < density);
                let d = distance_transform_edt(mask.view());
                for max in [
                    -1.0f32,
                    0.0,
                    0.5,
                    1.0,
                    1.0001,
                    std::f32::consts::SQRT_2,
                    1.5,
                    2.0,
                    2.3,
                    3.0,
                    7.9,
                    16.0,
                    16.5,
                    40.0,
                    f32::INFINITY,
                    f32::NAN,
                ] {
                    let want = d.map(|v| v <= max);
                    assert_eq!(
                        within_distance(mask.view(), max),
                        want,
                        "{w}x{h} density {density} max {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn looked_up_and_computed_square_roots_match_brute_force() {
        // One background pixel in a corner and one in the middle: squared distances from 0
        // to 39² + 29², both below and above the square-root table's length (300 here).
        let m = Image::from_fn(40, 30, |r, c| (r, c) != (0, 0) && (r, c) != (15, 17));
        let (got, want) = (distance_transform_edt(m.view()), brute(&m));
        for (g, w) in got.as_slice().iter().zip(want.as_slice()) {
            assert_eq!(g.to_bits(), w.to_bits());
        }
    }

    #[test]
    fn row_bands_on_several_threads_give_the_same_bits() {
        // Tall enough for several bands per thread; blobs of foreground with long runs.
        let m = Image::from_fn(61, 700, |r, c| {
            (r * 7 + c * 3) % 97 > 4 && (r / 50 + c / 20) % 3 != 0
        });
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let want = one.install(|| distance_transform_edt(m.view()));
        for threads in [2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| distance_transform_edt(m.view()));
            let bits =
                |i: &Image<f32>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{threads} threads");
        }
    }

    #[test]
    fn matches_brute_force() {
        let mut state = 12345u64;
        let m = Image::from_fn(23, 17, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            !(state >> 33).is_multiple_of(9)
        });
        assert_eq!(distance_transform_edt(m.view()), brute(&m));
        // Sparse to dense foreground: short and long runs, rows without background.
        for (k, keep) in [1u64, 2, 3, 5, 8].into_iter().enumerate() {
            let m = Image::from_fn(29 + k, 19, |_, _| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % 9 < keep
            });
            assert_eq!(distance_transform_edt(m.view()), brute(&m), "keep {keep}");
        }
    }

    #[test]
    fn border_is_not_background_and_degenerate_cases() {
        let m = Image::from_fn(5, 1, |_, c| c != 0);
        let d = distance_transform_edt(m.view());
        assert_eq!(d.as_slice(), &[0.0, 1.0, 2.0, 3.0, 4.0]);
        let all = Image::new(3, 2, true);
        assert!(distance_transform_edt(all.view())
            .as_slice()
            .iter()
            .all(|v| v.is_infinite()));
        let none = Image::new(3, 2, false);
        assert!(distance_transform_edt(none.view())
            .as_slice()
            .iter()
            .all(|&v| v == 0.0));
        assert_eq!(
            distance_transform_edt(Image::new(0, 0, true).view()).len(),
            0
        );
    }

    #[test]
    fn recycled_maps_give_the_same_distances() {
        use crate::ops::label::{label, Connectivity};
        let mut lcg = crate::testing::lcg32(7u64);
        let mut next = || u64::from(lcg());
        let bits = |i: &Image<f32>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let kept = || ZEROED.with(|z| z.borrow().len());
        let (w, h) = (61, 47);
        // Masks of one size in turn on this thread, each map handed back with its mask: a
        // pixel of an earlier map left non-zero would show in a later one's background.
        for (k, density) in [2u64, 8, 5, 9, 1, 6, 3, 7].into_iter().enumerate() {
            let m = Image::from_fn(w, h, |_, _| next() % 10 < density);
            let got = distance_transform_edt_of_objects(&label(m.view(), Connectivity::Eight));
            assert_eq!(kept(), 0, "mask {k}: the kept buffer was not taken");
            assert_eq!(
                bits(&got),
                bits(&distance_transform_edt(m.view())),
                "mask {k}"
            );
            recycle_distance_map(got, m.view());
            assert_eq!(kept(), w * h, "mask {k}: the map was not kept");
        }
        // Another size makes a new map and leaves the kept one; a map with a mask of another
        // size is dropped.
        let m = Image::from_fn(20, 30, |r, c| (r + c) % 7 != 0);
        let got = distance_transform_edt_of_objects(&label(m.view(), Connectivity::Eight));
        assert_eq!(bits(&got), bits(&distance_transform_edt(m.view())));
        assert_eq!(kept(), w * h);
        recycle_distance_map(got, Image::new(30, 20, true).view());
        assert_eq!(kept(), w * h);
    }

    #[test]
    fn objects_transform_equals_the_whole_image_transform() {
        use crate::ops::label::{label, Connectivity};
        use ipscope_image::Labels;
        let mut lcg = crate::testing::lcg32(99u64);
        let mut next = || u64::from(lcg());
        let bits = |i: &Image<f32>| i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let mut cases: Vec<Image<bool>> = vec![
            Image::new(0, 0, true),
            Image::new(3, 2, true),
            Image::new(3, 2, false),
            Image::from_fn(5, 1, |_, c| c != 0),
            // A ring around a background hole, a bar touching three sides, blobs.
            Image::from_fn(30, 20, |r, c| {
                let (y, x) = (r as i64 - 9, c as i64 - 9);
                (20..=64).contains(&(y * y + x * x)) || (c >= 24 && r >= 2)
            }),
        ];
        for (w, h) in [(1, 9), (9, 1), (23, 17), (64, 48), (97, 61)] {
            for density in [1u64, 3, 5, 7, 9] {
                cases.push(Image::from_fn(w, h, |_, _| next() % 10 < density));
            }
            // Disks of random centre and radius: touching ones, concave unions, border cuts.
            let disks: Vec<(i64, i64, i64)> = (0..6)
                .map(|_| {
                    let r = (next() % 12) as i64 + 1;
                    (
                        (next() % h as u64) as i64,
                        (next() % w as u64) as i64,
                        r * r,
                    )
                })
                .collect();
            cases.push(Image::from_fn(w, h, |r, c| {
                disks.iter().any(|&(y, x, rr)| {
                    let (dy, dx) = (r as i64 - y, c as i64 - x);
                    dy * dy + dx * dx <= rr
                })
            }));
        }
        // Objects whose rows reach past the windowed row pass's 64 (the envelope's rows) next
        // to rows within it, one cut by the image's edge.
        cases.push(Image::from_fn(230, 210, |r, c| {
            let (dy, dx) = (r as i64 - 100, c as i64 - 95);
            let (ey, ex) = (r as i64 - 20, c as i64 - 210);
            dy * dy + dx * dx <= 90 * 90 || ey * ey + ex * ex <= 40 * 40
        }));
        for (k, m) in cases.iter().enumerate() {
            let labels = label(m.view(), Connectivity::Eight);
            let want = distance_transform_edt(m.view());
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| distance_transform_edt_of_objects(&labels));
                assert_eq!(bits(&got), bits(&want), "case {k}, {threads} threads");
            }
        }
        // 4-connected components too; but not labels that share an edge (a split object):
        // there each part's pixels next to the other part are not at distance 1.
        for m in cases.iter().skip(4) {
            let four = label(m.view(), Connectivity::Four);
            assert_eq!(
                bits(&distance_transform_edt_of_objects(&four)),
                bits(&distance_transform_edt(m.view()))
            );
        }
        let split = Labels::new(
            Image::from_fn(8, 6, |r, c| {
                if r == 0 || r == 5 {
                    0
                } else if c < 4 {
                    1
                } else {
                    2
                }
            }),
            2,
        );
        let whole = Image::from_fn(8, 6, |r, _| r != 0 && r != 5);
        assert_ne!(
            bits(&distance_transform_edt_of_objects(&split)),
            bits(&distance_transform_edt(whole.view()))
        );
    }
}
