//! iPSC colonies: segmentation from nuclei or transmitted light, per-colony measurements and a
//! rule-based grade.
//!
//! * [`colonies_from_nuclei`]: nuclei closer than `link_distance` (edge to edge) belong to one
//!   colony. The nuclear mask is dilated by `link_distance / 2`, eroded by the same radius
//!   (a closing, done exactly with the Euclidean distance transform), holes are filled and
//!   the components labelled; components with fewer than `min_nuclei` nuclei or less than
//!   `min_area` pixels are dropped. This is the "cluster of nuclei" definition used for
//!   colony-level analysis of stem-cell images (e.g. the CellProfiler recipe
//!   IdentifyPrimaryObjects → ExpandOrShrinkObjects → FillObjects).
//! * [`colonies_from_brightfield`]: hiPSC colonies are textured (cell borders, nucleoli)
//!   while bare substrate is flat. After a flat-field correction (the local mean over a large
//!   window), the local standard deviation over a small window is the texture; it is
//!   thresholded with Otsu inside the well, closed, hole-filled and labelled. For whole-well
//!   images the circular well is found first (Otsu on a smoothed image, largest component, a
//!   disk of equal area at its centroid), and everything outside a disk slightly inside it is
//!   ignored, so the dark surround and the bright well rim never become colonies. This follows
//!   the AICS colony pipelines (`6_well_colony_pipeline.cppipe`: edge/texture enhancement,
//!   threshold, fill, size filter, well-edge masking).
//! * [`measure_colonies`]: area, perimeter, circularity (FormFactor), solidity, convexity
//!   deficiency, edge sharpness, texture, nuclei count, density, packing, nuclear size
//!   distribution, marker intensities, distance to the well edge, touching / fused flags.
//! * [`grade_colony`]: undifferentiated / differentiating / too small, with thresholds from
//!   the culture-QC literature (see `docs/colonies.md`).

use ipscope_image::{Image, ImageView, Labels};
use serde::{Deserialize, Serialize};

use crate::ops::distance::distance_transform_edt;
use crate::ops::label::{label, Connectivity};
use crate::ops::measure::shape::measure_shape_features;
use crate::ops::morphology::fill_holes;
use crate::ops::threshold::otsu_from_histogram;

/// Settings of colony segmentation; defaults suit 10× images with nuclei ~10–15 px across.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColonyParams {
    /// Nuclei whose edges are at most this far apart (pixels) join one colony. Default 8.
    pub link_distance: f32,
    /// Colonies with fewer nuclei are dropped (nuclear segmentation). Default 5.
    pub min_nuclei: usize,
    /// Colonies smaller than this (pixels) are dropped. Default 400.
    pub min_area: u64,
    /// Transmitted light: window (pixels, odd) of the local standard deviation. Default 5.
    pub texture_window: usize,
    /// Transmitted light: window (pixels, odd) over which the local standard deviation is
    /// averaged (texture energy); 1 disables. Default 31.
    pub texture_smoothing: usize,
    /// Transmitted light: window (pixels, odd) of the flat-field local mean. Default 101.
    pub flatfield_window: usize,
    /// Transmitted light: closing radius (pixels) applied to the texture mask. Default 6.
    pub closing_radius: f32,
    /// Transmitted light: look for a circular well and ignore everything outside it.
    /// Default true.
    pub detect_well: bool,
    /// Fraction of the well radius kept inside the well (excludes the rim). Default 0.96.
    pub well_margin: f32,
    /// Correction factor on the texture threshold. Default 1.0.
    pub threshold_correction: f32,
}

impl Default for ColonyParams {
    fn default() -> Self {
        ColonyParams {
            link_distance: 8.0,
            min_nuclei: 5,
            min_area: 400,
            texture_window: 5,
            texture_smoothing: 31,
            flatfield_window: 101,
            closing_radius: 6.0,
            detect_well: true,
            well_margin: 0.96,
            threshold_correction: 1.0,
        }
    }
}

/// A circular well found in a whole-well image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Well {
    /// Centre row (pixels).
    pub center_row: f64,
    /// Centre column (pixels).
    pub center_col: f64,
    /// Radius of the disk with the well's area (pixels).
    pub radius: f64,
    /// Well area / area of its bounding circle; near 1 for a clean circular well.
    pub roundness: f64,
}

/// Colonies of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct ColonyResult {
    /// One label per colony, `1..=N` in raster order of first pixel.
    pub labels: Labels,
    /// From nuclei: `parents[n - 1]` is the colony (0 = none) of nucleus `n`. Empty otherwise.
    pub parents: Vec<u32>,
    /// The well, when one was looked for and found.
    pub well: Option<Well>,
    /// Texture threshold used (transmitted light); NaN otherwise or when there was none.
    pub threshold: f64,
}

/// Exact closing of `mask` by a disk of radius `r` (Euclidean), via two distance transforms.
/// `r <= 0` returns the mask unchanged.
pub fn binary_closing_disk(mask: ImageView<bool>, r: f32) -> Image<bool> {
    if r.is_nan() || r <= 0.0 {
        return mask.to_image();
    }
    let dilated = dilate_disk(mask, r);
    erode_disk(dilated.view(), r)
}

/// Dilation by a Euclidean disk of radius `r`: pixels within `r` of a foreground pixel.
pub fn dilate_disk(mask: ImageView<bool>, r: f32) -> Image<bool> {
    let inv = mask.map(|v| !v);
    if !inv.as_slice().iter().any(|&v| !v) {
        // No foreground at all.
        return inv.map(|_| false);
    }
    let d = distance_transform_edt(inv.view());
    d.map(|v| v <= r)
}

/// Erosion by a Euclidean disk of radius `r`; pixels outside the image count as foreground
/// (so objects touching the border are not eaten from outside).
pub fn erode_disk(mask: ImageView<bool>, r: f32) -> Image<bool> {
    let d = distance_transform_edt(mask);
    // An all-foreground image gives +inf everywhere: everything survives.
    d.map(|v| v > r)
}

/// Groups nuclei into colonies (see the module docs). `nuclei` must be sequential labels.
pub fn colonies_from_nuclei(nuclei: &Labels, params: &ColonyParams) -> ColonyResult {
    let (w, h) = (nuclei.width(), nuclei.height());
    let fg = nuclei.image().map(|l| l > 0);
    let r = (params.link_distance / 2.0).max(0.0);
    // Membership: components of the dilation (two nuclei join exactly when their gap is at
    // most 2r). Shape: the closing with holes filled, which lies inside the dilation.
    let dilated = dilate_disk(fg.view(), r);
    let linked = label(dilated.view(), Connectivity::Eight);
    let closed = erode_disk(dilated.view(), r);
    let filled = fill_holes(closed.view());
    let comps = Labels::new(
        Image::from_fn(w, h, |y, x| {
            if filled.get(y, x) {
                linked.image().get(y, x)
            } else {
                0
            }
        }),
        linked.count(),
    );
    let nc = comps.count() as usize;
    // Which component each nucleus lies in (closing is extensive: a whole nucleus lies in
    // one component), its area, and how many nuclei each component holds.
    let nn = nuclei.count() as usize;
    let mut parent_comp = vec![0u32; nn];
    let mut comp_area = vec![0u64; nc + 1];
    for (l, c) in nuclei
        .image()
        .as_slice()
        .iter()
        .zip(comps.image().as_slice())
    {
        comp_area[*c as usize] += 1;
        if *l > 0 && (*l as usize) <= nn {
            parent_comp[*l as usize - 1] = *c;
        }
    }
    let mut comp_nuclei = vec![0usize; nc + 1];
    for &c in &parent_comp {
        comp_nuclei[c as usize] += 1;
    }
    // Keep and renumber in raster order (component labels are already in raster order).
    let mut new_id = vec![0u32; nc + 1];
    let mut next = 0u32;
    for c in 1..=nc {
        if comp_nuclei[c] >= params.min_nuclei.max(1) && comp_area[c] >= params.min_area {
            next += 1;
            new_id[c] = next;
        }
    }
    let img = Image::from_vec(
        w,
        h,
        comps
            .image()
            .as_slice()
            .iter()
            .map(|&c| new_id[c as usize])
            .collect(),
    )
    .unwrap_or_else(|_| Image::new(w, h, 0));
    ColonyResult {
        labels: Labels::new(img, next),
        parents: parent_comp.iter().map(|&c| new_id[c as usize]).collect(),
        well: None,
        threshold: f64::NAN,
    }
}

/// Summed-area table with one extra row and column of zeros, in f64.
fn integral(img: ImageView<f32>, square: bool) -> Vec<f64> {
    let (w, h) = (img.width(), img.height());
    let mut s = vec![0f64; (w + 1) * (h + 1)];
    for r in 0..h {
        let row = img.row(r);
        let mut acc = 0f64;
        for c in 0..w {
            let v = f64::from(row[c]);
            let v = if v.is_finite() { v } else { 0.0 };
            acc += if square { v * v } else { v };
            s[(r + 1) * (w + 1) + c + 1] = s[r * (w + 1) + c + 1] + acc;
        }
    }
    s
}

/// Mean over a `size × size` window (clipped at the borders) for every pixel.
pub fn box_mean(img: ImageView<f32>, size: usize) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let s = integral(img, false);
    let half = size.max(1) / 2;
    Image::from_fn(w, h, |r, c| {
        let (r0, r1) = (r.saturating_sub(half), (r + half + 1).min(h));
        let (c0, c1) = (c.saturating_sub(half), (c + half + 1).min(w));
        let sum = s[r1 * (w + 1) + c1] - s[r0 * (w + 1) + c1] - s[r1 * (w + 1) + c0]
            + s[r0 * (w + 1) + c0];
        (sum / ((r1 - r0) * (c1 - c0)) as f64) as f32
    })
}

/// Standard deviation over a `size × size` window (clipped at the borders) for every pixel.
pub fn local_std(img: ImageView<f32>, size: usize) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let s = integral(img, false);
    let s2 = integral(img, true);
    let half = size.max(1) / 2;
    Image::from_fn(w, h, |r, c| {
        let (r0, r1) = (r.saturating_sub(half), (r + half + 1).min(h));
        let (c0, c1) = (c.saturating_sub(half), (c + half + 1).min(w));
        let at = |t: &[f64]| {
            t[r1 * (w + 1) + c1] - t[r0 * (w + 1) + c1] - t[r1 * (w + 1) + c0]
                + t[r0 * (w + 1) + c0]
        };
        let n = ((r1 - r0) * (c1 - c0)) as f64;
        let m = at(&s) / n;
        (at(&s2) / n - m * m).max(0.0).sqrt() as f32
    })
}

/// Otsu threshold of the values where `mask` is true (256 bins between min and max).
fn otsu_masked(img: ImageView<f32>, mask: Option<ImageView<bool>>) -> Option<f32> {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    let inside = |r: usize, c: usize| mask.is_none_or(|m| m.get(r, c));
    for r in 0..img.height() {
        for c in 0..img.width() {
            let v = img.get(r, c);
            if v.is_finite() && inside(r, c) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    // Also catches the NaN-free empty case (lo = +inf, hi = -inf).
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let nbins = 256usize;
    let mut counts = vec![0u64; nbins];
    let width = (hi - lo) / nbins as f32;
    for r in 0..img.height() {
        for c in 0..img.width() {
            let v = img.get(r, c);
            if v.is_finite() && inside(r, c) {
                let b = (((v - lo) / width) as usize).min(nbins - 1);
                counts[b] += 1;
            }
        }
    }
    let centers: Vec<f32> = (0..nbins).map(|i| lo + width * (i as f32 + 0.5)).collect();
    otsu_from_histogram(&counts, &centers)
}

/// Finds a bright circular well on a dark surround (whole-well transmitted-light images).
///
/// Returns `None` when the image has no two-level structure or the bright region fills
/// (almost) the whole image, i.e. the field lies inside a well.
pub fn detect_well(img: ImageView<f32>) -> Option<Well> {
    let (w, h) = (img.width(), img.height());
    if w < 8 || h < 8 {
        return None;
    }
    let smooth = box_mean(img, 15);
    let t = otsu_masked(smooth.view(), None)?;
    let fg = smooth.map(|v| v > t);
    let filled = fill_holes(fg.view());
    let comps = label(filled.view(), Connectivity::Eight);
    let mut area = vec![0u64; comps.count() as usize + 1];
    let mut sr = vec![0f64; comps.count() as usize + 1];
    let mut sc = vec![0f64; comps.count() as usize + 1];
    let mut rmax = vec![0f64; comps.count() as usize + 1];
    for r in 0..h {
        for c in 0..w {
            let l = comps.image().get(r, c) as usize;
            area[l] += 1;
            sr[l] += r as f64;
            sc[l] += c as f64;
        }
    }
    let best = (1..area.len()).max_by_key(|&l| (area[l], std::cmp::Reverse(l)))?;
    let a = area[best] as f64;
    if a > 0.9 * (w * h) as f64 || a < 0.05 * (w * h) as f64 {
        return None;
    }
    let (cr, cc) = (sr[best] / a, sc[best] / a);
    for r in 0..h {
        for c in 0..w {
            if comps.image().get(r, c) as usize == best {
                let d = ((r as f64 - cr).powi(2) + (c as f64 - cc).powi(2)).sqrt();
                rmax[best] = rmax[best].max(d);
            }
        }
    }
    let radius = (a / std::f64::consts::PI).sqrt();
    let roundness = a / (std::f64::consts::PI * rmax[best].max(1.0).powi(2));
    // A region far from a disk is no well (e.g. a bright band).
    if roundness < 0.6 {
        return None;
    }
    Some(Well {
        center_row: cr,
        center_col: cc,
        radius,
        roundness,
    })
}

/// Mask of the pixels within `factor × radius` of the well centre.
pub fn well_mask(w: usize, h: usize, well: &Well, factor: f32) -> Image<bool> {
    let rr = well.radius * f64::from(factor);
    Image::from_fn(w, h, |r, c| {
        (r as f64 - well.center_row).powi(2) + (c as f64 - well.center_col).powi(2) <= rr * rr
    })
}

/// Texture image used by [`colonies_from_brightfield`]: local standard deviation of the
/// image divided by its large-window local mean (flat-field correction), averaged over
/// `texture_smoothing` (a texture-energy map in the sense of Laws' texture energy).
pub fn brightfield_texture(img: ImageView<f32>, params: &ColonyParams) -> Image<f32> {
    let bg = box_mean(img, params.flatfield_window.max(3));
    let flat = Image::from_fn(img.width(), img.height(), |r, c| {
        let b = bg.get(r, c);
        if b > 0.0 {
            img.get(r, c) / b
        } else {
            0.0
        }
    });
    let sd = local_std(flat.view(), params.texture_window.max(3));
    if params.texture_smoothing > 1 {
        box_mean(sd.view(), params.texture_smoothing)
    } else {
        sd
    }
}

/// Segments colonies in a transmitted-light image (see the module docs).
pub fn colonies_from_brightfield(img: ImageView<f32>, params: &ColonyParams) -> ColonyResult {
    let (w, h) = (img.width(), img.height());
    let well = if params.detect_well {
        detect_well(img)
    } else {
        None
    };
    let inside = well.map(|wl| well_mask(w, h, &wl, params.well_margin));
    // Flat-field inside the well only: outside pixels take the well's mean so the dark
    // surround does not bleed into the local mean near the rim.
    let work = match &inside {
        Some(m) => {
            let (mut s, mut n) = (0f64, 0u64);
            for (v, &i) in img.rows().flat_map(|r| r.iter()).zip(m.as_slice().iter()) {
                if i {
                    s += f64::from(*v);
                    n += 1;
                }
            }
            let mean = if n > 0 { (s / n as f64) as f32 } else { 0.0 };
            Image::from_fn(w, h, |r, c| if m.get(r, c) { img.get(r, c) } else { mean })
        }
        None => img.to_image(),
    };
    let texture = brightfield_texture(work.view(), params);
    let t = otsu_masked(texture.view(), inside.as_ref().map(|m| m.view()));
    let Some(t) = t else {
        return ColonyResult {
            labels: Labels::empty(w, h),
            parents: vec![],
            well,
            threshold: f64::NAN,
        };
    };
    let t = t * params.threshold_correction;
    let mask = Image::from_fn(w, h, |r, c| {
        texture.get(r, c) > t && inside.as_ref().is_none_or(|m| m.get(r, c))
    });
    let closed = binary_closing_disk(mask.view(), params.closing_radius);
    let filled = fill_holes(closed.view());
    // An opening of the same radius removes thin texture (scratches, well-rim remnants).
    let opened = dilate_disk(
        erode_disk(filled.view(), params.closing_radius).view(),
        params.closing_radius,
    );
    let comps = label(opened.view(), Connectivity::Eight);
    let kept = crate::ops::label::filter_by_area(&comps, params.min_area, u64::MAX);
    let labels = crate::ops::label::relabel_sequential(&kept);
    ColonyResult {
        labels,
        parents: vec![],
        well,
        threshold: f64::from(t),
    }
}

/// Per-colony measurements (CellProfiler-style names in the table: `Colonies_AreaShape_*`,
/// `Colonies_Children_Nuclei_Count`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColonyFeatures {
    pub label: u32,
    pub area: u64,
    pub perimeter: f64,
    /// `4π·Area/Perimeter²` (CellProfiler's FormFactor); 1 for a disk.
    pub circularity: f64,
    pub solidity: f64,
    /// `(ConvexArea − Area) / ConvexArea`: area lost to concavities.
    pub convexity_deficiency: f64,
    pub center_x: f64,
    pub center_y: f64,
    /// Mean gradient magnitude on the colony's boundary pixels divided by the mean
    /// intensity of the field (dimensionless); NaN without an intensity image.
    pub edge_sharpness: f64,
    /// Mean local standard deviation (flat-fielded, `texture_window`) inside the colony; NaN
    /// without an intensity image.
    pub texture: f64,
    pub nuclei: u64,
    /// Nuclei per 10 000 px² of colony area.
    pub nuclear_density: f64,
    /// Nuclear pixels / colony pixels (packing; high for compact undifferentiated colonies).
    pub packing: f64,
    pub nuclear_area_mean: f64,
    pub nuclear_area_median: f64,
    /// Coefficient of variation of nuclear areas.
    pub nuclear_area_cv: f64,
    /// Mean intensity of each marker image over the colony (0..1 scale of the input).
    pub marker_means: Vec<f64>,
    /// Distance from the centroid to the well edge minus the colony's equivalent radius
    /// (pixels; ≤ 0 touches the edge); NaN without a well.
    pub distance_to_well_edge: f64,
    /// The colony touches the image border.
    pub touching_border: bool,
    /// Probably several colonies grown together: solidity below 0.8 and area at least
    /// twice the field's median colony area.
    pub fused: bool,
}

/// Measures colonies. `nuclei` with their `parents` (from [`colonies_from_nuclei`] or any
/// assignment) give the nuclear statistics; `intensity` (nuclear or transmitted light) gives
/// edge sharpness and texture; `markers` are averaged over each colony.
pub fn measure_colonies(
    colonies: &Labels,
    nuclei: Option<(&Labels, &[u32])>,
    intensity: Option<ImageView<f32>>,
    markers: &[ImageView<f32>],
    well: Option<&Well>,
    params: &ColonyParams,
) -> Result<Vec<ColonyFeatures>, crate::Error> {
    let (w, h) = (colonies.width(), colonies.height());
    if let Some((nl, _)) = nuclei {
        crate::ensure_shape("nuclei labels", (w, h), (nl.width(), nl.height()))?;
    }
    if let Some(i) = intensity {
        crate::ensure_shape("intensity image", (w, h), (i.width(), i.height()))?;
    }
    for m in markers {
        crate::ensure_shape("marker image", (w, h), (m.width(), m.height()))?;
    }
    let n = colonies.count() as usize;
    let shapes = measure_shape_features(colonies);
    let lab = colonies.image();
    // Nuclear statistics.
    let mut nuc_areas: Vec<Vec<u64>> = vec![Vec::new(); n + 1];
    let mut nuc_pixels = vec![0u64; n + 1];
    if let Some((nl, parents)) = nuclei {
        let areas = crate::ops::label::object_areas(nl);
        for (i, &p) in parents.iter().enumerate() {
            let a = areas.get(i + 1).copied().unwrap_or(0);
            if (p as usize) <= n && p > 0 && a > 0 {
                nuc_areas[p as usize].push(a);
            }
        }
        for (&l, &c) in nl.image().as_slice().iter().zip(lab.as_slice()) {
            if l > 0 && c > 0 && (c as usize) <= n {
                nuc_pixels[c as usize] += 1;
            }
        }
    }
    // Intensity-based: edge sharpness and texture.
    let mut edge_sum = vec![0f64; n + 1];
    let mut edge_n = vec![0u64; n + 1];
    let mut tex_sum = vec![0f64; n + 1];
    let mut field_mean = f64::NAN;
    if let Some(img) = intensity {
        let mut s = 0f64;
        for r in img.rows() {
            s += r.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        field_mean = s / (w * h).max(1) as f64;
        let texture = brightfield_texture(img, params);
        for r in 0..h {
            for c in 0..w {
                let l = lab.get(r, c) as usize;
                if l == 0 || l > n {
                    continue;
                }
                tex_sum[l] += f64::from(texture.get(r, c));
                let boundary = (r == 0 || lab.get(r - 1, c) as usize != l)
                    || (r + 1 == h || lab.get(r + 1, c) as usize != l)
                    || (c == 0 || lab.get(r, c - 1) as usize != l)
                    || (c + 1 == w || lab.get(r, c + 1) as usize != l);
                if boundary {
                    // Central differences clamped at the image border (Sobel-free, cheap).
                    let g = |rr: usize, cc: usize| f64::from(img.get(rr, cc));
                    let gy = g((r + 1).min(h - 1), c) - g(r.saturating_sub(1), c);
                    let gx = g(r, (c + 1).min(w - 1)) - g(r, c.saturating_sub(1));
                    edge_sum[l] += 0.5 * (gx * gx + gy * gy).sqrt();
                    edge_n[l] += 1;
                }
            }
        }
    }
    let mut marker_sums = vec![vec![0f64; n + 1]; markers.len()];
    for (k, m) in markers.iter().enumerate() {
        for r in 0..h {
            for (&v, &l) in m.row(r).iter().zip(lab.row(r)) {
                let l = l as usize;
                if l > 0 && l <= n {
                    marker_sums[k][l] += f64::from(v);
                }
            }
        }
    }
    let mut areas_sorted: Vec<u64> = shapes.iter().map(|s| s.area).filter(|&a| a > 0).collect();
    areas_sorted.sort_unstable();
    let median_area = if areas_sorted.is_empty() {
        0.0
    } else {
        areas_sorted[areas_sorted.len() / 2] as f64
    };
    let mut out = Vec::with_capacity(n);
    for s in &shapes {
        if s.area == 0 {
            continue;
        }
        let l = s.label as usize;
        let a = s.area as f64;
        let mut na = nuc_areas[l].clone();
        na.sort_unstable();
        let k = na.len();
        let (mean, median, cv) = if k == 0 {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            let mean = na.iter().sum::<u64>() as f64 / k as f64;
            let median = if k % 2 == 1 {
                na[k / 2] as f64
            } else {
                (na[k / 2 - 1] + na[k / 2]) as f64 / 2.0
            };
            let var = na.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / k as f64;
            (mean, median, var.sqrt() / mean)
        };
        let touching_border =
            s.bbox_min_x == 0 || s.bbox_min_y == 0 || s.bbox_max_x >= w || s.bbox_max_y >= h;
        let distance_to_well_edge = well.map_or(f64::NAN, |wl| {
            let d = ((s.center_y - wl.center_row).powi(2) + (s.center_x - wl.center_col).powi(2))
                .sqrt();
            wl.radius - d - (a / std::f64::consts::PI).sqrt()
        });
        out.push(ColonyFeatures {
            label: s.label,
            area: s.area,
            perimeter: s.perimeter,
            circularity: s.form_factor,
            solidity: s.solidity,
            convexity_deficiency: if s.convex_area > 0 {
                (s.convex_area as f64 - a).max(0.0) / s.convex_area as f64
            } else {
                f64::NAN
            },
            center_x: s.center_x,
            center_y: s.center_y,
            edge_sharpness: if edge_n[l] > 0 && field_mean > 0.0 {
                edge_sum[l] / edge_n[l] as f64 / field_mean
            } else {
                f64::NAN
            },
            texture: if intensity.is_some() {
                tex_sum[l] / a
            } else {
                f64::NAN
            },
            nuclei: k as u64,
            nuclear_density: k as f64 / a * 1e4,
            packing: if nuclei.is_some() {
                nuc_pixels[l] as f64 / a
            } else {
                f64::NAN
            },
            nuclear_area_mean: mean,
            nuclear_area_median: median,
            nuclear_area_cv: cv,
            marker_means: marker_sums.iter().map(|ms| ms[l] / a).collect(),
            distance_to_well_edge,
            touching_border,
            fused: s.solidity < 0.8 && median_area > 0.0 && a >= 2.0 * median_area,
        });
    }
    Ok(out)
}

/// A colony's grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// Compact, round, sharp-edged, tightly packed: typical undifferentiated hiPSC colony.
    Undifferentiated,
    /// Irregular, spread or loosely packed: differentiating (or poor quality).
    Differentiating,
    /// Too small to judge (debris, single cells, fragments).
    TooSmall,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Undifferentiated => "undifferentiated",
            Grade::Differentiating => "differentiating",
            Grade::TooSmall => "too_small",
        }
    }
    /// Parses the names of [`Grade::as_str`] (case-insensitive).
    pub fn parse(s: &str) -> Option<Grade> {
        match s.trim().to_ascii_lowercase().as_str() {
            "undifferentiated" => Some(Grade::Undifferentiated),
            "differentiating" | "differentiated" => Some(Grade::Differentiating),
            "too_small" | "too small" | "debris" => Some(Grade::TooSmall),
            _ => None,
        }
    }
}

/// Thresholds of the rule-based grade (see `docs/colonies.md` for their sources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradeRules {
    /// Below this area (pixels) a colony is `too_small`. Default 400.
    pub min_area: u64,
    /// Below this many nuclei (when nuclei are known) a colony is `too_small`. Default 8.
    pub min_nuclei: u64,
    /// Undifferentiated colonies are at least this circular (FormFactor). Default 0.55.
    pub min_circularity: f64,
    /// Undifferentiated colonies are at least this solid. Default 0.85.
    pub min_solidity: f64,
    /// Undifferentiated colonies have at least this nuclear packing (nuclear / colony
    /// pixels; skipped when unknown). Default 0.45.
    pub min_packing: f64,
}

impl Default for GradeRules {
    fn default() -> Self {
        GradeRules {
            min_area: 400,
            min_nuclei: 8,
            min_circularity: 0.55,
            min_solidity: 0.85,
            min_packing: 0.45,
        }
    }
}

/// The rule-based grade of one colony.
pub fn grade_colony(f: &ColonyFeatures, rules: &GradeRules) -> Grade {
    let nuclei_known = f.packing.is_finite();
    if f.area < rules.min_area || (nuclei_known && f.nuclei < rules.min_nuclei) {
        return Grade::TooSmall;
    }
    let compact = f.circularity >= rules.min_circularity && f.solidity >= rules.min_solidity;
    let packed = !nuclei_known || f.packing >= rules.min_packing;
    if compact && packed {
        Grade::Undifferentiated
    } else {
        Grade::Differentiating
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_labels(w: usize, h: usize, disks: &[(f64, f64, f64)]) -> Labels {
        let img = Image::from_fn(w, h, |r, c| {
            for (i, &(cr, cc, rad)) in disks.iter().enumerate() {
                if (r as f64 - cr).powi(2) + (c as f64 - cc).powi(2) <= rad * rad {
                    return i as u32 + 1;
                }
            }
            0
        });
        Labels::new(img, disks.len() as u32)
    }

    #[test]
    fn nuclei_within_link_distance_form_one_colony() {
        // Two clusters of 6 nuclei (radius 4, gaps 4 px) 60 px apart, and one lone nucleus.
        let mut disks = vec![];
        for k in 0..6 {
            disks.push((20.0, 10.0 + 12.0 * k as f64, 4.0));
        }
        for k in 0..6 {
            disks.push((80.0, 10.0 + 12.0 * k as f64, 4.0));
        }
        disks.push((50.0, 120.0, 4.0));
        let nuclei = disk_labels(140, 100, &disks);
        let params = ColonyParams {
            min_area: 50,
            ..ColonyParams::default()
        };
        let res = colonies_from_nuclei(&nuclei, &params);
        assert_eq!(res.labels.count(), 2);
        assert_eq!(&res.parents[..6], &[1; 6]);
        assert_eq!(&res.parents[6..12], &[2; 6]);
        assert_eq!(res.parents[12], 0, "a lone nucleus is no colony");
        // With a link distance below the gap every nucleus stays alone: no colony.
        let tight = ColonyParams {
            link_distance: 2.0,
            ..params
        };
        assert_eq!(colonies_from_nuclei(&nuclei, &tight).labels.count(), 0);
    }

    #[test]
    fn no_nuclei_and_whole_field_are_defined() {
        let empty = Labels::empty(30, 20);
        let res = colonies_from_nuclei(&empty, &ColonyParams::default());
        assert_eq!(res.labels.count(), 0);
        assert!(res.parents.is_empty());
        // One nucleus covering the whole field: one colony when allowed.
        let full = Labels::new(Image::new(30, 20, 1), 1);
        let p = ColonyParams {
            min_nuclei: 1,
            min_area: 1,
            ..ColonyParams::default()
        };
        let res = colonies_from_nuclei(&full, &p);
        assert_eq!(res.labels.count(), 1);
        assert_eq!(res.parents, vec![1]);
        let f = measure_colonies(
            &res.labels,
            Some((&full, &res.parents)),
            None,
            &[],
            None,
            &p,
        )
        .unwrap();
        assert_eq!(f.len(), 1);
        assert!(f[0].touching_border);
        assert_eq!(f[0].packing, 1.0);
    }

    #[test]
    fn closing_is_exact_disk() {
        // Two disks of radius 5 with a 4-px gap are bridged by a closing of radius 3 but not
        // of radius 1.
        let m = Image::from_fn(30, 15, |r, c| {
            let d1 = (r as f64 - 7.0).powi(2) + (c as f64 - 7.0).powi(2);
            let d2 = (r as f64 - 7.0).powi(2) + (c as f64 - 21.0).powi(2);
            d1 <= 25.0 || d2 <= 25.0
        });
        let c3 = binary_closing_disk(m.view(), 3.0);
        assert!((7..=21).all(|c| c3.get(7, c)));
        let c1 = binary_closing_disk(m.view(), 1.0);
        assert!(!c1.get(7, 14));
        // Closing is extensive.
        assert!(m
            .as_slice()
            .iter()
            .zip(c3.as_slice())
            .all(|(a, b)| !a || *b));
    }

    #[test]
    fn local_std_matches_direct_computation() {
        let img = Image::from_fn(13, 11, |r, c| ((r * 7 + c * 3) % 5) as f32);
        let s = local_std(img.view(), 5);
        for (r, c) in [(0usize, 0usize), (5, 6), (10, 12)] {
            let mut v = vec![];
            for rr in r.saturating_sub(2)..(r + 3).min(11) {
                for cc in c.saturating_sub(2)..(c + 3).min(13) {
                    v.push(f64::from(img.get(rr, cc)));
                }
            }
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            assert!((f64::from(s.get(r, c)) - sd).abs() < 1e-5);
        }
    }

    #[test]
    fn brightfield_well_and_textured_colony() {
        // A bright disk well on black; inside, a textured blob (checkerboard) on flat grey.
        let (w, h) = (200, 200);
        let img = Image::from_fn(w, h, |r, c| {
            let d = ((r as f64 - 100.0).powi(2) + (c as f64 - 100.0).powi(2)).sqrt();
            if d > 90.0 {
                0.0
            } else if ((r as f64 - 90.0).powi(2) + (c as f64 - 110.0).powi(2)).sqrt() < 25.0 {
                if (r + c) % 2 == 0 {
                    0.4
                } else {
                    0.7
                }
            } else {
                0.55
            }
        });
        let params = ColonyParams {
            flatfield_window: 41,
            texture_window: 9,
            texture_smoothing: 1,
            ..ColonyParams::default()
        };
        let res = colonies_from_brightfield(img.view(), &params);
        let well = res.well.expect("well found");
        assert!((well.center_row - 100.0).abs() < 2.0 && (well.center_col - 100.0).abs() < 2.0);
        assert!((well.radius - 90.0).abs() < 3.0);
        assert_eq!(res.labels.count(), 1, "one colony, no rim");
        let f = measure_colonies(
            &res.labels,
            None,
            Some(img.view()),
            &[],
            Some(&well),
            &params,
        )
        .unwrap();
        let a = f[0].area as f64;
        // The texture window reaches a few pixels past the colony edge, so the mask is
        // slightly larger than the textured disk (radius ~27 instead of 25).
        let truth = std::f64::consts::PI * 25.0 * 25.0;
        assert!(
            a > truth && (a - truth) / truth < 0.25,
            "area {a} vs {truth}"
        );
        assert!(f[0].distance_to_well_edge > 0.0);
        assert!(!f[0].touching_border);
        // A flat well holds no colony.
        let flat = Image::from_fn(w, h, |r, c| {
            let d = ((r as f64 - 100.0).powi(2) + (c as f64 - 100.0).powi(2)).sqrt();
            if d > 90.0 {
                0.0
            } else {
                0.55
            }
        });
        let res = colonies_from_brightfield(flat.view(), &params);
        assert!(res.well.is_some());
        assert_eq!(res.labels.count(), 0);
    }

    #[test]
    fn grades_follow_rules() {
        let base = ColonyFeatures {
            label: 1,
            area: 5000,
            perimeter: 260.0,
            circularity: 0.9,
            solidity: 0.95,
            convexity_deficiency: 0.05,
            center_x: 0.0,
            center_y: 0.0,
            edge_sharpness: f64::NAN,
            texture: f64::NAN,
            nuclei: 40,
            nuclear_density: 80.0,
            packing: 0.6,
            nuclear_area_mean: 75.0,
            nuclear_area_median: 75.0,
            nuclear_area_cv: 0.2,
            marker_means: vec![],
            distance_to_well_edge: f64::NAN,
            touching_border: false,
            fused: false,
        };
        let r = GradeRules::default();
        assert_eq!(grade_colony(&base, &r), Grade::Undifferentiated);
        let loose = ColonyFeatures {
            packing: 0.2,
            ..base.clone()
        };
        assert_eq!(grade_colony(&loose, &r), Grade::Differentiating);
        let ragged = ColonyFeatures {
            circularity: 0.3,
            ..base.clone()
        };
        assert_eq!(grade_colony(&ragged, &r), Grade::Differentiating);
        let tiny = ColonyFeatures { area: 100, ..base };
        assert_eq!(grade_colony(&tiny, &r), Grade::TooSmall);
        assert_eq!(
            Grade::parse("Undifferentiated"),
            Some(Grade::Undifferentiated)
        );
    }
}
