//! Cells from nuclei (CellProfiler's IdentifySecondaryObjects) and cytoplasm
//! (IdentifyTertiaryObjects): each nucleus seeds one cell, grown into the thresholded
//! foreground of a cell-body stain; cytoplasm = cell − nucleus.
//!
//! Methods:
//! * `propagation`, after T. R. Jones, A. E. Carpenter, P. Golland, "Voronoi-based
//!   segmentation of cells on image manifolds", CVBIA 2005, as CellProfiler's Propagate:
//!   a Dijkstra flood from the nuclei over the foreground, where a step between neighbours
//!   costs √(Δ² + λ²·s²), Δ the summed absolute intensity difference over the two 3×3
//!   windows, s the step length and λ the regularisation factor (CellProfiler default
//!   0.05). The step cost follows centrosome's `propagate` in form; it is not checked
//!   against centrosome (not installable here), so cells near equal-cost boundaries may
//!   differ from CellProfiler's;
//! * `watershed`: watershed of the Sobel gradient magnitude of the image from the nuclei,
//!   inside the foreground;
//! * `distance`: every nucleus grown by up to `distance` px (`expand_labels`), ignoring
//!   the image (CellProfiler's "Distance - N").
//!
//! Cell `k` is the child of nucleus `k` (same label, so `Parent_Nuclei` = `ObjectNumber`);
//! nuclei are always part of their cell.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ipscope_image::{Image, ImageView, Labels, Pixel};
use serde::{Deserialize, Serialize};

use crate::assays::nuclei::{threshold_field, NucleiParams, ThresholdMethod};
use crate::ops::expand::expand_labels;
use crate::ops::filter::gaussian_blur;
use crate::ops::morphology;
use crate::ops::watershed::watershed;
use crate::{ensure_shape, Error};

/// How cells grow from nuclei.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellMethod {
    /// CellProfiler's Propagate (Jones et al. 2005).
    #[default]
    Propagation,
    /// Watershed of the gradient magnitude.
    Watershed,
    /// Fixed-distance expansion, ignoring the image.
    Distance,
}

/// Settings of [`segment_cells`]; defaults follow CellProfiler's ExampleHuman pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CellsParams {
    /// Default `propagation`.
    pub method: CellMethod,
    /// Propagation's λ. Default 0.05.
    pub regularization: f32,
    /// Growth in pixels for `distance`. Default 10.
    pub distance: f64,
    /// Threshold of the cell stain. Default `li` (minimum cross-entropy).
    pub threshold_method: ThresholdMethod,
    /// Default 0.8.
    pub threshold_correction: f32,
    /// Gaussian σ before thresholding. Default 0 (none).
    pub smoothing_sigma: f32,
    /// Fill holes in each cell. Default true.
    pub fill_holes: bool,
}

impl Default for CellsParams {
    fn default() -> Self {
        CellsParams {
            method: CellMethod::Propagation,
            regularization: 0.05,
            distance: 10.0,
            threshold_method: ThresholdMethod::Li,
            threshold_correction: 0.8,
            smoothing_sigma: 0.0,
            fill_holes: true,
        }
    }
}

/// Cells and cytoplasm of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct CellsResult {
    /// Cell `k` grows from nucleus `k`.
    pub cells: Labels,
    /// Cell `k` minus nucleus `k` (may be empty for a cell that is all nucleus).
    pub cytoplasm: Labels,
    /// Threshold of the cell stain (0..1 scale); NaN for `distance` or without threshold.
    pub threshold: f64,
}

#[derive(PartialEq)]
struct Item(f64, usize, u32);
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    // Min-heap on cost, then pixel index, for a deterministic order.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

/// Grows cells from `nuclei` in a cell-body image. Errors when the sizes differ.
pub fn segment_cells<T: Pixel>(
    image: ImageView<T>,
    nuclei: &Labels,
    params: &CellsParams,
) -> Result<CellsResult, Error> {
    let (w, h) = (image.width(), image.height());
    ensure_shape("nuclei", (w, h), (nuclei.width(), nuclei.height()))?;
    let scaled = image.map(|v| (v.to_f64() / T::MAX) as f32);
    let (cells, threshold) = if params.method == CellMethod::Distance {
        (expand_labels(nuclei, params.distance), f64::NAN)
    } else {
        let smooth = gaussian_blur(scaled.view(), params.smoothing_sigma);
        let tp = NucleiParams {
            threshold_method: params.threshold_method,
            threshold_correction: params.threshold_correction,
            ..NucleiParams::default()
        };
        let t = threshold_field(smooth.view(), &tp);
        let value = t.as_ref().map_or(f64::NAN, |t| t.value);
        let mut fg = Image::new(w, h, false);
        for (i, f) in fg.as_mut_slice().iter_mut().enumerate() {
            let v = f64::from(smooth.as_slice()[i]);
            let local = t
                .as_ref()
                .and_then(|t| t.local.as_ref())
                .map(|l| f64::from(l.as_slice()[i]));
            *f = nuclei.image().as_slice()[i] != 0 || v > local.unwrap_or(value);
        }
        let cells = match params.method {
            CellMethod::Watershed => {
                let grad = sobel(&scaled);
                watershed(grad.view(), nuclei, Some(fg.view()))
            }
            _ => propagate(&scaled, nuclei, &fg, f64::from(params.regularization)),
        };
        (cells, value)
    };
    let cells = if params.fill_holes {
        fill_each(&cells)
    } else {
        cells
    };
    let mut cyto = cells.image().clone();
    for (c, &n) in cyto
        .as_mut_slice()
        .iter_mut()
        .zip(nuclei.image().as_slice())
    {
        if n != 0 {
            *c = 0;
        }
    }
    Ok(CellsResult {
        cytoplasm: Labels::new(cyto, cells.count()),
        cells,
        threshold,
    })
}

/// Sobel gradient magnitude with edge replication.
fn sobel(img: &Image<f32>) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let at = |r: i64, c: i64| {
        img.get(
            r.clamp(0, h as i64 - 1) as usize,
            c.clamp(0, w as i64 - 1) as usize,
        )
    };
    Image::from_fn(w, h, |r, c| {
        let (r, c) = (r as i64, c as i64);
        let gx = at(r - 1, c + 1) + 2.0 * at(r, c + 1) + at(r + 1, c + 1)
            - at(r - 1, c - 1)
            - 2.0 * at(r, c - 1)
            - at(r + 1, c - 1);
        let gy = at(r + 1, c - 1) + 2.0 * at(r + 1, c) + at(r + 1, c + 1)
            - at(r - 1, c - 1)
            - 2.0 * at(r - 1, c)
            - at(r - 1, c + 1);
        (gx * gx + gy * gy).sqrt()
    })
}

/// Dijkstra flood from the nuclei over `fg` with Jones et al.'s step cost, as
/// `centrosome.propagate.propagate(img, nuclei, fg, lambda)` (CellProfiler's Propagation):
/// a step between 8-neighbours costs √(d² + λ²·s), d the summed absolute difference of their
/// 3×3 neighbourhoods (edges replicated), s = 1 for an edge step and 2 for a diagonal one.
/// `img` is the cell stain on a 0..1 scale; pixels outside `fg` stay 0. Nucleus pixels keep
/// their label. Panics if the sizes differ.
pub fn propagate(img: &Image<f32>, nuclei: &Labels, fg: &Image<bool>, lambda: f64) -> Labels {
    let (w, h) = (img.width(), img.height());
    let px = |r: i64, c: i64| {
        f64::from(img.get(
            r.clamp(0, h as i64 - 1) as usize,
            c.clamp(0, w as i64 - 1) as usize,
        ))
    };
    let mut cost = vec![f64::INFINITY; w * h];
    let mut out = Image::new(w, h, 0u32);
    let mut heap = BinaryHeap::new();
    for (i, &l) in nuclei.image().as_slice().iter().enumerate() {
        if l != 0 {
            cost[i] = 0.0;
            heap.push(Item(0.0, i, l));
        }
    }
    while let Some(Item(c0, i, l)) = heap.pop() {
        if out.as_slice()[i] != 0 || c0 > cost[i] {
            continue;
        }
        out.as_mut_slice()[i] = l;
        let (r, c) = ((i / w) as i64, (i % w) as i64);
        for dr in -1i64..=1 {
            for dc in -1i64..=1 {
                let (rr, cc) = (r + dr, c + dc);
                if (dr == 0 && dc == 0) || rr < 0 || cc < 0 || rr >= h as i64 || cc >= w as i64 {
                    continue;
                }
                let j = rr as usize * w + cc as usize;
                if !fg.as_slice()[j] || out.as_slice()[j] != 0 {
                    continue;
                }
                let mut delta = 0.0;
                for kr in -1..=1 {
                    for kc in -1..=1 {
                        delta += (px(r + kr, c + kc) - px(rr + kr, cc + kc)).abs();
                    }
                }
                let s2 = (dr * dr + dc * dc) as f64;
                let nc = c0 + (delta * delta + lambda * lambda * s2).sqrt();
                if nc < cost[j] {
                    cost[j] = nc;
                    heap.push(Item(nc, j, l));
                }
            }
        }
    }
    Labels::new(out, nuclei.count())
}

/// Fills the holes of each object (pixels enclosed by one object join it). A gap enclosed
/// by several touching objects belongs to none of them and stays background.
fn fill_each(labels: &Labels) -> Labels {
    let fg = labels.image().map(|v| v != 0);
    let filled = morphology::fill_holes(fg.view());
    let holes = Image::from_fn(fg.width(), fg.height(), |r, c| {
        filled.get(r, c) && !fg.get(r, c)
    });
    let hl = crate::ops::label::label(holes.view(), crate::ops::label::Connectivity::Four);
    // Per hole component: the one object around it, or none when it borders several.
    const NONE: u32 = 0;
    const MANY: u32 = u32::MAX;
    let mut owner = vec![NONE; hl.count() as usize + 1];
    let mut out = labels.image().clone();
    let (w, h) = (out.width(), out.height());
    for r in 0..h {
        for c in 0..w {
            let k = hl.image().get(r, c) as usize;
            if k == 0 {
                continue;
            }
            let around = [
                (r > 0).then(|| (r - 1, c)),
                (r + 1 < h).then(|| (r + 1, c)),
                (c > 0).then(|| (r, c - 1)),
                (c + 1 < w).then(|| (r, c + 1)),
            ];
            for (rr, cc) in around.into_iter().flatten() {
                let v = labels.image().get(rr, cc);
                if v != 0 && owner[k] != v {
                    owner[k] = if owner[k] == NONE { v } else { MANY };
                }
            }
        }
    }
    for (o, &k) in out.as_mut_slice().iter_mut().zip(hl.image().as_slice()) {
        let v = owner[k as usize];
        if k != 0 && v != NONE && v != MANY {
            *o = v;
        }
    }
    Labels::new(out, labels.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_cells() -> (Image<u8>, Labels) {
        let img = Image::from_fn(30, 12, |r, c| {
            if (1..11).contains(&r) && (1..29).contains(&c) {
                if c == 15 {
                    60
                } else {
                    150
                }
            } else {
                5
            }
        });
        let nuc = Image::from_fn(30, 12, |r, c| {
            if (5..7).contains(&r) && (5..7).contains(&c) {
                1
            } else if (5..7).contains(&r) && (22..24).contains(&c) {
                2
            } else {
                0
            }
        });
        (img, Labels::new(nuc, 2))
    }

    #[test]
    fn every_method_gives_one_cell_per_nucleus_and_cytoplasm_excludes_nuclei() {
        let (img, nuc) = two_cells();
        for method in [
            CellMethod::Propagation,
            CellMethod::Watershed,
            CellMethod::Distance,
        ] {
            let p = CellsParams {
                method,
                ..CellsParams::default()
            };
            let r = segment_cells(img.view(), &nuc, &p).unwrap();
            assert_eq!(r.cells.count(), 2);
            let s = r.cells.image().as_slice();
            assert!(s.contains(&1) && s.contains(&2), "{method:?}");
            for (&n, &c) in nuc
                .image()
                .as_slice()
                .iter()
                .zip(r.cytoplasm.image().as_slice())
            {
                assert!(n == 0 || c == 0);
            }
            if method == CellMethod::Propagation {
                // The dim column splits the two cells.
                assert_eq!(r.cells.image().get(5, 10), 1);
                assert_eq!(r.cells.image().get(5, 20), 2);
                assert_eq!(r.cells.image().get(0, 0), 0);
            }
        }
    }

    #[test]
    fn degenerate_inputs() {
        let img = Image::new(5, 5, 7u16);
        let none = Labels::empty(5, 5);
        let r = segment_cells(img.view(), &none, &CellsParams::default()).unwrap();
        assert_eq!(r.cells.count(), 0);
        assert!(segment_cells(img.view(), &Labels::empty(4, 5), &CellsParams::default()).is_err());
        let e = Image::new(0, 0, 0u8);
        let r = segment_cells(e.view(), &Labels::empty(0, 0), &CellsParams::default()).unwrap();
        assert_eq!(r.cells.count(), 0);
    }
}
