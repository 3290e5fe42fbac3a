//! Connected-component labelling and label-image bookkeeping.
//!
//! [`label`] gives the same label image as `skimage.measure.label(mask, connectivity=1|2)`
//! (and `scipy.ndimage.label` with the matching structure): objects are numbered `1..=N` in
//! raster order of their first pixel. It is the classic two-pass algorithm with a union-find
//! over provisional labels (Rosenfeld & Pfaltz 1966; Wu, Otoo & Suzuki 2009), O(pixels).
//!
//! [`clear_border`] follows `skimage.segmentation.clear_border(labels, buffer_size=0)`.

use ipscope_image::{grow_box, BoundingBox, Image, ImageView, Labels};

use super::scan::{for_each_nonzero_run, next_other_bool};

/// Pixel connectivity of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Connectivity {
    /// Edge neighbours only (scikit-image `connectivity=1`).
    Four,
    /// Edge and corner neighbours (scikit-image `connectivity=2`, its 2-D default).
    #[default]
    Eight,
}

/// The root of `x`'s set, with every node on the path pointed at it (path compression).
pub(crate) fn find(parent: &mut [u32], mut x: u32) -> u32 {
    let mut root = x;
    while parent[root as usize] != root {
        root = parent[root as usize];
    }
    while parent[x as usize] != root {
        let next = parent[x as usize];
        parent[x as usize] = root;
        x = next;
    }
    root
}

/// Joins two sets, keeping the smaller provisional label as the root so that a component's
/// root is the label of its first pixel in raster order.
fn union(parent: &mut [u32], a: u32, b: u32) -> u32 {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[hi as usize] = lo;
    lo
}

/// A run of object pixels in one row, `start..end`; its provisional label is its index + 1.
struct Run {
    row: u32,
    start: u32,
    end: u32,
}

/// The runs of `mask`'s object pixels in raster order (run `i` has provisional label
/// `i + 1`) and the union-find over them (`parent[0]` is the background): each run joined
/// with the runs of the row above that touch it (overlap, or also share a corner for
/// 8-connectivity). The smallest provisional label of a set is its root.
fn joined_runs(mask: ImageView<bool>, conn: Connectivity) -> (Vec<Run>, Vec<u32>) {
    let (w, h) = (mask.width(), mask.height());
    let reach = usize::from(conn == Connectivity::Eight);
    let mut runs: Vec<Run> = Vec::new();
    // parent[0] is the background; run i has provisional label i + 1.
    let mut parent: Vec<u32> = vec![0];
    let mut prev = 0..0;
    for r in 0..h {
        let row = mask.row(r);
        let first = runs.len();
        // The first run of the row above that may still touch a run of this row.
        let mut j = prev.start;
        let mut c = 0;
        while c < w {
            let s = next_other_bool(row, c, false);
            if s >= w {
                break;
            }
            let e = next_other_bool(row, s, true);
            c = e;
            let lab = parent.len() as u32;
            parent.push(lab);
            // Runs above touch `s..e` when they overlap `s - reach..e + reach`.
            let (lo, hi) = (s.saturating_sub(reach), e + reach);
            while j < prev.end && (runs[j].end as usize) <= lo {
                j += 1;
            }
            let mut k = j;
            while k < prev.end && (runs[k].start as usize) < hi {
                union(&mut parent, lab, k as u32 + 1);
                k += 1;
            }
            runs.push(Run {
                row: r as u32,
                start: s as u32,
                end: e as u32,
            });
        }
        prev = first..runs.len();
    }
    (runs, parent)
}

/// The pixel count of each connected component of `mask`, in no particular order: the sizes
/// of `object_areas(&label(mask, conn))[1..]` without writing a label image.
pub fn component_areas(mask: ImageView<bool>, conn: Connectivity) -> Vec<u64> {
    let (runs, mut parent) = joined_runs(mask, conn);
    let mut areas = vec![0u64; parent.len()];
    for (i, run) in runs.iter().enumerate() {
        let root = find(&mut parent, i as u32 + 1);
        areas[root as usize] += u64::from(run.end - run.start);
    }
    areas.retain(|&a| a > 0);
    areas
}

/// Labels the connected components of `mask`, numbered in raster order of first pixel.
///
/// Works on runs of object pixels: each run is joined with the runs of the row above that
/// touch it (overlap, or also share a corner for 8-connectivity), and the output is written
/// run by run, so background pixels cost one read. The union-find keeps the smallest
/// provisional label as a set's root, and runs are numbered in raster order of their first
/// pixel, so roots in increasing order are the components in raster order of first pixel.
pub fn label(mask: ImageView<bool>, conn: Connectivity) -> Labels {
    let (w, h) = (mask.width(), mask.height());
    let (runs, mut parent) = joined_runs(mask, conn);
    let mut final_of = vec![0u32; parent.len()];
    let mut next = 0u32;
    for l in 1..parent.len() as u32 {
        let root = find(&mut parent, l);
        if root == l {
            next += 1;
            final_of[l as usize] = next;
        } else {
            final_of[l as usize] = final_of[root as usize];
        }
    }
    // The output written once, row by row (zeros between the runs, no fill of the whole
    // image first), and each object's box from its runs.
    let mut boxes: Vec<Option<BoundingBox>> = vec![None; next as usize + 1];
    let mut data: Vec<u32> = Vec::with_capacity(w * h);
    let mut runs = runs.iter().zip(&final_of[1..]).peekable();
    for r in 0..h {
        let row0 = r * w;
        while let Some((run, &l)) = runs.next_if(|(run, _)| run.row as usize == r) {
            let (s, e) = (run.start as usize, run.end as usize);
            data.resize(row0 + s, 0);
            data.resize(row0 + e, l);
            grow_box(&mut boxes[l as usize], r, s, e);
        }
        data.resize(row0 + w, 0);
    }
    // `data` has `w * h` pixels, so this cannot fail.
    let out = Image::from_vec(w, h, data).unwrap_or_else(|_| Image::new(w, h, 0));
    Labels::with_boxes(out, next, boxes)
}

/// The largest label value present or promised (`count`), whichever is larger.
pub(crate) fn max_label(labels: &Labels) -> u32 {
    let present = labels.image().as_slice().iter().copied().max().unwrap_or(0);
    present.max(labels.count())
}

/// Renumbers objects `1..=N` in raster order of their first pixel, dropping missing labels.
pub fn relabel_sequential(labels: &Labels) -> Labels {
    remap_raster(labels, max_label(labels), |_| true)
}

/// Keeps the labels for which `keep(label)` holds and renumbers them in raster order;
/// `largest` is [`max_label`] of `labels`.
fn remap_raster(labels: &Labels, largest: u32, keep: impl FnMut(u32) -> bool) -> Labels {
    let (w, h) = (labels.width(), labels.height());
    // The background is left as the zeros the output starts with.
    let mut out = Image::new(w, h, 0u32);
    let next = remap_runs(labels.image(), largest, keep, |r, s, e, m| {
        if m != 0 {
            out.row_mut(r)[s..e].fill(m);
        }
    });
    Labels::new(out, next)
}

/// Kept labels numbered `1..` in the order they are first met, the others 0: the
/// renumbering of [`remap_runs`] and [`filter_by_area_in_place`].
struct Renumbering {
    /// New number of each old label; `UNSEEN` until it is met.
    map: Vec<u32>,
    /// Labels kept so far (the last number given).
    next: u32,
}

impl Renumbering {
    const UNSEEN: u32 = u32::MAX;

    /// For old labels `0..=largest`; the background stays 0.
    fn new(largest: u32) -> Self {
        let mut map = vec![Self::UNSEEN; largest as usize + 1];
        map[0] = 0;
        Renumbering { map, next: 0 }
    }

    /// The new number of old label `l`, `keep` deciding (once per label) whether it stays.
    fn number(&mut self, l: u32, keep: impl FnOnce(u32) -> bool) -> u32 {
        let m = &mut self.map[l as usize];
        if *m == Self::UNSEEN {
            *m = if keep(l) {
                self.next += 1;
                self.next
            } else {
                0
            };
        }
        *m
    }
}

/// The renumbering of [`remap_raster`], run by run over `img`: calls `write(row, start, end,
/// new label)` for each run of a non-zero label (one look-up per run), and returns the number
/// of labels kept.
fn remap_runs(
    img: &Image<u32>,
    largest: u32,
    mut keep: impl FnMut(u32) -> bool,
    mut write: impl FnMut(usize, usize, usize, u32),
) -> u32 {
    let mut renumbering = Renumbering::new(largest);
    for r in 0..img.height() {
        for_each_nonzero_run(img.row(r), |s, e, l| {
            let m = renumbering.number(l, &mut keep);
            write(r, s, e, m);
        });
    }
    renumbering.next
}

/// Pixel count per label; index `i` is label `i` (index 0 counts the background).
///
/// The vector has `max(count, largest label present) + 1` entries.
pub fn object_areas(labels: &Labels) -> Vec<u64> {
    // Sized by `count` and grown for a larger label, in the counting pass itself (no pass
    // for the largest label first). Counted by runs; the background is what is left.
    let mut areas = vec![0u64; labels.count() as usize + 1];
    let img = labels.image();
    let mut objects = 0u64;
    for r in 0..labels.height() {
        for_each_nonzero_run(img.row(r), |s, e, l| {
            let l = l as usize;
            if l >= areas.len() {
                areas.resize(l + 1, 0);
            }
            areas[l] += (e - s) as u64;
            objects += (e - s) as u64;
        });
    }
    areas[0] = (labels.width() * labels.height()) as u64 - objects;
    areas
}

/// Removes objects whose area lies outside `[min, max]`, then renumbers the rest in raster
/// order of first pixel.
pub fn filter_by_area(labels: &Labels, min: u64, max: u64) -> Labels {
    let areas = object_areas(labels);
    // `areas` has max_label + 1 entries.
    let largest = areas.len() as u32 - 1;
    remap_raster(labels, largest, |l| {
        (min..=max).contains(&areas[l as usize])
    })
}

/// [`filter_by_area`] of an owned label image, renumbered where it lies: no second
/// full-size image (whose fresh pages cost more than the renumbering), the same result.
///
/// One pass over the image finds its runs, each object's area and box; the kept objects
/// are renumbered from the runs (only runs whose number changes are rewritten), and their
/// boxes go with the result, so the measurements need no pass of their own for them.
pub fn filter_by_area_in_place(labels: Labels, min: u64, max: u64) -> Labels {
    let count = labels.count() as usize;
    let h = labels.height();
    let mut img = labels.into_image();
    // Sized by `count` and grown for a larger label, as in `object_areas`.
    let mut areas = vec![0u64; count + 1];
    let mut boxes: Vec<Option<BoundingBox>> = vec![None; count + 1];
    let mut runs: Vec<(u32, u32, u32, u32)> = Vec::new();
    for r in 0..h {
        for_each_nonzero_run(img.row(r), |s, e, l| {
            let i = l as usize;
            if i >= areas.len() {
                areas.resize(i + 1, 0);
                boxes.resize(i + 1, None);
            }
            areas[i] += (e - s) as u64;
            grow_box(&mut boxes[i], r, s, e);
            runs.push((r as u32, s as u32, e as u32, l));
        });
    }
    // New numbers in raster order of first pixel (the order of the first runs).
    let mut renumbering = Renumbering::new(areas.len() as u32 - 1);
    let mut kept_boxes: Vec<Option<BoundingBox>> = vec![None];
    for &(r, s, e, l) in &runs {
        let m = renumbering.number(l, |l| {
            let kept = (min..=max).contains(&areas[l as usize]);
            if kept {
                kept_boxes.push(boxes[l as usize]);
            }
            kept
        });
        if m != l {
            img.row_mut(r as usize)[s as usize..e as usize].fill(m);
        }
    }
    Labels::with_boxes(img, renumbering.next, kept_boxes)
}

/// Removes objects touching the image border; the other labels and `count` are unchanged
/// (as `skimage.segmentation.clear_border`, no renumbering).
pub fn clear_border(labels: &Labels) -> Labels {
    let (w, h) = (labels.width(), labels.height());
    let img = labels.image();
    let mut touches = vec![false; max_label(labels) as usize + 1];
    if w > 0 && h > 0 {
        for c in 0..w {
            touches[img.get(0, c) as usize] = true;
            touches[img.get(h - 1, c) as usize] = true;
        }
        for r in 0..h {
            touches[img.get(r, 0) as usize] = true;
            touches[img.get(r, w - 1) as usize] = true;
        }
    }
    touches[0] = false;
    let out = img.map(|l| if touches[l as usize] { 0 } else { l });
    Labels::new(out, labels.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pixel-by-pixel two-pass labelling that [`label`] replaced: the reference its
    /// runs must equal label for label.
    fn label_pixelwise(mask: ImageView<bool>, conn: Connectivity) -> Labels {
        let (w, h) = (mask.width(), mask.height());
        let mut out = Image::new(w, h, 0u32);
        // parent[0] is the background; provisional labels start at 1.
        let mut parent: Vec<u32> = vec![0];
        let eight = conn == Connectivity::Eight;
        for r in 0..h {
            let row = mask.row(r);
            for (c, &inside) in row.iter().enumerate() {
                if !inside {
                    continue;
                }
                let mut cur = 0u32;
                let mut join = |l: u32, parent: &mut Vec<u32>| {
                    if l == 0 {
                        return;
                    }
                    cur = if cur == 0 { l } else { union(parent, cur, l) };
                };
                if c > 0 {
                    join(out.get(r, c - 1), &mut parent);
                }
                if r > 0 {
                    if eight && c > 0 {
                        join(out.get(r - 1, c - 1), &mut parent);
                    }
                    join(out.get(r - 1, c), &mut parent);
                    if eight && c + 1 < w {
                        join(out.get(r - 1, c + 1), &mut parent);
                    }
                }
                if cur == 0 {
                    cur = parent.len() as u32;
                    parent.push(cur);
                }
                out.set(r, c, cur);
            }
        }
        // Roots in increasing provisional order are components in raster order of first pixel.
        let mut final_of = vec![0u32; parent.len()];
        let mut next = 0u32;
        for l in 1..parent.len() as u32 {
            let root = find(&mut parent, l);
            if root == l {
                next += 1;
                final_of[l as usize] = next;
            } else {
                final_of[l as usize] = final_of[root as usize];
            }
        }
        for v in out.as_mut_slice() {
            *v = final_of[*v as usize];
        }
        Labels::new(out, next)
    }

    use crate::testing::xorshift;

    /// The boxes of `labels` from a pass over its pixels ([`Labels::bounding_boxes`] of
    /// the same image wrapped anew), to check the boxes a labelling recorded.
    fn rescanned_boxes(labels: &Labels) -> Vec<Option<BoundingBox>> {
        Labels::new(labels.image().clone(), labels.count())
            .bounding_boxes()
            .to_vec()
    }

    #[test]
    fn runs_equal_the_pixelwise_reference_on_random_masks() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for (w, h) in [
            (1, 1),
            (1, 9),
            (9, 1),
            (2, 2),
            (17, 13),
            (64, 48),
            (131, 97),
        ] {
            for density in [1u64, 3, 5, 7, 9] {
                // Pixels on with probability density / 10, and blobs (sums of neighbours).
                let noise = Image::from_fn(w, h, |_, _| next() % 10 < density);
                let blobs = Image::from_fn(w, h, |r, c| {
                    let on = |r: usize, c: usize| u32::from(noise.get(r.min(h - 1), c.min(w - 1)));
                    on(r, c) + on(r + 1, c) + on(r, c + 1) + on(r + 1, c + 1) >= 2
                });
                for m in [&noise, &blobs] {
                    for conn in [Connectivity::Four, Connectivity::Eight] {
                        let got = label(m.view(), conn);
                        let want = label_pixelwise(m.view(), conn);
                        assert_eq!(got.count(), want.count(), "{w}x{h} d {density} {conn:?}");
                        assert_eq!(got.image(), want.image(), "{w}x{h} d {density} {conn:?}");
                        assert_eq!(
                            got.bounding_boxes(),
                            rescanned_boxes(&got),
                            "{w}x{h} d {density} {conn:?}: boxes"
                        );
                        let mut areas = component_areas(m.view(), conn);
                        areas.sort_unstable();
                        let mut want_areas = object_areas(&want)[1..].to_vec();
                        want_areas.sort_unstable();
                        assert_eq!(areas, want_areas, "{w}x{h} d {density} {conn:?}: areas");
                    }
                }
            }
        }
    }

    #[test]
    fn runs_equal_the_pixelwise_reference_on_real_masks() {
        // DSB2018 ground-truth nuclei as masks, whole (touching nuclei merge) and with each
        // object's inner outline removed (thin bridges and diagonal contacts).
        let data = std::env::var_os("IPSCOPE_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
            })
            .join("dsb2018_fluo_subset/labels");
        let Ok(dir) = std::fs::read_dir(&data) else {
            println!("skipping: no {} (set IPSCOPE_DATA)", data.display());
            return;
        };
        let mut files: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let opts = ipscope_io::ReadOptions::default();
        let mut checked = 0;
        for f in files.iter().take(12) {
            let Ok(img) = ipscope_io::read_image(f, 0, &opts) else {
                continue;
            };
            let lab = img.to_f32();
            let whole = lab.map(|v| v > 0.0);
            let edges = crate::ops::outline::outlines(lab.map(|v| v as u32).view());
            let inner = Image::from_fn(lab.width(), lab.height(), |r, c| {
                whole.get(r, c) && !edges.get(r, c)
            });
            for m in [&whole, &inner] {
                for conn in [Connectivity::Four, Connectivity::Eight] {
                    let got = label(m.view(), conn);
                    let want = label_pixelwise(m.view(), conn);
                    assert_eq!(got.count(), want.count(), "{}", f.display());
                    assert_eq!(got.image(), want.image(), "{}", f.display());
                }
            }
            checked += 1;
        }
        assert!(checked > 0, "no label image read from {}", data.display());
    }

    fn parse(rows: &[&str]) -> Image<bool> {
        let w = rows.first().map_or(0, |r| r.len());
        Image::from_fn(w, rows.len(), |r, c| rows[r].as_bytes()[c] == b'#')
    }

    #[test]
    fn numbering_follows_first_pixel_in_raster_order() {
        // A U shape whose right arm starts first must still get label 1 overall.
        let m = parse(&[
            ".....#", //
            "#...##", //
            "#....#", //
            "######", //
            "..#...", //
        ]);
        let l = label(m.view(), Connectivity::Four);
        assert_eq!(l.count(), 1);
        let m2 = parse(&[
            "#.#.", //
            ".#..", //
            "...#", //
        ]);
        let l8 = label(m2.view(), Connectivity::Eight);
        assert_eq!(l8.count(), 2);
        assert_eq!(l8.image().as_slice(), &[1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 2]);
        let l4 = label(m2.view(), Connectivity::Four);
        assert_eq!(l4.count(), 4);
        assert_eq!(l4.image().as_slice(), &[1, 0, 2, 0, 0, 3, 0, 0, 0, 0, 0, 4]);
    }

    #[test]
    fn staircase_merges_many_provisional_labels() {
        // A comb whose teeth only meet on the last row, and a checkerboard.
        let comb = Image::from_fn(40, 30, |r, c| c % 2 == 0 || r == 29);
        assert_eq!(label(comb.view(), Connectivity::Four).count(), 1);
        assert_eq!(label(comb.view(), Connectivity::Eight).count(), 1);
        let checker = Image::from_fn(9, 7, |r, c| (r + c) % 2 == 0);
        assert_eq!(label(checker.view(), Connectivity::Four).count(), 32);
        assert_eq!(label(checker.view(), Connectivity::Eight).count(), 1);
    }

    #[test]
    fn empty_and_degenerate_masks() {
        let e = Image::new(0, 3, false);
        assert_eq!(label(e.view(), Connectivity::Eight).count(), 0);
        let one = Image::new(1, 1, true);
        assert_eq!(label(one.view(), Connectivity::Four).count(), 1);
    }

    #[test]
    fn relabel_filter_and_clear_border() {
        let img = Image::from_vec(4, 3, vec![0, 7, 7, 0, 3, 0, 0, 0, 0, 0, 5, 5]).unwrap();
        let l = Labels::from_image(img);
        let s = relabel_sequential(&l);
        assert_eq!(s.count(), 3);
        assert_eq!(s.image().as_slice(), &[0, 1, 1, 0, 2, 0, 0, 0, 0, 0, 3, 3]);
        let areas = object_areas(&l);
        assert_eq!(areas.len(), 8);
        assert_eq!((areas[0], areas[3], areas[5], areas[7]), (7, 1, 2, 2));
        let f = filter_by_area(&l, 2, 2);
        assert_eq!(f.count(), 2);
        assert_eq!(f.image().as_slice(), &[0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2]);
        let inner = Image::from_vec(
            5,
            4,
            vec![1, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0, 0, 3],
        )
        .unwrap();
        let c = clear_border(&Labels::from_image(inner));
        assert_eq!(c.count(), 3);
        assert_eq!(c.image().as_slice().iter().filter(|&&v| v == 2).count(), 3);
        assert!(c.image().as_slice().iter().all(|&v| v == 0 || v == 2));
        assert_eq!(filter_by_area_in_place(l, 2, 2), f);
    }

    /// The renumbering in place equals the one into a new image, on label images with
    /// labels out of raster order, gaps, runs of one label and a count below the largest.
    #[test]
    fn size_filter_in_place_equals_the_copying_one() {
        let mut next = crate::testing::xorshift(0x05ee_d0fa_4ea5);
        for (w, h) in [(1, 1), (5, 1), (1, 9), (17, 13), (64, 40)] {
            for labels_max in [1u64, 3, 40, 1000] {
                let img = Image::from_fn(w, h, |_, c| {
                    let x = next();
                    if x.is_multiple_of(3) {
                        0
                    } else {
                        (x % labels_max) as u32 + (c % 2) as u32
                    }
                });
                for count in [0, 5] {
                    let l = Labels::new(img.clone(), count);
                    for (lo, hi) in [(0, u64::MAX), (2, 6), (1, 1), (5, 3)] {
                        let want = filter_by_area(&l, lo, hi);
                        let got = filter_by_area_in_place(l.clone(), lo, hi);
                        assert_eq!(
                            got, want,
                            "{w}x{h} max {labels_max} count {count} {lo}..={hi}"
                        );
                        assert_eq!(object_areas(&got)[0], object_areas(&want)[0]);
                        assert_eq!(
                            got.bounding_boxes(),
                            rescanned_boxes(&got),
                            "{w}x{h} max {labels_max} count {count} {lo}..={hi}: boxes"
                        );
                    }
                }
            }
        }
    }
}
