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
//!   operation, so even markers with equal elevation leave it in the same order.
//!
//! The result is therefore identical, pixel for pixel, to scikit-image's.

use ipscope_image::{Image, ImageView, Labels};

use super::label::max_label;

#[derive(Clone, Copy)]
struct Item {
    value: f32,
    age: u32,
    index: usize,
}

/// scikit-image's `smaller` (heap_watershed.pxi), NaN semantics included.
#[inline(always)]
#[allow(clippy::float_cmp)]
fn smaller(a: &Item, b: &Item) -> bool {
    if a.value != b.value {
        a.value < b.value
    } else {
        a.age < b.age
    }
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
    let inside: Vec<bool> = match mask {
        Some(m) => m.map(|b| b).into_vec(),
        None => vec![true; w * h],
    };
    let elev = elevation.to_image();
    let elev = elev.as_slice();
    let mut out: Vec<u32> = markers.image().as_slice().to_vec();
    for (o, &m) in out.iter_mut().zip(&inside) {
        if !m {
            *o = 0;
        }
    }
    let mut heap = Heap {
        items: Vec::with_capacity(1024),
    };
    for (i, &l) in out.iter().enumerate() {
        if l != 0 {
            heap.push(Item {
                value: elev[i],
                age: 0,
                index: i,
            });
        }
    }
    let mut age = 1u32;
    while let Some(item) = heap.pop() {
        let i = item.index;
        let (r, c) = (i / w, i % w);
        let label = out[i];
        // Neighbour order of skimage's raveled offsets for connectivity 1: up, left, right, down.
        let neighbours = [
            (r > 0).then(|| i - w),
            (c > 0).then(|| i - 1),
            (c + 1 < w).then(|| i + 1),
            (r + 1 < h).then(|| i + w),
        ];
        for n in neighbours.into_iter().flatten() {
            if !inside[n] || out[n] != 0 {
                continue;
            }
            age = age.wrapping_add(1);
            let mut value = elev[n];
            if value < item.value {
                value = item.value;
            }
            out[n] = label;
            heap.push(Item {
                value,
                age,
                index: n,
            });
        }
    }
    let count = max_label(markers);
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
    fn heap_pops_in_priority_order() {
        let mut heap = Heap { items: Vec::new() };
        let vals = [5.0, 1.0, 3.0, 1.0, 4.0, 2.0, 0.5];
        for (k, &v) in vals.iter().enumerate() {
            heap.push(Item {
                value: v,
                age: k as u32 + 1,
                index: k,
            });
        }
        let order: Vec<usize> = std::iter::from_fn(|| heap.pop().map(|i| i.index)).collect();
        assert_eq!(order, vec![6, 1, 3, 5, 2, 4, 0]);
    }
}
