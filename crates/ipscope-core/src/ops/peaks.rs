//! Local maxima.
//!
//! [`peak_local_max`] reproduces `skimage.feature.peak_local_max(image, min_distance,
//! threshold_abs, exclude_border=False, labels=...)` (scikit-image 0.26) with the default
//! square footprint of side `2 * min_distance + 1` and the Chebyshev (`p_norm=inf`) spacing:
//!
//! * a pixel is a candidate when it equals the maximum of its window (`mode='nearest'`,
//!   i.e. the window clipped to the image) and is `> threshold_abs`; whole plateaus are
//!   candidates;
//! * an image (or, with labels, an object) where *every* pixel is a candidate is "trivial"
//!   and gives no candidates, except that with labels the pixels an opening by the cross
//!   removes from the object (`mask ^ binary_opening(mask)`) become candidates;
//! * candidates are sorted by decreasing value, ties in raster order (stable argsort), and
//!   accepted greedily unless an already accepted peak lies at Chebyshev distance
//!   `< min_distance` (`skimage._shared.coord.ensure_spacing`);
//! * with labels, each object is handled alone (its window maximum sees only its own
//!   pixels) and the peaks are listed object by object in label order.
//!
//! Differences from scikit-image: NaN pixels are never peaks and never raise a window's
//! maximum; with labels, only pixels of the object itself can be peaks even for a threshold
//! below `f32::MIN` (scikit-image could return background pixels then). `num_peaks` and
//! `threshold_rel` are not offered.

use ipscope_image::{Image, ImageView, Labels};

use super::label::max_label;
use super::morphology::binary_opening;

/// Max over the window `[i - r, i + r]` clipped to the line, for each `i`, in O(n)
/// (van Herk / Gil–Werman block prefix and suffix maxima).
fn sliding_max(line: &[f32], r: usize, out: &mut [f32], pad: &mut Vec<f32>, g: &mut Vec<f32>) {
    let n = line.len();
    let w = 2 * r + 1;
    let m = n + 2 * r;
    pad.clear();
    pad.resize(m, f32::NEG_INFINITY);
    pad[r..r + n].copy_from_slice(line);
    g.clear();
    g.resize(m, f32::NEG_INFINITY);
    // Prefix maxima (into `g`) and suffix maxima (in place over `pad`) within blocks of `w`,
    // block by block rather than testing `j % w` at every element.
    for (gb, pb) in g.chunks_mut(w).zip(pad.chunks_mut(w)) {
        let mut run = f32::NEG_INFINITY;
        for (gv, &pv) in gb.iter_mut().zip(pb.iter()) {
            run = run.max(pv);
            *gv = run;
        }
        let mut run = f32::NEG_INFINITY;
        for pv in pb.iter_mut().rev() {
            run = run.max(*pv);
            *pv = run;
        }
    }
    for (i, o) in out.iter_mut().enumerate().take(n) {
        *o = pad[i].max(g[i + w - 1]);
    }
}

/// Buffers of [`maximum_filter`], kept across the objects of one image.
#[derive(Default)]
struct Scratch {
    tmp: Vec<f32>,
    pad: Vec<f32>,
    g: Vec<f32>,
}

/// Square maximum filter of radius `r` with the window clipped to the image.
fn maximum_filter(img: &Image<f32>, r: usize, s: &mut Scratch) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let Scratch { tmp, pad, g } = s;
    tmp.clear();
    tmp.resize(w * h, 0.0);
    if w == 0 {
        return Image::new(w, h, 0.0);
    }
    for (y, t) in tmp.chunks_exact_mut(w).enumerate() {
        sliding_max(img.row(y), r, t, pad, g);
    }
    let mut out = Image::new(w, h, 0.0f32);
    sliding_max_rows(tmp, w, r, out.as_mut_slice(), pad, g);
    out
}

/// The column pass of [`maximum_filter`]: [`sliding_max`] down every column of the `w`-wide
/// image `src` into `out`, with whole rows as the elements, so that each step is an
/// element-wise maximum of two rows (vectorised) instead of a strided walk down one column.
/// Every pixel goes through the same maxima in the same order as `sliding_max` on its
/// column, so the result is the same bits.
fn sliding_max_rows(
    src: &[f32],
    w: usize,
    r: usize,
    out: &mut [f32],
    pad: &mut Vec<f32>,
    g: &mut Vec<f32>,
) {
    let h = src.len() / w;
    let k = 2 * r + 1;
    let m = h + 2 * r;
    pad.clear();
    pad.resize(m * w, f32::NEG_INFINITY);
    pad[r * w..(r + h) * w].copy_from_slice(src);
    g.clear();
    g.resize(m * w, f32::NEG_INFINITY);
    // Blocks of k rows: prefix maxima into `g`, suffix maxima in place over `pad`.
    for (gb, pb) in g.chunks_mut(k * w).zip(pad.chunks_mut(k * w)) {
        let mut prev: Option<&[f32]> = None;
        for (grow, prow) in gb.chunks_exact_mut(w).zip(pb.chunks_exact(w)) {
            match prev {
                None => {
                    for (gv, &pv) in grow.iter_mut().zip(prow) {
                        *gv = f32::NEG_INFINITY.max(pv);
                    }
                }
                Some(before) => {
                    for ((gv, &run), &pv) in grow.iter_mut().zip(before).zip(prow) {
                        *gv = run.max(pv);
                    }
                }
            }
            prev = Some(grow);
        }
        let rows = pb.len() / w;
        for j in (0..rows).rev() {
            let (head, tail) = pb.split_at_mut((j + 1) * w);
            let cur = &mut head[j * w..];
            if j + 1 == rows {
                for v in cur.iter_mut() {
                    *v = f32::NEG_INFINITY.max(*v);
                }
            } else {
                for (v, &run) in cur.iter_mut().zip(&tail[..w]) {
                    *v = run.max(*v);
                }
            }
        }
    }
    for (y, o) in out.chunks_exact_mut(w).take(h).enumerate() {
        let (s, gg) = (&pad[y * w..(y + 1) * w], &g[(y + k - 1) * w..(y + k) * w]);
        for ((o, &a), &b) in o.iter_mut().zip(s).zip(gg) {
            *o = a.max(b);
        }
    }
}

/// Candidate mask as scikit-image's `_get_peak_mask`; `object` marks the pixels of the
/// object when working on one label (else the whole image counts).
fn peak_mask(
    img: &Image<f32>,
    min_distance: usize,
    threshold: f32,
    object: Option<&Image<bool>>,
    scratch: &mut Scratch,
) -> Image<bool> {
    let inside = |i: usize| object.is_none_or(|o| o.as_slice()[i]);
    let above = |i: usize, v: f32| inside(i) && v > threshold;
    if min_distance == 0 || img.len() == 1 {
        let mut i = 0;
        return img.map(|v| {
            let keep = above(i, v);
            i += 1;
            keep
        });
    }
    let maxed = maximum_filter(img, min_distance, scratch);
    let src = img.as_slice();
    let mx = maxed.as_slice();
    let trivial = (0..src.len()).all(|i| !inside(i) || src[i] == mx[i]);
    if trivial {
        return match object {
            Some(o) => {
                let opened = binary_opening(o.view());
                let isolated = o.as_slice().iter().zip(opened.as_slice());
                let iso: Vec<bool> = isolated.map(|(&a, &b)| a != b).collect();
                let mut i = 0;
                img.map(|v| {
                    let keep = iso[i] && above(i, v);
                    i += 1;
                    keep
                })
            }
            None => Image::new(img.width(), img.height(), false),
        };
    }
    let mut i = 0;
    img.map(|v| {
        let keep = v == mx[i] && above(i, v);
        i += 1;
        keep
    })
}

/// Sorts candidates by decreasing value (ties in raster order) and keeps those at
/// Chebyshev distance `>= min_distance` from every better accepted peak.
fn high_peaks(img: &Image<f32>, mask: &Image<bool>, min_distance: usize) -> Vec<(usize, usize)> {
    let w = img.width();
    let mut cand: Vec<(usize, usize)> = mask
        .as_slice()
        .iter()
        .enumerate()
        .filter(|(_, &m)| m)
        .map(|(i, _)| (i / w, i % w))
        .collect();
    cand.sort_by(|a, b| img.get(b.0, b.1).total_cmp(&img.get(a.0, a.1)));
    if min_distance <= 1 {
        return cand;
    }
    // Bucket accepted peaks on a grid of cell size min_distance: a conflicting peak lies in
    // the candidate's cell or one of its 8 neighbours.
    let cell = min_distance;
    let gw = w / cell + 1;
    let gh = img.height() / cell + 1;
    let mut grid: Vec<Vec<(usize, usize)>> = vec![Vec::new(); gw * gh];
    let mut accepted = Vec::new();
    for (r, c) in cand {
        let (gr, gc) = (r / cell, c / cell);
        let mut free = true;
        'scan: for nr in gr.saturating_sub(1)..=(gr + 1).min(gh - 1) {
            for nc in gc.saturating_sub(1)..=(gc + 1).min(gw - 1) {
                for &(pr, pc) in &grid[nr * gw + nc] {
                    if r.abs_diff(pr).max(c.abs_diff(pc)) < min_distance {
                        free = false;
                        break 'scan;
                    }
                }
            }
        }
        if free {
            grid[gr * gw + gc].push((r, c));
            accepted.push((r, c));
        }
    }
    accepted
}

/// Local maxima of `img` as `(row, col)`, best first (see the module docs for the exact
/// rules). With `mask`, peaks are searched in each labelled object separately, objects in
/// label order; pixels with label 0 are never peaks.
///
/// # Panics
/// If `mask` does not have the size of `img`.
pub fn peak_local_max(
    img: ImageView<f32>,
    min_distance: usize,
    threshold_abs: f32,
    mask: Option<&Labels>,
) -> Vec<(usize, usize)> {
    let (w, h) = (img.width(), img.height());
    let Some(labels) = mask else {
        // NaN never wins a window's maximum and is never above the threshold.
        let clean = img.map(|v| if v.is_nan() { f32::NEG_INFINITY } else { v });
        let m = peak_mask(
            &clean,
            min_distance,
            threshold_abs,
            None,
            &mut Scratch::default(),
        );
        return high_peaks(&clean, &m, min_distance);
    };
    assert!(
        labels.width() == w && labels.height() == h,
        "peak_local_max: labels are {}x{}, image is {w}x{h}",
        labels.width(),
        labels.height()
    );
    let n = max_label(labels) as usize;
    // Bounding boxes (rows and cols, max exclusive) of every label, in one pass.
    let mut bbox = vec![(usize::MAX, usize::MAX, 0usize, 0usize); n + 1];
    let lab = labels.image();
    for r in 0..h {
        for (c, &l) in lab.row(r).iter().enumerate() {
            if l != 0 {
                let b = &mut bbox[l as usize];
                b.0 = b.0.min(r);
                b.1 = b.1.min(c);
                b.2 = b.2.max(r + 1);
                b.3 = b.3.max(c + 1);
            }
        }
    }
    let mut peaks = Vec::new();
    let mut scratch = PeakScratch::default();
    for (l, &(r0, c0, r1, c1)) in bbox.iter().enumerate().skip(1) {
        if r0 == usize::MAX {
            continue;
        }
        let (bh, bw) = (r1 - r0, c1 - c0);
        let object = Image::from_fn(bw, bh, |r, c| lab.get(r0 + r, c0 + c) == l as u32);
        // The box lies inside the image, so the crop cannot fail.
        let Ok(values) = img.crop(r0, c0, bh, bw) else {
            continue;
        };
        peaks.extend(
            object_peaks(values, &object, min_distance, threshold_abs, &mut scratch)
                .into_iter()
                .map(|(r, c)| (r + r0, c + c0)),
        );
    }
    peaks
}

/// Scratch buffers of [`object_peaks`], reused from one object to the next.
#[derive(Default)]
pub(crate) struct PeakScratch(Scratch);

/// The peaks of one labelled object, as [`peak_local_max`] finds them with labels:
/// `values` is the image inside the object's bounding box and `object` marks the object's
/// pixels there (same size). Coordinates are relative to the box, best first.
pub(crate) fn object_peaks(
    values: ImageView<f32>,
    object: &Image<bool>,
    min_distance: usize,
    threshold_abs: f32,
    scratch: &mut PeakScratch,
) -> Vec<(usize, usize)> {
    // scikit-image paints the other pixels of the crop with the dtype's minimum.
    let mut crop = Vec::with_capacity(object.len());
    for (row, inside) in values
        .rows()
        .zip(object.as_slice().chunks_exact(values.width().max(1)))
    {
        crop.extend(row.iter().zip(inside).map(
            |(&v, &o)| {
                if o && !v.is_nan() {
                    v
                } else {
                    f32::MIN
                }
            },
        ));
    }
    let Ok(crop) = Image::from_vec(values.width(), values.height(), crop) else {
        return Vec::new(); // unreachable: `object` has the size of `values`
    };
    let m = peak_mask(
        &crop,
        min_distance,
        threshold_abs,
        Some(object),
        &mut scratch.0,
    );
    high_peaks(&crop, &m, min_distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_max_matches_naive() {
        let line: Vec<f32> = (0..23).map(|i| ((i * 37) % 11) as f32).collect();
        for r in 0..6 {
            let mut out = vec![0.0; line.len()];
            sliding_max(&line, r, &mut out, &mut Vec::new(), &mut Vec::new());
            for (i, &o) in out.iter().enumerate() {
                let lo = i.saturating_sub(r);
                let hi = (i + r).min(line.len() - 1);
                let naive = line[lo..=hi]
                    .iter()
                    .cloned()
                    .fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(o, naive, "r={r} i={i}");
            }
        }
    }

    /// The filter (rows, then columns as whole rows) against the same 1-D pass run down
    /// each column on its own, bit for bit, and against the window maxima: random images
    /// with ties, NaN and -inf, boxes narrower, as wide as and wider than the window.
    #[test]
    fn column_pass_on_rows_equals_the_per_column_pass() {
        let mut next = crate::testing::xorshift(0x3c6e_f372_fe94_f82b);
        let mut s = Scratch::default();
        for (w, h) in [(1, 1), (1, 7), (7, 1), (3, 20), (15, 15), (16, 17), (40, 9)] {
            for r in [1usize, 2, 7, 12] {
                let img = Image::from_fn(w, h, |_, _| match next() % 23 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => f32::MIN,
                    x => (x % 7) as f32 * 0.5,
                });
                let got = maximum_filter(&img, r, &mut s);
                let mut rows = vec![0.0f32; w * h];
                for (y, t) in rows.chunks_exact_mut(w).enumerate() {
                    sliding_max(img.row(y), r, t, &mut Vec::new(), &mut Vec::new());
                }
                for x in 0..w {
                    let col: Vec<f32> = (0..h).map(|y| rows[y * w + x]).collect();
                    let mut want = vec![0.0f32; h];
                    sliding_max(&col, r, &mut want, &mut Vec::new(), &mut Vec::new());
                    for (y, wy) in want.iter().enumerate() {
                        assert_eq!(
                            got.get(y, x).to_bits(),
                            wy.to_bits(),
                            "{w}x{h} r {r} at ({y}, {x})"
                        );
                        let naive = (y.saturating_sub(r)..(y + r + 1).min(h))
                            .flat_map(|yy| {
                                (x.saturating_sub(r)..(x + r + 1).min(w)).map(move |xx| (yy, xx))
                            })
                            .map(|(yy, xx)| img.get(yy, xx))
                            .fold(f32::NEG_INFINITY, f32::max);
                        assert_eq!(got.get(y, x), naive, "{w}x{h} r {r} at ({y}, {x}): window");
                    }
                }
            }
        }
    }

    #[test]
    fn finds_separated_maxima_best_first() {
        let img = Image::from_fn(20, 10, |r, c| {
            let a = 5.0 - ((r as f32 - 4.0).powi(2) + (c as f32 - 4.0).powi(2)).sqrt();
            let b = 7.0 - ((r as f32 - 5.0).powi(2) + (c as f32 - 15.0).powi(2)).sqrt();
            a.max(b).max(0.0)
        });
        let p = peak_local_max(img.view(), 3, 0.0, None);
        assert_eq!(p, vec![(5, 15), (4, 4)]);
    }

    #[test]
    fn plateau_gives_one_peak_and_flat_image_none() {
        let mut img = Image::new(12, 12, 0.0f32);
        for r in 4..7 {
            for c in 4..7 {
                img.set(r, c, 2.0);
            }
        }
        assert_eq!(peak_local_max(img.view(), 3, 0.0, None), vec![(4, 4)]);
        let flat = Image::new(5, 5, 1.0f32);
        assert!(peak_local_max(flat.view(), 2, 0.0, None).is_empty());
        let one = Image::new(1, 1, 1.0f32);
        assert_eq!(peak_local_max(one.view(), 2, 0.0, None), vec![(0, 0)]);
        let nan = Image::new(3, 4, f32::NAN);
        assert!(peak_local_max(nan.view(), 1, 0.0, None).is_empty());
    }

    #[test]
    fn labels_are_searched_separately_and_small_objects_are_isolated_pixels() {
        let img = Image::from_fn(8, 4, |_, c| c as f32);
        let lab = Image::from_fn(8, 4, |r, c| match (r, c) {
            (_, 0..=3) => 1,
            (0..=1, 5..=6) => 2,
            _ => 0,
        });
        let labels = Labels::from_image(lab);
        let p = peak_local_max(img.view(), 2, 0.0, Some(&labels));
        // Object 1: its right column is a plateau of maxima, first in raster order wins.
        // Object 2: a 2x2 block where every pixel of its column 6 is a max.
        assert_eq!(p, vec![(0, 3), (2, 3), (0, 6)]);
    }
}
