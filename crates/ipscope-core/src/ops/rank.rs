//! Grey-level erosion, dilation and opening with a square window, in O(1) per pixel
//! whatever the window (van Herk / Gil–Werman running extrema).
//!
//! Pixels outside the image take no part, which for a minimum or maximum is the same as
//! `scipy.ndimage.grey_erosion` / `grey_dilation` with `mode='nearest'`.
//! Reference: M. van Herk, "A fast algorithm for local minimum and maximum filters on
//! rectangular and octagonal kernels", Pattern Recognit. Lett. 13 (1992) 517–521.

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

/// Minimum over the (2r+1)² square around each pixel.
pub fn erode(src: ImageView<f32>, r: usize) -> Image<f32> {
    filter(src, r, Op::Min)
}

/// Maximum over the (2r+1)² square around each pixel.
pub fn dilate(src: ImageView<f32>, r: usize) -> Image<f32> {
    filter(src, r, Op::Max)
}

/// Grey opening (erosion, then dilation) with the (2r+1)² square.
pub fn open(src: ImageView<f32>, r: usize) -> Image<f32> {
    let e = erode(src, r);
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
}
