//! Marker-controlled watershed.
//!
//! [`watershed`] reproduces `skimage.segmentation.watershed(elevation, markers, mask=mask)`
//! with its defaults (scikit-image 0.26: `connectivity=1`, i.e. 4-neighbours, no compactness,
//! no watershed line), which is the priority flood of Beucher & Meyer as implemented in
//! `_watershed_cy.watershed_raveled`:
//!
//! * every marker pixel (inside the mask) is pushed with its elevation and age 0, in raster
//!   order;
//! * popping a pixel pushes each unlabelled in-mask neighbour — in the order up, left,
//!   right, down — with priority `(max(elevation, popped priority), age)`, where `age` counts
//!   pushes, and labels it at once with the popped pixel's label;
//! * the heap is scikit-image's own binary heap (`heap_general.pxi`), reproduced operation by
//!   operation, so even markers with equal elevation leave it in the same order. Where no
//!   such tie can matter, every key is unique and any priority queue pops the same
//!   sequence: the flood then runs one 4-connected part of the mask at a time with a small
//!   binary heap per part; when ties exist, once the last marker is out, a radix heap for
//!   the monotone keys (Ahuja et al., "Faster algorithms for the shortest path problem",
//!   J. ACM 1990) takes over from scikit-image's heap.
//!
//! The result is therefore identical, pixel for pixel, to scikit-image's, with one
//! difference: NaN elevations are flooded last, like `+inf` (scikit-image's comparisons
//! with NaN give an order-dependent result).

use std::borrow::Cow;
use std::collections::BinaryHeap;

use ipscope_image::{Image, ImageView, Labels};

/// A heap entry. `key` packs scikit-image's `(value, age)` priority into one integer whose
/// order is exactly that of `smaller` in `heap_watershed.pxi` (value first, then age), so
/// comparisons — and therefore the heap's evolution — are the same, at a fraction of the cost.
#[derive(Clone, Copy)]
struct Item {
    key: u64,
    index: usize,
}

/// Maps an f32 to a u32 with the same order (`-0.0` and `0.0` equal, as `!=` sees them).
#[inline(always)]
fn ordered_bits(v: f32) -> u32 {
    let v = if v == 0.0 { 0.0 } else { v };
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline(always)]
fn key(value: f32, age: u32) -> u64 {
    (u64::from(ordered_bits(value)) << 32) | u64::from(age)
}

/// The elevation packed in a key.
#[inline(always)]
fn elev_of_key(key: u64) -> f32 {
    let b = (key >> 32) as u32;
    f32::from_bits(if b & 0x8000_0000 != 0 {
        b & 0x7fff_ffff
    } else {
        !b
    })
}

/// scikit-image's `smaller`: value first, then age.
#[inline(always)]
fn smaller(a: &Item, b: &Item) -> bool {
    a.key < b.key
}

/// The min-heap of `heap_general.pxi`: push appends and sifts up while strictly smaller;
/// pop moves the last item to the root and sifts down towards the smaller child.
struct Heap {
    items: Vec<Item>,
}

impl Heap {
    fn push(&mut self, item: Item) {
        self.items.push(item);
        let mut child = self.items.len() - 1;
        while child > 0 {
            // heap_general.pxi writes (child + 1) // 2 - 1, the same index.
            let parent = (child - 1) / 2;
            if smaller(&self.items[child], &self.items[parent]) {
                self.items.swap(parent, child);
                child = parent;
            } else {
                break;
            }
        }
    }

    fn pop(&mut self) -> Option<Item> {
        let last = self.items.pop()?;
        if self.items.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.items[0], last);
        let n = self.items.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            if l >= n {
                break;
            }
            let mut smallest = i;
            if smaller(&self.items[l], &self.items[i]) {
                smallest = l;
            }
            if r < n && smaller(&self.items[r], &self.items[smallest]) {
                smallest = r;
            }
            if smallest == i {
                break;
            }
            self.items.swap(i, smallest);
            i = smallest;
        }
        Some(top)
    }
}

/// A radix heap (Ahuja, Mehlhorn, Orlin & Tarjan 1990) for monotone integer keys: every key
/// pushed is at least the last key popped. Pops in exact key order; keys must be distinct
/// for the order to be unique, which holds once no marker (age 0) is left.
struct RadixHeap {
    last: u64,
    len: usize,
    buckets: Vec<Vec<Item>>,
}

impl RadixHeap {
    fn new(last: u64) -> Self {
        RadixHeap {
            last,
            len: 0,
            buckets: (0..65).map(|_| Vec::new()).collect(),
        }
    }

    #[inline(always)]
    fn bucket(&self, key: u64) -> usize {
        64 - (key ^ self.last).leading_zeros() as usize
    }

    #[inline(always)]
    fn push(&mut self, item: Item) {
        let b = self.bucket(item.key);
        self.buckets[b].push(item);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Item> {
        if self.len == 0 {
            return None;
        }
        if self.buckets[0].is_empty() {
            let i = self.buckets.iter().position(|b| !b.is_empty())?;
            let mut moved = std::mem::take(&mut self.buckets[i]);
            self.last = moved.iter().map(|it| it.key).min()?;
            for it in moved.drain(..) {
                let b = self.bucket(it.key);
                self.buckets[b].push(it);
            }
            self.buckets[i] = moved;
        }
        self.len -= 1;
        self.buckets[0].pop()
    }
}

/// A heap entry ordered for `std`'s max-heap so that the smallest key comes out first. Keys
/// are unique within a part's flood (ages are, and markers' keys are, see `Parts::tie`),
/// except between markers of one label, so any correct priority queue gives the labels
/// scikit-image's heap does.
#[derive(Clone, Copy)]
struct MinItem(Item);

impl PartialEq for MinItem {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for MinItem {}

impl PartialOrd for MinItem {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MinItem {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.key.cmp(&self.0.key)
    }
}

/// The 4-connected parts of the mask that hold markers: part k holds the marker pixels
/// `markers[starts[k]..starts[k + 1]]`, in raster order.
struct Parts {
    markers: Vec<usize>,
    starts: Vec<usize>,
}

impl Parts {
    /// Walks the part of each of `seeds` (marker pixels inside the mask) not yet walked,
    /// depth first, collecting its marker pixels (`labels` non-zero); `pixels` is the
    /// number of pixels, `next(i)` pixel i's in-mask 4-neighbours.
    fn find(
        seeds: impl Iterator<Item = usize>,
        labels: &[u32],
        pixels: usize,
        next: impl Fn(usize) -> [Option<usize>; 4],
    ) -> Parts {
        let mut seen = ipscope_image::filled_vec(pixels, false);
        let mut stack: Vec<usize> = Vec::new();
        let mut markers: Vec<usize> = Vec::new();
        let mut starts: Vec<usize> = vec![0];
        for m in seeds {
            if seen[m] {
                continue;
            }
            let first = markers.len();
            seen[m] = true;
            stack.push(m);
            while let Some(i) = stack.pop() {
                if labels[i] != 0 {
                    markers.push(i);
                }
                for n in next(i).into_iter().flatten() {
                    if !seen[n] {
                        seen[n] = true;
                        stack.push(n);
                    }
                }
            }
            markers[first..].sort_unstable();
            starts.push(markers.len());
        }
        Parts { markers, starts }
    }

    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn part(&self, k: usize) -> &[usize] {
        &self.markers[self.starts[k]..self.starts[k + 1]]
    }

    /// Whether two markers of one part share an elevation (so a key: both have age 0) but
    /// not a label (`labels`: each marker pixel's label).
    ///
    /// Markers of one label that tie may leave the heap in any order: the labels come out
    /// the same. Such markers pop one after the other (no other key lies between theirs),
    /// each pushes its unlabelled neighbours with the same label and with values that do
    /// not depend on which of them pushed, so any order pushes the same pixels, labels and
    /// values, only with their ages permuted within one run of consecutive ages. Pixels of
    /// one label whose ages are permuted within such a run compare with every other pixel
    /// as before (value first, then an age outside the run), so they again pop as one run
    /// per value, and the argument repeats until the flood ends.
    fn tie(&self, elev: &[f32], labels: &[u32]) -> bool {
        let mut keys = Vec::new();
        (0..self.len()).any(|k| !self.tied_in(k, elev, labels, &mut keys).is_empty())
    }

    /// The markers of [`Parts::tie`]'s ties (each sharing its key with a marker of another
    /// label in its part), ascending.
    fn tied(&self, elev: &[f32], labels: &[u32]) -> Vec<usize> {
        let mut keys = Vec::new();
        let mut tied: Vec<usize> = (0..self.len())
            .flat_map(|k| self.tied_in(k, elev, labels, &mut keys))
            .collect();
        tied.sort_unstable();
        tied
    }

    /// The tied markers of part `k` (`keys`: scratch).
    fn tied_in(
        &self,
        k: usize,
        elev: &[f32],
        labels: &[u32],
        keys: &mut Vec<(u64, u32, usize)>,
    ) -> Vec<usize> {
        let part = self.part(k);
        if part.len() < 2 {
            return Vec::new();
        }
        keys.clear();
        keys.extend(
            part.iter()
                .map(|&i| (key(elev_at(elev, i), 0), labels[i], i)),
        );
        // Sorted by key, then label: a key shared by two labels has them at the ends of
        // its run.
        keys.sort_unstable();
        let mut tied = Vec::new();
        for run in keys.chunk_by(|a, b| a.0 == b.0) {
            if run[0].1 != run[run.len() - 1].1 {
                tied.extend(run.iter().map(|t| t.2));
            }
        }
        tied
    }
}

/// [`Parts::tie`] for the markers (`labels` non-zero) inside the mask.
#[cfg(test)]
fn markers_tie(elev: &[f32], labels: &[u32], inside: &[bool], w: usize, h: usize) -> bool {
    let seeds = (0..w * h).filter(|&i| inside[i] && labels[i] != 0);
    Parts::find(seeds, labels, w * h, in_mask(inside, w, h)).tie(elev, labels)
}

/// The 4-neighbours of pixel `i` in skimage's order for connectivity 1: up, left, right,
/// down (`None` outside the image).
#[inline(always)]
fn neighbours4(i: usize, w: usize, h: usize) -> [Option<usize>; 4] {
    let c = i % w;
    [
        (i >= w).then(|| i - w),
        (c > 0).then(|| i - 1),
        (c + 1 < w).then_some(i + 1),
        (i + w < w * h).then_some(i + w),
    ]
}

/// The in-mask 4-neighbours of a pixel (see [`neighbours4`]).
#[inline(always)]
fn in_mask(inside: &[bool], w: usize, h: usize) -> impl Fn(usize) -> [Option<usize>; 4] + '_ {
    move |i| neighbours4(i, w, h).map(|n| n.filter(|&n| inside[n]))
}

/// The elevation of pixel `i`; NaN has no place in an order, it floods last, like +inf.
#[inline(always)]
fn elev_at(elev: &[f32], i: usize) -> f32 {
    let v = elev[i];
    if v.is_nan() {
        f32::INFINITY
    } else {
        v
    }
}

/// The flood without scikit-image's heap, one 4-connected part of the mask at a time.
///
/// The flood of one part never sees another, and within a part the order of the keys (value,
/// then age) does not depend on the ages handed out to other parts, so flooding the parts one
/// after the other pops, within each part, the same sequence as one flood over the whole
/// image — and gives the same labels. A part's pixels then stay in cache during its flood
/// instead of being visited in elevation order across the whole image. Needs markers that
/// share a key within a part to share their label too (no [`Parts::tie`]).
///
/// For the same reason the parts are flooded in parallel on the current rayon pool when it
/// has more than one thread (each part by one task, its ages counted from 1): the labels do
/// not depend on the thread count.
fn flood_by_parts<N>(parts: &Parts, elev: &[f32], next: N, out: &mut [u32])
where
    N: Fn(usize) -> [Option<usize>; 4] + Sync,
{
    // Shared by the tasks that flood the parts: a task touches only its own part's pixels.
    let labels = super::par::DisjointPixels::new(out);
    let flood = |queue: &mut BinaryHeap<MinItem>, k: usize| {
        // SAFETY: each part is flooded by exactly one call, and a call reads and writes the
        // labels of its own part only (see `flood_part`); parts are disjoint.
        unsafe { flood_part(parts.part(k), elev, &next, &labels, queue) }
    };
    let count = parts.len();
    if rayon::current_num_threads() <= 1 || count < 2 {
        let mut queue = BinaryHeap::new();
        for k in 0..count {
            flood(&mut queue, k);
        }
    } else {
        use rayon::prelude::*;
        (0..count)
            .into_par_iter()
            .with_min_len(8)
            .for_each_init(BinaryHeap::new, |queue, k| flood(queue, k));
    }
}

/// Floods one 4-connected part of the mask from its markers (raster order, labels already
/// set), ages starting at 1; `next(i)`: pixel i's in-mask 4-neighbours, in the order up,
/// left, right, down.
///
/// The queue is a binary heap: a part's front is a few dozen pixels, and its keys (continuous
/// elevations, then ages) are unique, so a radix heap would redistribute a bucket at almost
/// every pop; the binary heap pops the same sequence in a few levels of sifting.
///
/// # Safety
/// No other thread may access the pixels of this part of `labels` meanwhile. The flood
/// touches only them: it starts at the part's markers and steps only to in-mask
/// 4-neighbours, which belong to the same part.
unsafe fn flood_part(
    markers: &[usize],
    elev: &[f32],
    next: impl Fn(usize) -> [Option<usize>; 4],
    labels: &super::par::DisjointPixels<u32>,
    queue: &mut BinaryHeap<MinItem>,
) {
    queue.clear();
    for &i in markers {
        queue.push(MinItem(Item {
            key: key(elev_at(elev, i), 0),
            index: i,
        }));
    }
    let mut age = 1u32;
    while let Some(MinItem(item)) = queue.pop() {
        let i = item.index;
        let popped_value = elev_of_key(item.key);
        // SAFETY (here and below): pixels of this part (the function's contract).
        let label = unsafe { labels.get(i) };
        for n in next(i).into_iter().flatten() {
            if unsafe { labels.get(n) } != 0 {
                continue;
            }
            age = age.wrapping_add(1);
            let value = elev_at(elev, n).max(popped_value);
            unsafe { labels.set(n, label) };
            queue.push(MinItem(Item {
                key: key(value, age),
                index: n,
            }));
        }
    }
}

/// [`watershed`] on a sparse mask, its pixels alone: `pixels` are the mask's raster indices
/// in a `w`-wide image (ascending, distinct), `elev[k]` and `labels[k]` pixel `pixels[k]`'s
/// elevation and marker label (0: none). On return `labels` holds the watershed's labels of
/// those pixels (the same as [`watershed`] with that mask, as the part-by-part flood gives
/// them, on arrays the size of the mask instead of the image's), or, when two markers of
/// one 4-connected part of the mask tie with different labels, `false` and `labels`
/// unchanged: only scikit-image's heap over the whole image breaks such a tie, so call
/// [`watershed`] then.
///
/// # Panics
/// If `elev` or `labels` do not have one entry per pixel, or `w` is 0 with pixels given.
pub(crate) fn watershed_sparse(
    pixels: &[usize],
    w: usize,
    elev: &[f32],
    labels: &mut [u32],
) -> bool {
    let n = pixels.len();
    assert!(
        elev.len() == n && labels.len() == n && n < u32::MAX as usize,
        "watershed_sparse: one value per pixel, fewer than 2^32 - 1 pixels"
    );
    // Each pixel's 4-neighbours in the mask, by their positions in `pixels`: left and right
    // are the adjacent entries, up and down are found by two pointers that only move on.
    // (u32::MAX: none; positions fit u32, pixels.len() being below it, see the assertion.)
    const NONE: u32 = u32::MAX;
    let mut next = vec![[NONE; 4]; n];
    let (mut up, mut down) = (0usize, 0usize);
    for (k, &p) in pixels.iter().enumerate() {
        let at = |j: usize, t: usize| {
            if j < n && pixels[j] == t {
                j as u32
            } else {
                NONE
            }
        };
        if p >= w {
            while up < n && pixels[up] < p - w {
                up += 1;
            }
            next[k][0] = at(up, p - w);
        }
        if p % w != 0 && k > 0 {
            next[k][1] = at(k - 1, p - 1);
        }
        if (p + 1) % w != 0 {
            next[k][2] = at(k + 1, p + 1);
        }
        while down < n && pixels[down] < p + w {
            down += 1;
        }
        next[k][3] = at(down, p + w);
    }
    let step = |k: usize| next[k].map(|j| (j != NONE).then_some(j as usize));
    let seeds = (0..n).filter(|&k| labels[k] != 0);
    let parts = Parts::find(seeds, labels, n, step);
    if parts.tie(elev, labels) {
        return false;
    }
    flood_by_parts(&parts, elev, step, labels);
    true
}

/// Floods `elevation` from `markers` (label > 0), restricted to `mask` when given.
///
/// Labels keep the marker values (no renumbering); `count` is the markers' largest label.
/// Pixels outside the mask, and pixels no marker can reach, are 0. Marker pixels outside the
/// mask are dropped, as in scikit-image.
///
/// # Panics
/// If `markers` or `mask` do not have the size of `elevation`.
pub fn watershed(
    elevation: ImageView<f32>,
    markers: &Labels,
    mask: Option<ImageView<bool>>,
) -> Labels {
    flood(elevation, markers, mask, true)
}

/// The flood; `allow_radix = false` keeps scikit-image's binary heap throughout (tests).
fn flood(
    elevation: ImageView<f32>,
    markers: &Labels,
    mask: Option<ImageView<bool>>,
    allow_radix: bool,
) -> Labels {
    let (w, h) = (elevation.width(), elevation.height());
    assert!(
        markers.width() == w && markers.height() == h,
        "watershed: markers are {}x{}, elevation is {w}x{h}",
        markers.width(),
        markers.height()
    );
    if let Some(m) = mask {
        assert!(
            m.width() == w && m.height() == h,
            "watershed: mask is {}x{}, elevation is {w}x{h}",
            m.width(),
            m.height()
        );
    }
    // Borrow contiguous inputs; copy only a strided view.
    let inside: Cow<[bool]> = match mask.map(|m| (m, m.as_contiguous())) {
        Some((_, Some(m))) => Cow::Borrowed(m),
        Some((m, None)) => Cow::Owned(m.to_image().into_vec()),
        None => Cow::Owned(vec![true; w * h]),
    };
    let inside: &[bool] = &inside;
    // NaN elevations are read as +inf (`elev_at`), so a contiguous image is borrowed as is.
    let elev: Cow<[f32]> = match elevation.as_contiguous() {
        Some(e) => Cow::Borrowed(e),
        None => Cow::Owned(elevation.to_image().into_vec()),
    };
    let elev: &[f32] = &elev;
    // Markers inside the mask, in raster order, in one pass that also finds the largest
    // label; blocks without a marker (most of an image) are skipped after one OR.
    let mut out: Vec<u32> = ipscope_image::filled_vec(w * h, 0);
    let mut heap = Heap {
        items: Vec::with_capacity(1024),
    };
    let mut largest = 0u32;
    const BLOCK: usize = 64;
    for (b, block) in markers.image().as_slice().chunks(BLOCK).enumerate() {
        if block.iter().fold(0, |a, &l| a | l) == 0 {
            continue;
        }
        for (k, &l) in block.iter().enumerate() {
            let i = b * BLOCK + k;
            largest = largest.max(l);
            if l != 0 && inside[i] {
                out[i] = l;
                heap.push(Item {
                    key: key(elev_at(elev, i), 0),
                    index: i,
                });
            }
        }
    }
    // Keys only grow during the flood (a pushed pixel costs at least what reached it, and
    // ages increase), and once they are unique any priority queue (a part's binary heap, a
    // radix heap) pops the same sequence as scikit-image's heap, at a fraction of the cost. Only markers share a key (age
    // 0, same elevation), and only scikit-image's own heap breaks such ties its way. A tie
    // matters only between markers of different labels in the same 4-connected part of the
    // mask (the flood of one part never sees another; see `Parts::tie` for one label), so
    // the binary heap is kept, until the last marker is out, only when such a tie exists.
    //
    // With `allow_radix`, the binary heap is kept only until the last tied marker is out:
    // the keys left then are unique but between markers of one label or of different parts,
    // whose order does not change the labels (see `Parts::tie` and `flood_by_parts`).
    let mut markers_left = heap.items.len();
    let mut tied: Vec<usize> = Vec::new();
    let mut radix: Option<RadixHeap> = None;
    if allow_radix {
        let next = in_mask(inside, w, h);
        let parts = Parts::find(heap.items.iter().map(|m| m.index), &out, w * h, &next);
        tied = parts.tied(elev, &out);
        if tied.is_empty() {
            flood_by_parts(&parts, elev, &next, &mut out);
            heap.items.clear();
        } else {
            markers_left = tied.len();
        }
    }
    let mut age = 1u32;
    loop {
        let next = match radix.as_mut() {
            Some(r) => r.pop(),
            None => heap.pop(),
        };
        let Some(item) = next else { break };
        if radix.is_none()
            && item.key & 0xffff_ffff == 0
            && (tied.is_empty() || tied.binary_search(&item.index).is_ok())
        {
            markers_left -= 1;
            if markers_left == 0 {
                let mut r = RadixHeap::new(item.key);
                for it in heap.items.drain(..) {
                    r.push(it);
                }
                radix = Some(r);
            }
        }
        let i = item.index;
        let popped_value = elev_of_key(item.key);
        let label = out[i];
        // Neighbour order of skimage's raveled offsets for connectivity 1: up, left, right, down.
        for n in neighbours4(i, w, h).into_iter().flatten() {
            if !inside[n] || out[n] != 0 {
                continue;
            }
            age = age.wrapping_add(1);
            // The cost of a pixel is at least that of the pixel that reached it
            // (scikit-image >= 0.26, PR #7071).
            let value = elev_at(elev, n).max(popped_value);
            out[n] = label;
            let it = Item {
                key: key(value, age),
                index: n,
            };
            match radix.as_mut() {
                Some(r) => r.push(it),
                None => heap.push(it),
            }
        }
    }
    // max_label: the largest label present or promised.
    let count = largest.max(markers.count());
    match Image::from_vec(w, h, out) {
        Ok(img) => Labels::new(img, count),
        // Unreachable: `out` has exactly w * h entries.
        Err(_) => Labels::empty(w, h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_basins_split_at_the_ridge() {
        // Elevation rises towards column 5 from both sides.
        let elev = Image::from_fn(11, 3, |_, c| 5.0 - (c as f32 - 5.0).abs());
        let mut m = Image::new(11, 3, 0u32);
        m.set(1, 0, 1);
        m.set(1, 10, 2);
        let out = watershed(elev.view(), &Labels::from_image(m), None);
        for r in 0..3 {
            for c in 0..5 {
                assert_eq!(out.image().get(r, c), 1);
                assert_eq!(out.image().get(r, 10 - c), 2);
            }
        }
        assert_eq!(out.count(), 2);
    }

    #[test]
    fn mask_limits_the_flood_and_drops_outside_markers() {
        let elev = Image::new(6, 1, 0.0f32);
        let m = Labels::from_image(Image::from_vec(6, 1, vec![1, 0, 0, 0, 0, 2]).unwrap());
        let mask = Image::from_vec(6, 1, vec![true, true, false, true, true, false]).unwrap();
        let out = watershed(elev.view(), &m, Some(mask.view()));
        assert_eq!(out.image().as_slice(), &[1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn empty_markers_and_images() {
        let elev = Image::new(4, 4, 1.0f32);
        let out = watershed(elev.view(), &Labels::empty(4, 4), None);
        assert_eq!(out.count(), 0);
        assert!(out.image().as_slice().iter().all(|&v| v == 0));
        let e = Image::new(0, 0, 0.0f32);
        assert_eq!(watershed(e.view(), &Labels::empty(0, 0), None).count(), 0);
    }

    #[test]
    fn radix_path_equals_the_binary_heap_path() {
        let mut rnd = crate::testing::lcg32(99);
        for case in 0..20 {
            let (w, h) = (31 + case, 23);
            // Coarse levels make plateaus and ties between non-marker pixels common.
            let mut elev = Image::from_fn(w, h, |_, _| (rnd() % 5) as f32);
            let mask = Image::from_fn(w, h, |_, _| !rnd().is_multiple_of(7));
            let mut m = Image::new(w, h, 0u32);
            for k in 0..12 {
                let i = rnd() as usize % (w * h);
                m.as_mut_slice()[i] = k + 1;
                // Even cases: distinct marker values, so the radix heap runs the flood.
                if case % 2 == 0 {
                    elev.as_mut_slice()[i] = 0.5 + k as f32 / 64.0;
                }
            }
            let markers = Labels::from_image(m);
            let fast = flood(elev.view(), &markers, Some(mask.view()), true);
            let exact = flood(elev.view(), &markers, Some(mask.view()), false);
            assert_eq!(fast, exact, "case {case}");
            let fast = flood(elev.view(), &markers, None, true);
            let exact = flood(elev.view(), &markers, None, false);
            assert_eq!(fast, exact, "case {case} without mask");
        }
    }

    #[test]
    fn flood_by_parts_equals_the_binary_heap_path_on_many_small_parts() {
        // A sparse mask breaks into many 4-connected parts, some with several markers, some
        // with none; the part-by-part flood must give scikit-image's heap's labels.
        let mut rnd = crate::testing::lcg32(4242);
        for case in 0..10 {
            let (w, h) = (40 + case, 37);
            // Coarse levels: plateaus and ties between flooded pixels are common.
            let mut elev = Image::from_fn(w, h, |_, _| (rnd() % 9) as f32 / 3.0);
            let mask = Image::from_fn(w, h, |_, _| rnd() % 5 < 3);
            let mut m = Image::new(w, h, 0u32);
            for k in 0..40 {
                let i = rnd() as usize % (w * h);
                m.as_mut_slice()[i] = k % 13 + 1;
                // Even cases: distinct marker elevations, so the part-by-part flood runs.
                // Odd cases: four levels, ties between markers in one part or in different
                // parts (only the former needs scikit-image's heap).
                elev.as_mut_slice()[i] = if case % 2 == 0 {
                    0.01 + k as f32 / 128.0
                } else {
                    (k % 4) as f32 / 8.0
                };
            }
            // NaN floods last, like +inf.
            elev.as_mut_slice()[(case * 7) % (w * h)] = f32::NAN;
            let markers = Labels::from_image(m);
            let inside = mask.as_slice();
            if case % 2 == 0 {
                assert!(
                    !markers_tie(elev.as_slice(), markers.image().as_slice(), inside, w, h),
                    "case {case}"
                );
            }
            let inf = elev.map(|v| if v.is_nan() { f32::INFINITY } else { v });
            let with_inf = flood(inf.view(), &markers, Some(mask.view()), false);
            let exact = flood(elev.view(), &markers, Some(mask.view()), false);
            let fast = flood(elev.view(), &markers, Some(mask.view()), true);
            assert_eq!(fast, exact, "case {case}");
            assert_eq!(with_inf, exact, "case {case}: NaN as +inf");
            // The parts flooded in parallel (each with its own ages): the same labels.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let parallel = pool.install(|| flood(elev.view(), &markers, Some(mask.view()), true));
            assert_eq!(parallel, exact, "case {case}: parts flooded on 3 threads");
        }
    }

    #[test]
    fn markers_of_one_label_may_tie_in_any_order() {
        // Ties between markers of one label in one part: `markers_tie` lets the part-by-part
        // flood run (its heap breaks the ties its own way), and the labels must be those of
        // scikit-image's heap. Coarse levels make every other kind of tie common too.
        let mut rnd = crate::testing::lcg32(2718);
        const CASES: usize = 500;
        let mut with_ties = 0;
        for case in 0..CASES {
            let (w, h) = (24 + case % 17, 19 + case % 5);
            let mut elev = Image::from_fn(w, h, |_, _| (rnd() % 6) as f32 / 4.0);
            let dense = case % 3 == 0;
            let mask = Image::from_fn(w, h, |_, _| dense || rnd() % 5 < 3);
            let mut m = Image::new(w, h, 0u32);
            for k in 0..30u32 {
                let i = rnd() as usize % (w * h);
                if k % 2 == 0 {
                    // Three levels, each with its own label: every tie is within a label.
                    let level = rnd() % 3;
                    m.as_mut_slice()[i] = level + 1;
                    elev.as_mut_slice()[i] = level as f32 / 4.0;
                } else {
                    // Distinct elevations, other labels (one of them shared).
                    m.as_mut_slice()[i] = 4 + k % 5;
                    elev.as_mut_slice()[i] = 0.1 + k as f32 / 256.0;
                }
            }
            let markers = Labels::from_image(m);
            let inside = mask.as_slice();
            let lab = markers.image().as_slice();
            let items: Vec<Item> = (0..w * h)
                .filter(|&i| inside[i] && lab[i] != 0)
                .map(|i| Item {
                    key: key(elev.as_slice()[i], 0),
                    index: i,
                })
                .collect();
            assert!(
                !markers_tie(elev.as_slice(), lab, inside, w, h),
                "case {case}"
            );
            let mut keys: Vec<u64> = items.iter().map(|m| m.key).collect();
            keys.sort_unstable();
            with_ties += usize::from(keys.windows(2).any(|k| k[0] == k[1]));
            let exact = flood(elev.view(), &markers, Some(mask.view()), false);
            let fast = flood(elev.view(), &markers, Some(mask.view()), true);
            assert_eq!(fast, exact, "case {case}");
        }
        assert!(
            with_ties > CASES / 2,
            "{with_ties} of {CASES} cases with tied markers"
        );
        // A tie between two labels in one part is still seen.
        let inside = [true; 4];
        let elev = [1.0, 0.0, 0.0, 1.0];
        assert!(markers_tie(&elev, &[1, 0, 0, 2], &inside, 2, 2));
        assert!(!markers_tie(&elev, &[1, 0, 0, 1], &inside, 2, 2));
        assert!(!markers_tie(
            &elev,
            &[1, 0, 0, 2],
            &[true, false, false, true],
            2,
            2
        ));
        // -0.0 and 0.0 are one elevation.
        assert!(markers_tie(
            &[0.0, 5.0, 5.0, -0.0],
            &[1, 0, 0, 2],
            &inside,
            2,
            2
        ));
        // Three tied markers, two of one label.
        assert!(markers_tie(&[1.0; 3], &[1, 1, 2], &[true; 3], 3, 1));
        assert!(!markers_tie(&[1.0; 3], &[2, 2, 2], &[true; 3], 3, 1));
    }
    #[test]
    fn sparse_flood_equals_the_flood_of_the_field() {
        // Random masks (sparse and dense, 1 to 3 pixels wide, rows that end and begin in the
        // mask next to each other in raster order), coarse elevations with NaN, markers with
        // distinct elevations in even cases; ties in odd ones, which must be refused.
        let mut rnd = crate::testing::lcg32(5150);
        let (mut flooded, mut refused) = (0, 0);
        for case in 0..300 {
            let (w, h) = (
                1 + case % 3 + (rnd() % 30) as usize,
                1 + (rnd() % 25) as usize,
            );
            let density = 2 + rnd() % 8;
            let mask = Image::from_fn(w, h, |_, _| rnd() % 10 < density);
            let mut elev = Image::from_fn(w, h, |_, _| (rnd() % 7) as f32 / 3.0);
            elev.as_mut_slice()[(case * 11) % (w * h)] = f32::NAN;
            let mut m = Image::new(w, h, 0u32);
            for k in 0..1 + rnd() % 12 {
                let i = rnd() as usize % (w * h);
                m.as_mut_slice()[i] = 1 + k % 5;
                if case % 2 == 0 {
                    elev.as_mut_slice()[i] = -1.0 - k as f32 / 64.0;
                }
            }
            let markers = Labels::from_image(m);
            let want = watershed(elev.view(), &markers, Some(mask.view()));
            let pixels: Vec<usize> = (0..w * h).filter(|&i| mask.as_slice()[i]).collect();
            let e: Vec<f32> = pixels.iter().map(|&i| elev.as_slice()[i]).collect();
            let lab = markers.image().as_slice();
            let start: Vec<u32> = pixels.iter().map(|&i| lab[i]).collect();
            let mut labels = start.clone();
            if watershed_sparse(&pixels, w, &e, &mut labels) {
                flooded += 1;
                let got: Vec<u32> = pixels.iter().map(|&i| want.image().as_slice()[i]).collect();
                assert_eq!(labels, got, "case {case}, {w}x{h}");
            } else {
                refused += 1;
                assert_eq!(labels, start, "case {case}: refused, labels untouched");
                let inside = mask.as_slice();
                assert!(
                    markers_tie(elev.as_slice(), lab, inside, w, h),
                    "case {case}"
                );
            }
        }
        assert!(
            flooded >= 150 && refused >= 20,
            "{flooded} flooded, {refused} refused"
        );
        // No pixels, and pixels without markers.
        assert!(watershed_sparse(&[], 4, &[], &mut []));
        let mut labels = [0, 0];
        assert!(watershed_sparse(&[3, 4], 4, &[0.0, 1.0], &mut labels));
        assert_eq!(labels, [0, 0]);
    }

    #[test]
    fn radix_heap_pops_monotone_keys_in_order() {
        let mut r = RadixHeap::new(0);
        let mut state = 7u64;
        let mut last = 0u64;
        let mut popped = Vec::new();
        for round in 0..200u64 {
            for k in 0..5u64 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                r.push(Item {
                    key: last + (state >> 40) + 1 + k,
                    index: (round * 5 + k) as usize,
                });
            }
            let it = r.pop().unwrap();
            assert!(it.key >= last);
            last = it.key;
            popped.push(it.key);
        }
        while let Some(it) = r.pop() {
            assert!(it.key >= last);
            last = it.key;
        }
        assert_eq!(r.len, 0);
    }

    #[test]
    fn keys_order_like_values_then_ages() {
        let vals = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::INFINITY,
        ];
        for (i, &a) in vals.iter().enumerate() {
            assert_eq!(elev_of_key(key(a, 7)), if a == 0.0 { 0.0 } else { a });
            for &b in &vals[i..] {
                assert_eq!(key(a, 5) < key(b, 6), a <= b);
                assert_eq!(key(a, 6) < key(b, 5), a < b);
            }
        }
    }

    #[test]
    fn heap_pops_in_priority_order() {
        let mut heap = Heap { items: Vec::new() };
        let vals = [5.0, 1.0, 3.0, 1.0, 4.0, 2.0, 0.5];
        for (k, &v) in vals.iter().enumerate() {
            heap.push(Item {
                key: key(v, k as u32 + 1),
                index: k,
            });
        }
        let order: Vec<usize> = std::iter::from_fn(|| heap.pop().map(|i| i.index)).collect();
        assert_eq!(order, vec![6, 1, 3, 5, 2, 4, 0]);
    }
}
