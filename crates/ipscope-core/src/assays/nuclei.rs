//! Nuclei segmentation from a DNA stain (Hoechst/DAPI), after CellProfiler's
//! `IdentifyPrimaryObjects` with its usual settings: a global threshold, hole filling,
//! intensity- or shape-based declumping, size filter.
//!
//! Steps, each an [`crate::ops`] function:
//! 1. scale to CellProfiler's 0..1 range (divide by [`Pixel::MAX`]; f32 as stored);
//! 2. Gaussian smoothing (`smoothing_sigma`);
//! 3. background subtraction: the grey opening with a (2r+1)² square
//!    (`background_radius`) is subtracted (a top-hat); the field threshold of the result
//!    (`threshold_method`, default Li as `skimage.filters.threshold_li`), times
//!    `threshold_correction`, clamped to `[threshold_min, threshold_max]`; then each
//!    component above it is cut again at `object_contrast` of its own contrast
//!    ([`NucleiParams::object_contrast`]); foreground = smoothed `>` its threshold;
//!    after declumping (step 5) each object grows back out to a lower fraction of that
//!    contrast, by at most one pixel ([`NucleiParams::outline_contrast`]);
//! 4. fill holes (`fill_holes`), 8-connected components (as CellProfiler's
//!    `scipy.ndimage.label(binary, ones((3, 3)))`);
//! 5. declumping (`declump`), by intensity (default, as CellProfiler): the image smoothed with
//!    σ = min_diameter / 3.5; seeds = connected pixels equal to the maximum of their
//!    (2·seed_distance+1)² neighbourhood inside the foreground (a plateau is one seed);
//!    watershed of the inverted smoothed image inside the foreground. Or by shape:
//!    Euclidean distance transform of the foreground,
//!    smoothed with σ = 0.5 px so that pixelised ridges get one summit, seeds =
//!    `peak_local_max` within each component with `min_seed_distance`, then a watershed of
//!    the negated smoothed distance inside the foreground. A component that yields no seed
//!    keeps its highest pixel as seed, so declumping never loses an object;
//!    With `auto_scale` (default), the declumping scale and the size range of step 6 come
//!    from the field's estimated nucleus diameter ([`estimate_diameter`]);
//! 6. drop objects whose area lies outside `[π (min_diameter/2)², π (max_diameter/2)²]`
//!    (CellProfiler's "discard objects outside the diameter range"), optionally those
//!    touching the border, and renumber `1..=N` in raster order of first pixel.
//!
//! Differences from CellProfiler, on purpose: Otsu runs on the smoothed image (CellProfiler
//! thresholds the raw image and compares the smoothed one), and the distance map is smoothed
//! instead of jittered with seeded noise before the maxima search.

use ipscope_image::{Image, ImageView, Labels, Pixel};
use serde::{Deserialize, Serialize};

use crate::backend::{
    Backend, CpuBackend, FieldView, FlatThreshold, FlattenParams, KeptImage, OtsuParams,
};
use crate::ops::filter::{gaussian_kernel, GaussianCrops, GAUSSIAN_TRUNCATE};
use crate::ops::label::{clear_border, find, label, relabel_sequential, Connectivity};
#[cfg(test)]
use crate::ops::peaks::peak_local_max;
use crate::ops::peaks::{object_peaks, PeakScratch};
use crate::ops::scan::next_other_bool;
use crate::ops::threshold;
use crate::ops::watershed::{watershed, watershed_sparse};
use crate::Error;

/// Smoothing of the distance map before the seed search, in pixels. Without it, the flat
/// ridges of elongated nuclei give several seeds each; with more, a small nucleus touching
/// a large one along a broad contact loses its own maximum (both measured on synthetic
/// fields, `tests/algorithms/nuclei_counts.rs`).
const DISTANCE_SIGMA: f32 = 0.5;

/// Automatic scale: the declumping diameter as a fraction of the estimated diameter.
pub const AUTO_DECLUMP_FRACTION: f32 = 0.6;
/// Automatic scale: objects below this fraction of the estimated diameter are dropped.
pub const AUTO_MIN_FRACTION: f32 = 0.3;
/// Automatic scale: objects up to this multiple of the estimated diameter are kept.
pub const AUTO_MAX_FACTOR: f32 = 3.0;
/// A component counts as one round object for the scale estimate when its area is at most
/// this multiple of its inscribed disc (π r², r = its largest distance to the background):
/// an ellipse up to this aspect ratio passes, two touching discs (ratio ≈ 2) do not.
const ROUND_AREA_RATIO: f64 = 1.6;
/// Fewest round components a field needs for a scale estimate.
const MIN_ROUND_OBJECTS: usize = 3;

/// The typical nucleus diameter of a field, in pixels: twice the area-weighted median
/// inscribed radius (largest Euclidean distance to the background) of the components that
/// look like single round objects (area ≤ [`ROUND_AREA_RATIO`] × π r², area ≥ `min_area`
/// and ≥ 20 px). Clumps fail the roundness test, so they do not inflate the estimate;
/// weighting by area keeps small debris from deflating it. `None` when fewer than
/// [`MIN_ROUND_OBJECTS`] components qualify. `dist` is the distance transform of the
/// foreground whose components are `components`.
pub fn estimate_diameter(components: &Labels, dist: &Image<f32>, min_area: u64) -> Option<f32> {
    let n = components.count() as usize;
    let mut area = vec![0u64; n + 1];
    let mut rmax = vec![0f32; n + 1];
    for (&l, &d) in components.image().as_slice().iter().zip(dist.as_slice()) {
        let l = l as usize;
        if l != 0 {
            area[l] += 1;
            if d.is_finite() && d > rmax[l] {
                rmax[l] = d;
            }
        }
    }
    let min_area = min_area.max(20);
    let mut round: Vec<(f32, u64)> = (1..=n)
        .filter(|&l| {
            let r = f64::from(rmax[l]);
            area[l] >= min_area
                && r > 0.0
                && area[l] as f64 <= ROUND_AREA_RATIO * std::f64::consts::PI * r * r
        })
        .map(|l| (rmax[l], area[l]))
        .collect();
    if round.len() < MIN_ROUND_OBJECTS {
        return None;
    }
    round.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let total: u64 = round.iter().map(|x| x.1).sum();
    let mut acc = 0u64;
    for &(r, a) in &round {
        acc += a;
        if 2 * acc >= total {
            return Some(2.0 * r);
        }
    }
    None
}

/// How [`segment_nuclei`] splits touching nuclei (CellProfiler's "method to distinguish
/// clumped objects" and "method to draw dividing lines").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclumpMethod {
    /// Bright centres: nuclei are brighter in the middle than where they touch.
    Intensity,
    /// Both: seeds are the significant maxima (relative depth `seed_min_depth`) of the
    /// smoothed intensity above the threshold times the square root of the distance to the
    /// background; the watershed floods that surface. The default.
    Hybrid,
    /// Round shapes: necks in the foreground outline separate nuclei.
    Shape,
}

/// The thresholding method of [`segment_nuclei`] (CellProfiler's "thresholding method").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMethod {
    /// Two-class Otsu (`skimage.filters.threshold_otsu`, 256 bins).
    #[default]
    Otsu,
    /// Three-class Otsu (`threshold_multiotsu(classes=3)`); the middle class is foreground
    /// (the lower of the two thresholds).
    Otsu3Foreground,
    /// Three-class Otsu; the middle class is background (the upper threshold).
    Otsu3Background,
    /// Minimum cross-entropy (`skimage.filters.threshold_li`).
    Li,
    /// Triangle (`skimage.filters.threshold_triangle`, 256 bins).
    Triangle,
    /// CellProfiler's robust background: mean + 2 sd of the pixels without the 5 % darkest
    /// and brightest.
    RobustBackground,
    /// Window-based local threshold (`skimage.filters.threshold_local`, Gaussian method)
    /// with `local_block_size` and `local_offset`; the correction factor and bounds apply
    /// per pixel.
    Local,
}

/// Settings of [`segment_nuclei`]; the defaults suit nuclei 8–80 px across.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NucleiParams {
    /// Gaussian σ (pixels) applied before thresholding; 0 disables smoothing. Default 1.0.
    pub smoothing_sigma: f32,
    /// How the field threshold is found. Default `li` (before 0.2: `otsu`).
    pub threshold_method: ThresholdMethod,
    /// Threshold the natural logarithm of the intensities and map the threshold back
    /// (CellProfiler's "log transform before thresholding"); pixels ≤ 0 take no part.
    /// Default false.
    pub threshold_log: bool,
    /// Window (odd, pixels) of the `local` method. Default 51.
    pub local_block_size: usize,
    /// Offset subtracted from the local threshold (0..1 scale; on log values when
    /// `threshold_log`). Default 0.
    pub local_offset: f32,
    /// Factor applied to the threshold (CellProfiler's "threshold correction factor").
    /// Default 1.0.
    pub threshold_correction: f32,
    /// Lower bound of the corrected threshold, on the 0..1 scale. Default 0.0.
    pub threshold_min: f32,
    /// Upper bound of the corrected threshold, on the 0..1 scale. Default 1.0.
    pub threshold_max: f32,
    /// Smallest accepted equivalent diameter in pixels: objects with area below
    /// π (d/2)² are dropped. It also sets the declumping scale (seed spacing, smoothing).
    /// Default 6.
    pub min_diameter: f32,
    /// Largest accepted equivalent diameter in pixels: objects with area above π (d/2)²
    /// are dropped. Default 80.
    pub max_diameter: f32,
    /// Fill holes inside foreground objects. Default true.
    pub fill_holes: bool,
    /// Split touching nuclei. Default true.
    pub declump: bool,
    /// How to split touching nuclei: `hybrid` (see [`DeclumpMethod::Hybrid`]), `intensity` (CellProfiler's default: seeds at maxima of
    /// the image smoothed with σ = min_diameter / 3.5, watershed on the inverted smoothed
    /// intensity) or `shape` (seeds at maxima of the distance transform, watershed on the
    /// inverted distance). Default `hybrid` (before 0.2: `intensity`).
    pub declump_method: DeclumpMethod,
    /// Hybrid declumping: the smallest dip between two maxima of the seed surface, as a
    /// fraction of the lower maximum's height, that keeps them as two seeds. Default 0.03.
    pub seed_min_depth: f32,
    /// Minimum distance (pixels, Chebyshev) between two seeds of the declumping;
    /// `None` = `round(min_diameter / 2)`, at least 1. Default `None`.
    pub min_seed_distance: Option<usize>,
    /// Drop objects touching the image border. Default false.
    pub exclude_border: bool,
    /// Estimate the typical nucleus diameter of each field (see [`estimate_diameter`]) and
    /// take the declumping scale and the size range from it: hybrid and intensity declumping as if
    /// `min_diameter` were the larger of `min_diameter` and
    /// [`AUTO_DECLUMP_FRACTION`] × the estimate, objects smaller than
    /// [`AUTO_MIN_FRACTION`] × the estimate dropped and `max_diameter` raised to
    /// [`AUTO_MAX_FACTOR`] × the estimate where that is larger. A field without enough
    /// round objects keeps the fixed settings. Default true.
    pub auto_scale: bool,
    /// Radius (pixels) of the square grey opening subtracted from the smoothed image before
    /// thresholding (a top-hat: uneven background and glow wider than 2r+1 px go, nuclei
    /// stay); the declumping sees the same subtraction. 0 disables. Default 50.
    pub background_radius: f32,
    /// Per-object threshold: every connected component above the field threshold is cut
    /// again at this fraction of its own contrast, background + f · (its 90th percentile −
    /// background), never below the field threshold (background = median of the pixels at
    /// or below the field threshold). Dim and bright nuclei of one field each get an outline
    /// at the same fraction of their own brightness. Not applied to the `local` method.
    /// 0 disables. Default 0.4.
    pub object_contrast: f32,
    /// Outline level of the per-object rule: seeds and split lines come from the
    /// `object_contrast` level; then each declumped object grows (a watershed on the smoothed
    /// image) into the pixels of its component above background + this fraction of the
    /// component's contrast (never below the field threshold), at most
    /// `outline_max_growth` px beyond its declumped mask. CellProfiler's outlines (one
    /// global threshold) lie near a quarter of each nucleus's contrast; the growth limit
    /// keeps glow between crowded nuclei from being taken for nucleus. Only used when
    /// below `object_contrast`; 0 disables. Default 0.26.
    pub outline_contrast: f32,
    /// Largest growth (pixels, Euclidean distance to the declumped object) of the
    /// outline step: 1 adds at most the 4-connected ring. 0 (or NaN) disables the outline
    /// step; infinity removes the limit. Default 1.
    pub outline_max_growth: f32,
}

impl Default for NucleiParams {
    fn default() -> Self {
        NucleiParams {
            smoothing_sigma: 1.0,
            threshold_method: ThresholdMethod::Li,
            threshold_log: false,
            local_block_size: 51,
            local_offset: 0.0,
            threshold_correction: 1.0,
            threshold_min: 0.0,
            threshold_max: 1.0,
            min_diameter: 6.0,
            max_diameter: 80.0,
            fill_holes: true,
            declump: true,
            declump_method: DeclumpMethod::Hybrid,
            seed_min_depth: 0.03,
            min_seed_distance: None,
            exclude_border: false,
            auto_scale: true,
            background_radius: 50.0,
            object_contrast: 0.4,
            outline_contrast: 0.26,
            outline_max_growth: 1.0,
        }
    }
}

impl NucleiParams {
    /// The seed spacing actually used by the declumping.
    pub fn seed_distance(&self) -> usize {
        self.min_seed_distance.unwrap_or_else(|| {
            let d = (self.min_diameter / 2.0).round();
            if d.is_finite() && d >= 1.0 {
                d as usize
            } else {
                1
            }
        })
    }

    /// The plain Otsu recipe: Otsu's global threshold of the smoothed field, holes filled,
    /// the size filter, and nothing else (no background subtraction, per-object rule,
    /// declumping or scaling); the other settings are the defaults. A GPU backend runs it
    /// with every intermediate image resident ([`Backend::segment_otsu`]).
    pub fn plain_otsu() -> NucleiParams {
        NucleiParams {
            threshold_method: ThresholdMethod::Otsu,
            background_radius: 0.0,
            object_contrast: 0.0,
            declump: false,
            auto_scale: false,
            ..NucleiParams::default()
        }
    }

    /// Whether these settings are Otsu's global threshold of the smoothed field as it is
    /// (no logarithm, correction or bounds that could move it; no background subtraction,
    /// per-object thresholds, declumping or scaling), holes filled: exactly
    /// [`Backend::segment_otsu`]'s steps, then the size filter and the border rule.
    fn is_plain_otsu(&self) -> bool {
        self.threshold_method == ThresholdMethod::Otsu
            && !self.threshold_log
            && self.threshold_correction == 1.0
            // Otsu's threshold of pixels on 0..=1 lies within; these bounds never move it.
            && self.threshold_min <= 0.0
            && self.threshold_max >= 1.0
            // As `background_radius` and the per-object rule skip themselves (NaN too).
            && (self.background_radius.is_nan() || self.background_radius < 1.0)
            && (self.object_contrast.is_nan() || self.object_contrast <= 0.0)
            && !self.declump
            && !self.auto_scale
            && self.fill_holes
    }

    /// The accepted area range in pixels, `[ceil(π r_min²), floor(π r_max²)]`.
    pub fn area_range(&self) -> (u64, u64) {
        let area = |d: f32| std::f64::consts::PI * (f64::from(d) / 2.0).powi(2);
        let lo = area(self.min_diameter);
        let hi = area(self.max_diameter);
        // Non-finite or negative diameters disable that bound.
        let lo = if lo.is_finite() { lo.ceil() as u64 } else { 0 };
        let hi = if hi.is_finite() {
            hi.floor() as u64
        } else {
            u64::MAX
        };
        (lo, hi)
    }
}

/// Nuclei found in one field.
#[derive(Debug, Clone, PartialEq)]
pub struct NucleiResult {
    /// One label per nucleus, `1..=N` in raster order of first pixel.
    pub labels: Labels,
    /// The threshold applied, on CellProfiler's 0..1 scale (after correction and clamping);
    /// NaN when the image has no threshold (empty, constant or without finite pixels).
    pub threshold: f64,
}

/// Segments nuclei in a DNA-stain image (see the module docs for the steps), on the CPU.
///
/// Never panics on pixel content or size: empty, constant or NaN images and 1×N images
/// give zero objects.
pub fn segment_nuclei<T: Pixel>(dna: ImageView<T>, params: &NucleiParams) -> NucleiResult {
    let (w, h) = (dna.width(), dna.height());
    match segment_nuclei_with(&CpuBackend, dna, params) {
        Ok(r) => r,
        // Unreachable: the CPU backend never fails.
        Err(_) => NucleiResult {
            labels: Labels::empty(w, h),
            threshold: f64::NAN,
        },
    }
}

/// [`segment_nuclei`] with its hot stages on `backend`: the first Gaussian, the histogram
/// and Otsu's threshold (or Li's), hole filling, the 8-connected labelling, the distance
/// transform, the declumpings' smoothing (of the image, or of the distance map for the
/// shape method) and the size filter. The declumping's seeds and watershed and the other
/// threshold methods run on the CPU. With [`CpuBackend`] the result is
/// [`segment_nuclei`]'s; another backend gives it within that backend's stated tolerances.
///
/// A device failure (lost, out of memory, an image too large for it) is
/// [`Error::Backend`], never a panic.
pub fn segment_nuclei_with<T: Pixel>(
    backend: &dyn Backend,
    dna: ImageView<T>,
    params: &NucleiParams,
) -> Result<NucleiResult, Error> {
    let (w, h) = (dna.width(), dna.height());
    let none = |threshold: f64| NucleiResult {
        labels: Labels::empty(w, h),
        threshold,
    };
    if w == 0 || h == 0 {
        return Ok(none(f64::NAN));
    }
    // A plain global-Otsu recipe of a 16-bit field is one backend call, which a device runs
    // with every intermediate image resident: the steps below with none of their options.
    if let Some(dna16) = T::as_u16(dna).filter(|_| params.is_plain_otsu()) {
        let (min_area, max_area) = params.area_range();
        let o = backend.segment_otsu(
            FieldView::UnitU16(dna16),
            &OtsuParams {
                sigma: params.smoothing_sigma,
                nbins: 256,
                min_area,
                max_area,
                shapes: false,
            },
        )?;
        let Some(t) = o.threshold else {
            return Ok(none(f64::NAN));
        };
        let mut kept = o.labels;
        if params.exclude_border {
            kept = relabel_sequential(&clear_border(&kept));
        }
        return Ok(NucleiResult {
            labels: kept,
            threshold: f64::from(t),
        });
    }
    // The unit-scaled pixels are needed past the smoothing only by the declumpings that
    // smooth them again: otherwise a 16-bit field is smoothed without making them, and any
    // scaled copy is freed before the largest buffers (components, distance map) are made.
    let by_intensity = params.declump && params.declump_method != DeclumpMethod::Shape;
    // Otsu's and Li's threshold of the flattened field are taken in the same call (a device
    // keeps the field on it); the other methods here.
    let on_backend = match (params.threshold_method, params.threshold_log) {
        (ThresholdMethod::Otsu, false) => FlatThreshold::Otsu,
        (ThresholdMethod::Li, false) => FlatThreshold::Li,
        _ => FlatThreshold::None,
    };
    let flat_params = FlattenParams {
        sigma: params.smoothing_sigma,
        radius: background_radius(params.background_radius, w, h),
        keep_field: by_intensity,
        // Only the whole field's blur reads it then: a device keeps it for that.
        keep_on_backend: !backend.declump_smoothing_in_boxes(),
        threshold: on_backend,
    };
    let flat = match T::as_u16(dna) {
        Some(dna16) => backend.smooth_and_flatten(FieldView::UnitU16(dna16), &flat_params)?,
        None => {
            let scaled = unit_scale(dna);
            backend.smooth_and_flatten(FieldView::F32(scaled.view()), &flat_params)?
        }
    };
    let scaled = match (flat.field, flat.kept) {
        (Some(f), _) => Some(Scaled::Host(f)),
        (None, Some(k)) => Some(Scaled::Kept(k)),
        (None, None) => None,
    };
    let smoothed = flat.smoothed;
    let threshold = match on_backend {
        FlatThreshold::None => threshold_field_with(backend, smoothed.view(), params)?,
        _ => flat.threshold.map(|t| FieldThreshold {
            value: correct(f64::from(t), params),
            local: None,
        }),
    };
    let Some(threshold) = threshold else {
        return Ok(none(f64::NAN));
    };
    let t = threshold.value;
    if t.is_nan() {
        return Ok(none(t));
    }
    let mut fg = match &threshold.local {
        Some(local) => {
            let mut fg = Image::new(w, h, false);
            for ((f, &v), &l) in fg
                .as_mut_slice()
                .iter_mut()
                .zip(smoothed.as_slice())
                .zip(local.as_slice())
            {
                *f = v > l;
            }
            fg
        }
        None => smoothed.map(|v| f64::from(v) > t),
    };
    // The per-object rule's components and their thresholds (None: the field threshold
    // everywhere).
    let mut per_object: Option<(Labels, Vec<f32>)> = None;
    // The outline mask of the per-object rule (None: the declumped objects as they are).
    let mut outline = None;
    if threshold.local.is_none() && params.object_contrast > 0.0 {
        let low = backend.label(fg.view(), Connectivity::Eight)?;
        // The background level and each component's quantile, once for both fractions.
        let levels = ObjectLevels::new(&smoothed, &low);
        let per = levels.thresholds(t as f32, params.object_contrast);
        let lab = low.image().as_slice();
        if params.outline_contrast > 0.0
            && params.outline_contrast < params.object_contrast
            && params.outline_max_growth > 0.0
        {
            let per_o = levels.thresholds(t as f32, params.outline_contrast);
            let mut o = Image::new(w, h, false);
            for (((p, &v), &l), &f) in o
                .as_mut_slice()
                .iter_mut()
                .zip(smoothed.as_slice())
                .zip(lab)
                .zip(fg.as_slice())
            {
                *p = f && v > per_o[l as usize];
            }
            outline = Some(o);
        }
        for ((f, &v), &l) in fg
            .as_mut_slice()
            .iter_mut()
            .zip(smoothed.as_slice())
            .zip(lab)
        {
            *f = *f && v > per[l as usize];
        }
        per_object = Some((low, per));
    }
    let tmap = per_object
        .as_ref()
        .map(|(low, per)| PixelThresholds::new(low.image(), per));
    // Past the threshold masks only the outline growth reads the smoothed pixels.
    let smoothed = outline.is_some().then_some(smoothed);
    // Hole filling, components and distance map in one backend call (a GPU keeps the mask
    // on the device between them); the distance map only when some object needs it.
    let wants_dist =
        params.auto_scale || (params.declump && params.declump_method != DeclumpMethod::Intensity);
    let front =
        backend.fill_label_distance(fg, params.fill_holes, Connectivity::Eight, wants_dist)?;
    let fg = front.mask;
    let components = front.labels;
    let dist = front.distance.unwrap_or_else(|| Image::new(0, 0, 0f32));
    // The settings of this field: the fixed ones, or those scaled to its nuclei.
    let mut eff = params.clone();
    let mut size = params.clone();
    if params.auto_scale && components.count() > 0 {
        if let Some(d) = estimate_diameter(&components, &dist, params.area_range().0) {
            // The larger of the fixed and the scaled value (a NaN setting stays as it is).
            let f = |x: f32, y: f32| if x.is_finite() && y > x { y } else { x };
            eff.min_diameter = f(params.min_diameter, AUTO_DECLUMP_FRACTION * d);
            size.min_diameter = f(params.min_diameter, AUTO_MIN_FRACTION * d);
            size.max_diameter = f(params.max_diameter, AUTO_MAX_FACTOR * d);
        }
    }
    // `scaled` is kept exactly when the method smooths it (`by_intensity`).
    let method = params.declump_method;
    let objects = match scaled.as_ref() {
        _ if !params.declump || components.count() == 0 => components,
        // Shape declumping keeps its fixed seed spacing: necks, not the scale, separate
        // nuclei there, and a wider spacing loses small nuclei beside large ones.
        _ if method == DeclumpMethod::Shape => declump(components, &dist, params.seed_distance()),
        Some(scaled) if method == DeclumpMethod::Intensity => declump_by_intensity(
            declump_smoothing(backend, scaled, eff.min_diameter)?,
            &fg,
            &components,
            eff.seed_distance(),
        ),
        Some(scaled) => declump_by_dynamics(
            match scaled {
                Scaled::Host(f) if backend.declump_smoothing_in_boxes() => {
                    DeclumpSmoothing::InBoxes(f, declump_sigma(eff.min_diameter))
                }
                // The hybrid declumping reads the smoothing at the components' pixels only
                // (the seeds, the surface and the flood all stay inside them).
                Scaled::Kept(k) => DeclumpSmoothing::Field(backend.gaussian_blur_kept_within(
                    k,
                    declump_sigma(eff.min_diameter),
                    fg.view(),
                )?),
                Scaled::Host(_) => {
                    DeclumpSmoothing::Field(declump_smoothing(backend, scaled, eff.min_diameter)?)
                }
            },
            components,
            &dist,
            (t as f32, tmap),
            params.seed_min_depth,
        ),
        None => components,
    };
    // Not needed past the declumping: freed before the outline growth's buffers are made.
    // The distance map (the transform of `fg`) goes back as this thread's zeroed buffer for
    // the next field's.
    crate::ops::distance::recycle_distance_map(dist, fg.view());
    drop((scaled, fg));
    let objects = match (outline, smoothed) {
        (Some(o), Some(smoothed)) if objects.count() > 0 => {
            // The last use of `smoothed`: the growth negates it in place.
            grow_outlines(backend, smoothed, objects, o, params.outline_max_growth)?
        }
        _ => objects,
    };
    let (lo, hi) = size.area_range();
    let mut kept = backend.filter_by_area_owned(objects, lo, hi)?;
    if params.exclude_border {
        kept = relabel_sequential(&clear_border(&kept));
    }
    Ok(NucleiResult {
        labels: kept,
        threshold: t,
    })
}

/// The pixels scaled onto 0..=1 as f32: `(v / T::MAX) as f32`, the quotient in f64. For 8-
/// and 16-bit pixels a multiplication by the reciprocal gives the same f32 for every value
/// (test `unit_scale_by_the_reciprocal_equals_the_division`, all 65,536), without a division
/// per pixel.
fn unit_scale<T: Pixel>(dna: ImageView<T>) -> Image<f32> {
    let scale = T::MAX;
    match T::SAMPLE {
        ipscope_image::SampleType::U8 | ipscope_image::SampleType::U16 => {
            let inv = 1.0 / scale;
            dna.map(|v| (v.to_f64() * inv) as f32)
        }
        _ => dna.map(|v| (v.to_f64() / scale) as f32),
    }
}

/// Grows `objects` by a watershed of the negated `smoothed` image into `outline`, at most
/// `max_growth` px (Euclidean distance to the nearest object pixel) beyond them; an infinite
/// `max_growth` sets no limit.
///
/// Only the object pixels 4-adjacent to a pixel they may grow into are flooded from (the
/// others have no unlabelled neighbour to reach), which gives the labels of a watershed
/// from the whole objects at the cost of the ring.
fn grow_outlines(
    backend: &dyn Backend,
    smoothed: Image<f32>,
    objects: Labels,
    outline: Image<bool>,
    max_growth: f32,
) -> Result<Labels, Error> {
    // A limit of 1 px (the default; up to just below √2, as the transform's f32 distances
    // compare): the pixels an object may take are its 4-neighbours, found in one pass over
    // the outline's runs instead of whole-field masks and a distance test.
    if (1.0..2f64.sqrt() as f32).contains(&max_growth) {
        return Ok(grow_into_ring(smoothed, objects, &outline));
    }
    grow_outlines_whole_field(backend, smoothed, objects, outline, max_growth)
}

/// [`grow_outlines`] by one ring: the outline's pixels outside every object that share an
/// edge with one, found over the outline's runs.
fn grow_into_ring(smoothed: Image<f32>, objects: Labels, outline: &Image<bool>) -> Labels {
    let (w, h) = (objects.width(), objects.height());
    let lab = objects.image().as_slice();
    let o = outline.as_slice();
    let mut ring: Vec<usize> = Vec::new();
    for r in 0..h {
        let orow = &o[r * w..(r + 1) * w];
        let mut c = 0;
        loop {
            let s = next_other_bool(orow, c, false);
            if s >= w {
                break;
            }
            let e = next_other_bool(orow, s, true);
            for c in s..e {
                let i = r * w + c;
                if lab[i] == 0 && neighbours4(i, w, h).any(|n| lab[n] != 0) {
                    ring.push(i);
                }
            }
            c = e;
        }
    }
    flood_from_ring(smoothed, objects, ring)
}

/// [`grow_outlines`] for any limit: the grow mask and the distance test over the whole
/// field.
fn grow_outlines_whole_field(
    backend: &dyn Backend,
    smoothed: Image<f32>,
    objects: Labels,
    outline: Image<bool>,
    max_growth: f32,
) -> Result<Labels, Error> {
    let lab = objects.image().as_slice();
    // The pixels an object may take: in the outline, outside every object, near enough.
    let mut grow: Vec<bool> = outline
        .as_slice()
        .iter()
        .zip(lab)
        .map(|(&o, &l)| o && l == 0)
        .collect();
    if max_growth.is_finite() {
        let outside = objects.image().map(|l| l == 0);
        // The default limit (1 px) is a neighbourhood test: `within_distance` answers it
        // without the transform; a long reach still takes the backend's transform.
        let near = if max_growth <= 16.0 {
            crate::ops::distance::within_distance(outside.view(), max_growth)
        } else {
            backend
                .distance_transform_edt(outside.view())?
                .map(|d| d <= max_growth)
        };
        for (g, &n) in grow.iter_mut().zip(near.as_slice()) {
            *g = *g && n;
        }
    }
    let ring = grow
        .iter()
        .enumerate()
        .filter_map(|(i, &g)| g.then_some(i))
        .collect();
    Ok(flood_from_ring(smoothed, objects, ring))
}

/// The 4-neighbours of pixel `i` of a `w × h` image, in the order up, left, right, down.
fn neighbours4(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (r, c) = (i / w, i % w);
    [
        (r > 0).then(|| i - w),
        (c > 0).then(|| i - 1),
        (c + 1 < w).then_some(i + 1),
        (r + 1 < h).then_some(i + w),
    ]
    .into_iter()
    .flatten()
}

/// The outline growth's flood: the `ring` pixels (outside every object) are flooded, by a
/// watershed of the negated `smoothed` image, from the object pixels that share an edge with
/// them (the others have no unlabelled neighbour to reach, so this gives the labels of a
/// watershed from the whole objects at the cost of the ring). Only the flooded pixels'
/// elevations are negated (the watershed reads no other) and only the ring's labels are
/// copied back.
///
/// The flood runs on the ring and its markers alone ([`watershed_sparse`]: arrays the size of
/// the ring instead of the field's); only when two markers of one part of it tie with
/// different labels does it run over the field ([`flood_ring_in_field`]), where scikit-image's
/// heap decides.
fn flood_from_ring(smoothed: Image<f32>, objects: Labels, ring: Vec<usize>) -> Labels {
    if ring.is_empty() {
        return objects;
    }
    let (w, h) = (objects.width(), objects.height());
    let lab = objects.image().as_slice();
    let sm = smoothed.as_slice();
    // The flood's mask, in raster order: the ring and the object pixels that share an edge
    // with it (its markers), marked in a bit per pixel and read back word by word.
    let mut bits = vec![0u64; (w * h).div_ceil(64)];
    for &i in &ring {
        bits[i / 64] |= 1 << (i % 64);
        for n in neighbours4(i, w, h).filter(|&n| lab[n] != 0) {
            bits[n / 64] |= 1 << (n % 64);
        }
    }
    let mut pixels = Vec::with_capacity(2 * ring.len());
    for (k, &word) in bits.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            pixels.push(k * 64 + rest.trailing_zeros() as usize);
            rest &= rest - 1;
        }
    }
    drop(bits);
    let elev: Vec<f32> = pixels.iter().map(|&i| -sm[i]).collect();
    let mut labels: Vec<u32> = pixels.iter().map(|&i| lab[i]).collect();
    if !watershed_sparse(&pixels, w, &elev, &mut labels) {
        #[cfg(test)]
        tests::RING_FIELD_FLOODS.with(|n| n.set(n.get() + 1));
        return flood_ring_in_field(smoothed, objects, ring);
    }
    let n = objects.count();
    let mut out = objects.into_image();
    let o = out.as_mut_slice();
    // The ring's pixels (outside every object) take the flood's labels; the markers keep
    // theirs.
    for (&i, &l) in pixels.iter().zip(&labels) {
        if o[i] == 0 {
            o[i] = l;
        }
    }
    Labels::new(out, n)
}

/// [`flood_from_ring`] by [`watershed`] over the field (the mask, the markers and the
/// negated elevation in field-sized images).
fn flood_ring_in_field(smoothed: Image<f32>, objects: Labels, ring: Vec<usize>) -> Labels {
    let (w, h) = (objects.width(), objects.height());
    let lab = objects.image().as_slice();
    let mut elevation = smoothed;
    let mut markers = Image::new(w, h, 0u32);
    let mut mask = Image::new(w, h, false);
    {
        let (elev, mark, inside) = (
            elevation.as_mut_slice(),
            markers.as_mut_slice(),
            mask.as_mut_slice(),
        );
        for &i in &ring {
            inside[i] = true;
            elev[i] = -elev[i];
            for n in neighbours4(i, w, h) {
                if lab[n] != 0 && !inside[n] {
                    mark[n] = lab[n];
                    inside[n] = true;
                    elev[n] = -elev[n];
                }
            }
        }
    }
    let n = objects.count();
    let grown = watershed(
        elevation.view(),
        &Labels::new(markers, n),
        Some(mask.view()),
    );
    let mut out = objects.into_image();
    let (o, g) = (out.as_mut_slice(), grown.image().as_slice());
    for i in ring {
        o[i] = g[i];
    }
    Labels::new(out, n)
}

/// Quantile of an object's values that stands for its brightness in the per-object rule.
const OBJECT_QUANTILE: f64 = 0.9;

/// The radius of the square grey opening subtracted from the smoothed field (see
/// [`NucleiParams::background_radius`]): 0 (none) for r < 1 or NaN; a radius beyond the
/// image changes nothing more than the image's size.
fn background_radius(radius: f32, w: usize, h: usize) -> usize {
    if radius.is_nan() || radius < 1.0 {
        return 0;
    }
    (radius as usize).min(w.max(h))
}

/// What the per-object rule ([`NucleiParams::object_contrast`]) reads from a field: the
/// background level (median of the finite pixels outside the components of `low`, the
/// pixels above the field threshold) and each component's [`OBJECT_QUANTILE`].
struct ObjectLevels {
    bg: f32,
    /// Per label (0: the background, `None`).
    quantile: Vec<Option<f32>>,
}

impl ObjectLevels {
    fn new(smoothed: &Image<f32>, low: &Labels) -> Self {
        let n = low.count() as usize;
        let labels = low.image().as_slice();
        let px = smoothed.as_slice();
        // The objects' pixels grouped by component (counting sort), then one selection per
        // component; the background's finite pixels apart.
        let mut start = vec![0usize; n + 2];
        for &l in labels {
            start[l as usize + 1] += 1;
        }
        for k in 1..start.len() {
            start[k] += start[k - 1];
        }
        let mut fill = start.clone();
        let mut objects = vec![0f32; px.len() - start[1]];
        let mut bg_vals: Vec<f32> = Vec::with_capacity(start[1]);
        for (&l, &v) in labels.iter().zip(px) {
            if l != 0 {
                objects[fill[l as usize] - start[1]] = v;
                fill[l as usize] += 1;
            } else if v.is_finite() {
                bg_vals.push(v);
            }
        }
        let select = |v: &mut [f32], q: f64| -> Option<f32> {
            if v.is_empty() {
                return None;
            }
            let k = ((v.len() - 1) as f64 * q) as usize;
            Some(*v.select_nth_unstable_by(k, f32::total_cmp).1)
        };
        let bg = select(&mut bg_vals, 0.5).unwrap_or(0.0);
        let mut quantile = vec![None; n + 1];
        for (k, q) in quantile.iter_mut().enumerate().skip(1) {
            let v = &mut objects[start[k] - start[1]..start[k + 1] - start[1]];
            *q = select(v, OBJECT_QUANTILE);
        }
        ObjectLevels { bg, quantile }
    }

    /// Each label's threshold at fraction `f`: max(t, bg + f · (q − bg)) for a component,
    /// `t` for the background.
    fn thresholds(&self, t: f32, f: f32) -> Vec<f32> {
        self.quantile
            .iter()
            .map(|q| match q {
                Some(q) => {
                    let own = self.bg + f * (q - self.bg);
                    if own > t {
                        own
                    } else {
                        t
                    }
                }
                None => t,
            })
            .collect()
    }
}

/// A field's threshold: one value, or one per pixel for the local method.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldThreshold {
    /// The global threshold after correction and bounds; for the local method the mean
    /// of the per-pixel thresholds (what is recorded per field).
    pub value: f64,
    /// Per-pixel thresholds (local method), after correction and bounds.
    pub local: Option<Image<f32>>,
}

/// Applies correction factor and bounds, as CellProfiler: `clamp(t · correction, min, max)`.
fn correct(t: f64, params: &NucleiParams) -> f64 {
    let mut t = t * f64::from(params.threshold_correction);
    // Manual clamp: f64::clamp panics on NaN or inverted bounds.
    if t < f64::from(params.threshold_min) {
        t = f64::from(params.threshold_min);
    }
    if t > f64::from(params.threshold_max) {
        t = f64::from(params.threshold_max);
    }
    t
}

/// The threshold of one field (0..1 scale) with `params`' method, log option, correction
/// factor and bounds; `None` when the method finds none (empty, constant or non-finite
/// image, or an even local window).
pub fn threshold_field(img: ImageView<f32>, params: &NucleiParams) -> Option<FieldThreshold> {
    // The CPU backend never fails.
    threshold_field_with(&CpuBackend, img, params).unwrap_or(None)
}

/// [`threshold_field`] with Otsu's histogram and Li's iteration on `backend` (the other
/// methods run on the CPU).
pub fn threshold_field_with(
    backend: &dyn Backend,
    img: ImageView<f32>,
    params: &NucleiParams,
) -> Result<Option<FieldThreshold>, Error> {
    let logged;
    let src = if params.threshold_log {
        logged = img.map(|v| if v > 0.0 { v.ln() } else { f32::NAN });
        logged.view()
    } else {
        img
    };
    let back = |t: f64| if params.threshold_log { t.exp() } else { t };
    if params.threshold_method == ThresholdMethod::Local {
        let Some(mut local) = threshold::local(src, params.local_block_size, params.local_offset)
        else {
            return Ok(None);
        };
        if params.threshold_log {
            // Pixels without a logarithm spread NaN through the window; they stay
            // background.
            for v in local.as_mut_slice() {
                *v = v.exp();
            }
        }
        let mut sum = 0f64;
        for v in local.as_mut_slice() {
            let c = correct(f64::from(*v), params);
            *v = c as f32;
            sum += c;
        }
        let value = sum / local.len().max(1) as f64;
        return Ok(Some(FieldThreshold {
            value,
            local: Some(local),
        }));
    }
    let t = match params.threshold_method {
        ThresholdMethod::Otsu => backend.otsu(src, 256)?,
        ThresholdMethod::Otsu3Foreground => {
            threshold::multiotsu(src, 3, 256).and_then(|t| t.first().copied())
        }
        ThresholdMethod::Otsu3Background => {
            threshold::multiotsu(src, 3, 256).and_then(|t| t.last().copied())
        }
        ThresholdMethod::Li => backend.li(src)?,
        ThresholdMethod::Triangle => threshold::triangle(src, 256),
        ThresholdMethod::RobustBackground => {
            threshold::robust_background(src, &threshold::RobustBackgroundParams::default())
        }
        ThresholdMethod::Local => None,
    };
    let Some(t) = t else {
        return Ok(None);
    };
    Ok(Some(FieldThreshold {
        value: correct(back(f64::from(t)), params),
        local: None,
    }))
}

/// The unit-scaled field minus the background, which the intensity and hybrid declumpings
/// smooth again: on the host, or kept by the backend that made it
/// ([`FlattenParams::keep_on_backend`]: a device keeps it rather than send it down and up).
enum Scaled {
    Host(Image<f32>),
    Kept(KeptImage),
}

/// The smoothing of the intensity and hybrid declumpings, σ = min_diameter / 3.5 (1 when
/// the diameter is not a positive number), on the backend (so `--device gpu` runs it there).
fn declump_smoothing(
    backend: &dyn Backend,
    scaled: &Scaled,
    min_diameter: f32,
) -> Result<Image<f32>, Error> {
    let sigma = declump_sigma(min_diameter);
    match scaled {
        Scaled::Host(f) => backend.gaussian_blur(f.view(), sigma),
        Scaled::Kept(k) => backend.gaussian_blur_kept(k, sigma),
    }
}

/// The declumping smoothing's σ: min_diameter / 3.5, or 1 without a usable diameter.
fn declump_sigma(min_diameter: f32) -> f32 {
    if min_diameter.is_finite() && min_diameter > 0.0 {
        min_diameter / 3.5
    } else {
        1.0
    }
}

/// The image the hybrid declumping reads inside each component's box: smoothed whole by
/// the backend, or the scaled image with the σ to smooth each box with (widened by the
/// kernel's radius, so that the box's values are the whole field's).
enum DeclumpSmoothing<'a> {
    Field(Image<f32>),
    InBoxes(&'a Image<f32>, f32),
}

impl DeclumpSmoothing<'_> {
    /// The smoothed image in the box `(r0, c0, r1, c1)` (exclusive ends) of the field:
    /// cropped from the whole field's, or the box widened by the kernel's radius (within the
    /// field) smoothed in `crops` (made on first use, reused after), whose values in the box
    /// are the whole field's: the separable passes read at most the radius away, and where
    /// the widened box stops at the field's edge the edge is replicated as the whole field's
    /// is. Errors only for a box outside the field.
    fn in_box<'b>(
        &'b self,
        crops: &'b mut Option<GaussianCrops>,
        (r0, c0, r1, c1): (usize, usize, usize, usize),
    ) -> Result<ImageView<'b, f32>, ipscope_image::Error> {
        let (bh, bw) = (r1.saturating_sub(r0), c1.saturating_sub(c0));
        match self {
            DeclumpSmoothing::InBoxes(scaled, sigma) => {
                let gaussian = crops.get_or_insert_with(|| GaussianCrops::new(*sigma));
                let (h, w) = (scaled.height(), scaled.width());
                let g = gaussian.radius();
                let (er0, ec0) = (r0.saturating_sub(g), c0.saturating_sub(g));
                let (er1, ec1) = ((r1 + g).min(h).max(er0), (c1 + g).min(w).max(ec0));
                let wide = scaled.view().crop(er0, ec0, er1 - er0, ec1 - ec0)?;
                gaussian.blur(wide)?.crop(r0 - er0, c0 - ec0, bh, bw)
            }
            DeclumpSmoothing::Field(img) => img.view().crop(r0, c0, bh, bw),
        }
    }
}

/// Intensity-based declumping (CellProfiler's default): the image is smoothed with
/// σ = min_diameter / 3.5 (CellProfiler's automatic filter size 2.35·d/3.5 as a FWHM), seeds
/// are its local maxima inside the foreground at least `seed_distance` apart, and the
/// watershed floods the inverted smoothed image inside the foreground.
fn declump_by_intensity(
    // The image smoothed by `declump_smoothing`.
    smooth: Image<f32>,
    fg: &Image<bool>,
    components: &Labels,
    seed_distance: usize,
) -> Labels {
    // As CellProfiler: a pixel is a maximum when it equals the maximum of its neighbourhood;
    // connected maxima (a plateau, e.g. a saturated nucleus) form one seed.
    let maxf = max_filter(&smooth, seed_distance);
    let mut is_max = Image::new(smooth.width(), smooth.height(), false);
    for (i, ((&v, &m), &f)) in smooth
        .as_slice()
        .iter()
        .zip(maxf.as_slice())
        .zip(fg.as_slice())
        .enumerate()
    {
        is_max.as_mut_slice()[i] = f && v == m && v.is_finite();
    }
    let maxima = label(is_max.view(), Connectivity::Eight);
    flood_from_markers(smooth, fg, components, maxima, false)
}

/// Each pixel's own threshold under the per-object rule: `per[label]` of the component of
/// the field threshold's foreground it lies in (`per[0]`: the background's), looked up where
/// it is read instead of kept as a field-sized image.
#[derive(Clone, Copy)]
struct PixelThresholds<'a> {
    labels: &'a Image<u32>,
    per: &'a [f32],
}

impl<'a> PixelThresholds<'a> {
    /// `per` holds a threshold for every label in `labels` (reading a pixel whose label has
    /// none panics).
    fn new(labels: &'a Image<u32>, per: &'a [f32]) -> Self {
        PixelThresholds { labels, per }
    }

    fn get(&self, r: usize, c: usize) -> f32 {
        self.per[self.labels.get(r, c) as usize]
    }

    /// The thresholds of row `r`'s pixels in `cols`.
    fn row(&self, r: usize, cols: std::ops::Range<usize>) -> impl Iterator<Item = f32> + '_ {
        self.labels.row(r)[cols]
            .iter()
            .map(|&l| self.per[l as usize])
    }
}

/// Hybrid declumping: intensity and shape evidence in one surface, seeds chosen by their
/// dynamic (h-maxima with a contrast-relative h).
///
/// The surface is (I_σ − t)₊ · √EDT: the image smoothed with σ = min_diameter / 3.5 above
/// the threshold `t`, weighted by the square root of the distance to the background, so a
/// bright spot near an edge or a neck counts less than one in the middle of a round body.
/// A regional maximum of the surface is a seed when the dip separating it from a higher
/// maximum is positive and at least `rel_depth` times its own height; the rest merge into
/// their higher neighbour. A component whose surface is zero throughout (nowhere above the
/// threshold once smoothed) gives no object. This replaces the fixed seed distance of CellProfiler's method, so the seed
/// spacing adapts to the nucleus size. Dynamics are computed by flooding from the top
/// with a union-find (M. Grimaud, "New measure of contrast: the dynamics", SPIE 1769,
/// 1992); the watershed then floods the negated surface inside the foreground.
fn declump_by_dynamics(
    // The image smoothed by `declump_smoothing`, or what to smooth in each box.
    smooth: DeclumpSmoothing,
    components: Labels,
    dist: &Image<f32>,
    // The field threshold and, with the per-object rule, each pixel's own threshold.
    (t, tmap): (f32, Option<PixelThresholds>),
    rel_depth: f32,
) -> Labels {
    // Pixel indices are u32 below (half the memory traffic of usize); a field of 2³² pixels
    // or more (64 GiB of u16 per channel) keeps its undivided components.
    if components.image().len() >= u32::MAX as usize {
        return components;
    }
    let (w, h) = (components.width(), components.height());
    // An all-foreground field has no finite distance; a constant keeps the intensity term.
    let cap = (w + h) as f32;
    let t = if t.is_finite() { t } else { 0.0 };
    let lab = components.image();
    // Each component alone, in its bounding box: its flood from the top joins only its own
    // pixels (8-neighbours inside the mask are in the same component), so its seeds are the
    // same as in one flood of the field, and the watershed runs box by box
    // (`flood_in_boxes`).
    let mut boxes = Vec::with_capacity(components.count() as usize);
    // Per box: its seeds (or the fallback seed), and whether it has a seed of its own.
    let mut seeded = Vec::with_capacity(components.count() as usize);
    let mut all_seeds: Vec<u32> = Vec::new();
    let mut scratch = DynamicsScratch::default();
    let mut crops = None;
    for (l, (r0, c0, r1, c1)) in components.object_boxes() {
        let (bh, bw) = (r1 - r0, c1 - c0);
        // The smoothed image in the box (errors are unreachable: the boxes lie in the field).
        let smoothed = smooth.in_box(&mut crops, (r0, c0, r1, c1));
        let Ok(smoothed) = smoothed else {
            continue;
        };
        let mut object = Vec::with_capacity(bw * bh);
        let mut surf = Vec::with_capacity(bw * bh);
        for r in r0..r1 {
            let labs = &lab.row(r)[c0..c1];
            let (sm, di) = (smoothed.row(r - r0), &dist.row(r)[c0..c1]);
            object.extend(labs.iter().map(|&v| v == l));
            // The surface (I_σ − t)₊ · √EDT with the pixel's own threshold.
            match tmap {
                Some(m) => surf.extend(sm.iter().zip(di).zip(m.row(r, c0..c1)).map(
                    |((&v, &d), t)| {
                        let d = if d.is_finite() { d } else { cap };
                        (v - t).max(0.0) * d.sqrt()
                    },
                )),
                None => surf.extend(sm.iter().zip(di).map(|(&v, &d)| {
                    let d = if d.is_finite() { d } else { cap };
                    (v - t).max(0.0) * d.sqrt()
                })),
            }
        }
        // The box's raster order is the field's, so the flooding order of its pixels is too.
        let at = |i: usize| tmap.map_or(t, |m| m.get(r0 + i / bw, c0 + i % bw));
        let mut seeds = dynamics_seeds(&surf, &object, bw, at, rel_depth, &mut scratch);
        let own = !seeds.is_empty();
        if !own {
            // No seed: the component's first highest pixel, unless its surface is nowhere
            // above 0 (then it holds no nucleus and stays unlabelled).
            let mut best: Option<(f32, usize)> = None;
            for (i, (&v, &o)) in surf.iter().zip(&object).enumerate() {
                if o && best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, i));
                }
            }
            match best {
                Some((v, i)) if !(v.is_nan() || v <= 0.0) => seeds.push(i as u32),
                _ => continue,
            }
        } else {
            all_seeds.extend(
                seeds
                    .iter()
                    .map(|&i| ((r0 + i as usize / bw) * w + c0 + i as usize % bw) as u32),
            );
        }
        let seeds: Vec<(usize, usize)> = seeds
            .iter()
            .map(|&i| (i as usize / bw, i as usize % bw))
            .collect();
        let (Ok(elevation), Ok(object)) = (
            Image::from_vec(bw, bh, surf.iter().map(|&v| -v).collect()),
            Image::from_vec(bw, bh, object),
        ) else {
            continue; // unreachable: both have the box's size
        };
        boxes.push(BoxFlood::new((r0, c0), elevation, object, seeds));
        seeded.push(own);
    }
    // Seeds are numbered in raster order over the field, then the components without one
    // get the next numbers in label order (as `flood_from_markers` numbers them).
    all_seeds.sort_unstable();
    let mut next_fallback = all_seeds.len() as u32;
    for (b, &own) in boxes.iter_mut().zip(&seeded) {
        let (r0, c0) = b.origin;
        b.numbers = if own {
            b.seeds
                .iter()
                .map(|&(r, c)| {
                    let i = ((r0 + r) * w + c0 + c) as u32;
                    all_seeds.partition_point(|&s| s < i) as u32 + 1
                })
                .collect()
        } else {
            next_fallback += 1;
            vec![next_fallback]
        };
    }
    flood_in_boxes(components, boxes, next_fallback)
}

/// Reused buffers of [`dynamics_seeds`].
#[derive(Default)]
struct DynamicsScratch {
    order: Vec<u64>,
    parent: Vec<u32>,
    peak: Vec<u32>,
    roots: Vec<u32>,
}

/// The hybrid declumping's seeds in an image `w` pixels wide (a component's box, or a whole
/// field): the flood of the surface `s` from the top inside `mask` with a union-find over
/// 8-neighbours, keeping a basin's peak when the dip to the higher basin it meets is
/// positive and at least `rel_depth` times the peak's height above its threshold `at(peak)`,
/// and every flooded region's final peak whose surface is above 0. Pixel indices, sorted;
/// the image has fewer than 2³² pixels.
fn dynamics_seeds(
    s: &[f32],
    mask: &[bool],
    w: usize,
    at: impl Fn(usize) -> f32,
    rel_depth: f32,
    scratch: &mut DynamicsScratch,
) -> Vec<u32> {
    const NONE: u32 = u32::MAX;
    let h = s.len() / w.max(1);
    let DynamicsScratch {
        order,
        parent,
        peak,
        roots,
    } = scratch;
    // Flooding order: decreasing value, ties in raster order. Sorting packed u64 keys
    // (descending total order of the value, then index) gives exactly the order of
    // `s[b].total_cmp(&s[a]).then(a.cmp(&b))` without an indirect comparison.
    order.clear();
    order.extend(
        (0..s.len())
            .filter(|&i| mask[i] && s[i].is_finite())
            .map(|i| (u64::from(!total_order_bits(s[i])) << 32) | i as u64),
    );
    order.sort_unstable();
    parent.clear();
    parent.resize(s.len(), NONE);
    // Per root: its peak pixel.
    peak.clear();
    peak.resize(s.len(), NONE);
    let mut seeds: Vec<u32> = Vec::new();
    for &k in order.iter() {
        let p = k as u32;
        let pu = p as usize;
        let (r, c) = (pu / w, pu % w);
        roots.clear();
        for dr in -1i64..=1 {
            for dc in -1i64..=1 {
                if dr == 0 && dc == 0 {
                    continue;
                }
                let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                if rr < 0 || cc < 0 || rr >= h as i64 || cc >= w as i64 {
                    continue;
                }
                let q = (rr as usize * w + cc as usize) as u32;
                if parent[q as usize] != NONE {
                    let root = find(parent, q);
                    if !roots.contains(&root) {
                        roots.push(root);
                    }
                }
            }
        }
        parent[pu] = p;
        if roots.is_empty() {
            peak[pu] = p;
            continue;
        }
        // The brightest peak (first in flooding order on ties) absorbs the others.
        let mut keep = roots[0];
        for &q in &roots[1..] {
            let (pq, pk) = (peak[q as usize], peak[keep as usize]);
            let (a, b) = (s[pq as usize], s[pk as usize]);
            if a > b || (a == b && pq < pk) {
                keep = q;
            }
        }
        for &q in roots.iter() {
            if q != keep {
                let pk = s[peak[q as usize] as usize];
                // A basin that meets this one at its own peak's level has no dip (the flood
                // in raster order splits a plateau, e.g. the zero-height rim of an object,
                // into several basins): it is not a maximum of its own.
                if pk > s[pu] && pk - s[pu] >= rel_depth * (pk - at(peak[q as usize] as usize)) {
                    seeds.push(peak[q as usize]);
                }
                parent[q as usize] = keep;
            }
        }
        parent[pu] = keep;
    }
    // Every flooded region's final peak is a seed too, unless the surface is zero all over
    // it: the smoothed image never rises above the threshold there.
    for &k in order.iter() {
        let p = k as u32;
        if parent[p as usize] == p && s[peak[p as usize] as usize] > 0.0 {
            seeds.push(peak[p as usize]);
        }
    }
    seeds.sort_unstable();
    seeds
}

/// `f32::total_cmp`'s order as an unsigned integer: `a.total_cmp(&b)` equals
/// `total_order_bits(a).cmp(&total_order_bits(b))`.
#[inline(always)]
fn total_order_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Maximum over the (2r+1)² square around each pixel (pixels outside the image ignored),
/// as two separable 1-D passes. NaN never wins.
fn max_filter(img: &Image<f32>, r: usize) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let mut rows = Image::new(w, h, f32::NEG_INFINITY);
    for y in 0..h {
        let src = img.row(y);
        let dst = rows.row_mut(y);
        for (x, d) in dst.iter_mut().enumerate() {
            let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
            *d = src[a..b].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        }
    }
    let mut out = Image::new(w, h, f32::NEG_INFINITY);
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
        for yy in a..b {
            let src = rows.row(yy);
            for (d, &v) in out.row_mut(y).iter_mut().zip(src) {
                *d = d.max(v);
            }
        }
    }
    out
}

/// Watershed of `-surface` inside `fg`, seeded at the peaks of `surface` in each component;
/// a component without a peak is seeded at its highest pixel so no object is lost.
#[cfg(test)]
fn seeded_watershed(
    surface: Image<f32>,
    fg: &Image<bool>,
    components: &Labels,
    seed_distance: usize,
) -> Labels {
    let (w, h) = (fg.width(), fg.height());
    let peaks = peak_local_max(surface.view(), seed_distance, f32::MIN, Some(components));
    let mut markers = Image::new(w, h, 0u32);
    for (n, &(r, c)) in peaks.iter().enumerate() {
        markers.set(r, c, n as u32 + 1);
    }
    let n = peaks.len() as u32;
    flood_from_markers(surface, fg, components, Labels::new(markers, n), false)
}

/// Watershed of `-surface` inside `fg` from `markers`; a component of `components` without a
/// marker is seeded at its highest pixel, so no object is lost — except, with `drop_flat`,
/// a component whose surface is nowhere above 0 (the hybrid declumping's surface is the
/// smoothed image above the threshold: such a component holds no nucleus), which stays
/// unlabelled.
fn flood_from_markers(
    surface: Image<f32>,
    fg: &Image<bool>,
    components: &Labels,
    markers: Labels,
    drop_flat: bool,
) -> Labels {
    let smooth = &surface;
    let mut n = markers.count();
    let mut markers = markers.into_image();
    let mut seeded = vec![false; components.count() as usize + 1];
    for (&m, &c) in markers.as_slice().iter().zip(components.image().as_slice()) {
        if m != 0 {
            seeded[c as usize] = true;
        }
    }
    let mut best: Vec<Option<(f32, usize)>> = vec![None; seeded.len()];
    for (i, (&l, &v)) in components
        .image()
        .as_slice()
        .iter()
        .zip(smooth.as_slice())
        .enumerate()
    {
        let l = l as usize;
        if l != 0 && !seeded[l] && best[l].is_none_or(|(bv, _)| v > bv) {
            best[l] = Some((v, i));
        }
    }
    for (v, i) in best.into_iter().flatten() {
        if drop_flat && (v.is_nan() || v <= 0.0) {
            continue;
        }
        n += 1;
        markers.as_mut_slice()[i] = n;
    }
    // The surface is not needed afterwards: negate it in place rather than allocate.
    let mut elevation = surface;
    for v in elevation.as_mut_slice() {
        *v = -*v;
    }
    watershed(elevation.view(), &Labels::new(markers, n), Some(fg.view()))
}

/// Shape-based declumping: watershed of the negated, smoothed distance map from its peaks,
/// one component at a time inside its bounding box.
///
/// The labels are those of the same steps over the whole field (`declump_full_frame`, the
/// tests' reference), pixel for pixel and number for number; only about one pixel in twenty
/// of a field is foreground, so working in the boxes skips most of the field. Why each
/// step is the same:
///
/// * the smoothed distance at a pixel of the box reads the distance map within the
///   Gaussian's radius `g` only: the box widened by `g` (clipped to the field, whose edges
///   the crop then shares) holds all of it, and the crop's Gaussian does each pixel's
///   arithmetic in the same order;
/// * [`crate::ops::peaks::peak_local_max`] with labels already works object by object in
///   the object's box ([`object_peaks`]), and an object without a peak is seeded at its
///   first highest pixel in raster order either way;
/// * seeds are numbered as there: the peaks object by object in label order, then the
///   seeds of the objects without a peak;
/// * the watershed runs box by box too, as [`flood_in_boxes`] explains.
fn declump(components: Labels, dist: &Image<f32>, seed_distance: usize) -> Labels {
    let (w, h) = (components.width(), components.height());
    // An all-foreground field has no finite distance; any constant keeps it one object.
    let cap = (w + h) as f32;
    let g = gaussian_kernel(f64::from(DISTANCE_SIGMA), GAUSSIAN_TRUNCATE).len() / 2;
    let lab = components.image();
    // A field with a background pixel has finite distances everywhere, one without none.
    let capped;
    let dist = if dist.as_slice().first().is_some_and(|d| d.is_finite()) {
        dist
    } else {
        capped = dist.map(|d| if d.is_finite() { d } else { cap });
        &capped
    };
    let mut scratch = PeakScratch::default();
    let mut gaussian = GaussianCrops::new(DISTANCE_SIGMA);
    let mut crops = Vec::with_capacity(components.count() as usize);
    let mut peaks_total = 0u32;
    for (l, (r0, c0, r1, c1)) in components.object_boxes() {
        let (er0, ec0) = (r0.saturating_sub(g), c0.saturating_sub(g));
        let (er1, ec1) = ((r1 + g).min(h), (c1 + g).min(w));
        let (bh, bw) = (r1 - r0, c1 - c0);
        // Unreachable errors: the boxes lie inside the field and the widened box.
        let Ok(wide) = dist.view().crop(er0, ec0, er1 - er0, ec1 - ec0) else {
            continue;
        };
        let Ok(smooth) = gaussian.blur(wide) else {
            continue;
        };
        let Ok(surface) = smooth.crop(r0 - er0, c0 - ec0, bh, bw) else {
            continue;
        };
        let mut object = Vec::with_capacity(bw * bh);
        for r in r0..r1 {
            object.extend(lab.row(r)[c0..c1].iter().map(|&v| v == l));
        }
        let Ok(object) = Image::from_vec(bw, bh, object) else {
            continue;
        };
        let mut seeds = object_peaks(surface, &object, seed_distance, f32::MIN, &mut scratch);
        let peaked = !seeds.is_empty();
        if peaked {
            peaks_total += seeds.len() as u32;
        } else {
            let mut best: Option<(f32, (usize, usize))> = None;
            for r in 0..bh {
                for c in 0..bw {
                    let v = surface.get(r, c);
                    if object.get(r, c) && best.is_none_or(|(bv, _)| v > bv) {
                        best = Some((v, (r, c)));
                    }
                }
            }
            seeds.extend(best.map(|(_, p)| p));
        }
        let elevation = surface.map(|v| -v);
        crops.push((BoxFlood::new((r0, c0), elevation, object, seeds), peaked));
    }
    // Global seed numbers: peaks first, then the seeds of objects without one.
    let (mut next_peak, mut next_seed) = (0u32, peaks_total);
    let mut boxes = Vec::with_capacity(crops.len());
    for (mut b, peaked) in crops {
        let next = if peaked {
            &mut next_peak
        } else {
            &mut next_seed
        };
        b.numbers = (*next + 1..=*next + b.seeds.len() as u32).collect();
        *next += b.seeds.len() as u32;
        boxes.push(b);
    }
    flood_in_boxes(components, boxes, next_seed)
}

/// One component's flood in its bounding box: the elevation there, the component's pixels,
/// its seeds (relative to the box) and their labels in the field.
struct BoxFlood {
    origin: (usize, usize),
    elevation: Image<f32>,
    object: Image<bool>,
    seeds: Vec<(usize, usize)>,
    numbers: Vec<u32>,
}

impl BoxFlood {
    fn new(
        origin: (usize, usize),
        elevation: Image<f32>,
        object: Image<bool>,
        seeds: Vec<(usize, usize)>,
    ) -> Self {
        BoxFlood {
            origin,
            elevation,
            object,
            seeds,
            numbers: Vec::new(),
        }
    }

    /// Whether two of the seeds share a flood key (the elevation, -0.0 equal to 0.0).
    fn seeds_tie(&self) -> bool {
        let mut keys: Vec<u32> = self
            .seeds
            .iter()
            .map(|&(r, c)| (self.elevation.get(r, c) + 0.0).to_bits())
            .collect();
        keys.sort_unstable();
        keys.windows(2).any(|p| p[0] == p[1])
    }
}

/// The watershed of each box's elevation from its seeds inside its component, written into
/// a field of `components`' size, labels `count` at most: the labels of one watershed over
/// the whole field (inside `components`' pixels, from all the seeds).
///
/// A flood cannot leave its component (a 4-neighbour of a component's pixel outside it is
/// background), and while no two seeds of one component share an elevation every key of
/// the flood is unique, so a component's flood pops the same sequence alone as among the
/// others (see [`crate::ops::watershed`]). When seeds of one component do tie, scikit-image's
/// heap over the whole field breaks the tie: the boxes are then put back into the field and
/// flooded at once.
///
/// When every component has its box (`1..=count()` in order, as the declumpings make them),
/// the output is written over `components`' own pixels: each box sets each of its
/// component's pixels to a seed's label or 0, and the background stays 0, so no second
/// full-size image is zeroed.
fn flood_in_boxes(components: Labels, boxes: Vec<BoxFlood>, count: u32) -> Labels {
    let (w, h) = (components.width(), components.height());
    if boxes.iter().any(BoxFlood::seeds_tie) {
        #[cfg(test)]
        tests::FIELD_FLOODS.with(|n| n.set(n.get() + 1));
        let mut elevation = Image::new(w, h, 0.0f32);
        let mut markers = Image::new(w, h, 0u32);
        for b in &boxes {
            let (r0, c0) = b.origin;
            for r in 0..b.object.height() {
                let dst = &mut elevation.row_mut(r0 + r)[c0..c0 + b.object.width()];
                for ((d, &e), &o) in dst.iter_mut().zip(b.elevation.row(r)).zip(b.object.row(r)) {
                    if o {
                        *d = e;
                    }
                }
            }
            for (&(r, c), &n) in b.seeds.iter().zip(&b.numbers) {
                markers.set(r0 + r, c0 + c, n);
            }
        }
        let fg = components.image().map(|l| l != 0);
        return watershed(
            elevation.view(),
            &Labels::new(markers, count),
            Some(fg.view()),
        );
    }
    let mut out = if boxes.len() == components.count() as usize {
        components.into_image()
    } else {
        // Components without a box (the hybrid declumping's without a seed or any surface)
        // become background: cleared in their own bounding boxes while every pixel still
        // holds its component's label, before any box writes its objects.
        let mut boxed = vec![false; components.count() as usize + 1];
        for b in &boxes {
            if let Some(i) = b.object.as_slice().iter().position(|&o| o) {
                let (r, c) = (i / b.object.width(), i % b.object.width());
                let l = components.image().get(b.origin.0 + r, b.origin.1 + c) as usize;
                if let Some(x) = boxed.get_mut(l) {
                    *x = true;
                }
            }
        }
        let unboxed: Vec<(u32, (usize, usize, usize, usize))> = components
            .object_boxes()
            .filter(|&(l, _)| !boxed.get(l as usize).copied().unwrap_or(true))
            .collect();
        let mut img = components.into_image();
        for (l, (r0, c0, r1, c1)) in unboxed {
            for r in r0..r1 {
                for v in &mut img.row_mut(r)[c0..c1] {
                    if *v == l {
                        *v = 0;
                    }
                }
            }
        }
        img
    };
    let mut stack = Vec::new();
    for b in boxes {
        let (r0, c0) = b.origin;
        let (bw, bh) = (b.object.width(), b.object.height());
        if let [(sr, sc)] = b.seeds[..] {
            // One seed: the flood gives its label to the 4-connected part of the object that
            // holds it, whatever the elevation; a plain flood fill finds that part.
            let mut left = b.object;
            let number = b.numbers[0];
            if left.get(sr, sc) {
                left.set(sr, sc, false);
                stack.push((sr, sc));
            }
            while let Some((r, c)) = stack.pop() {
                out.set(r0 + r, c0 + c, number);
                let mut visit = |r: usize, c: usize| {
                    if left.get(r, c) {
                        left.set(r, c, false);
                        stack.push((r, c));
                    }
                };
                if r > 0 {
                    visit(r - 1, c);
                }
                if c > 0 {
                    visit(r, c - 1);
                }
                if c + 1 < bw {
                    visit(r, c + 1);
                }
                if r + 1 < bh {
                    visit(r + 1, c);
                }
            }
            // The component's pixels the flood did not reach (parts joined only by a
            // corner) are background.
            for r in 0..bh {
                let dst = &mut out.row_mut(r0 + r)[c0..c0 + bw];
                for (d, &unreached) in dst.iter_mut().zip(left.row(r)) {
                    if unreached {
                        *d = 0;
                    }
                }
            }
            continue;
        }
        let mut markers = Image::new(bw, bh, 0u32);
        for (k, &(r, c)) in b.seeds.iter().enumerate() {
            markers.set(r, c, k as u32 + 1);
        }
        let local = watershed(
            b.elevation.view(),
            &Labels::new(markers, b.seeds.len() as u32),
            Some(b.object.view()),
        );
        for r in 0..bh {
            let dst = &mut out.row_mut(r0 + r)[c0..c0 + bw];
            let own = b.object.row(r);
            for ((d, &v), &o) in dst.iter_mut().zip(local.image().row(r)).zip(own) {
                if v != 0 {
                    *d = b.numbers[v as usize - 1];
                } else if o {
                    *d = 0;
                }
            }
        }
    }
    Labels::new(out, count)
}

/// [`declump`] over the whole field at once: the smoothed distance map of the field, the
/// peaks of every component, one flood (the reference the tests hold `declump` to).
#[cfg(test)]
fn declump_full_frame(components: &Labels, dist: &Image<f32>, seed_distance: usize) -> Labels {
    let (w, h) = (components.width(), components.height());
    let cap = (w + h) as f32;
    let capped = dist.map(|d| if d.is_finite() { d } else { cap });
    let smooth = crate::ops::filter::gaussian_blur(capped.view(), DISTANCE_SIGMA);
    let fg = components.image().map(|l| l != 0);
    seeded_watershed(smooth, &fg, components, seed_distance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::distance::distance_transform_edt;

    #[test]
    fn degenerate_images_give_no_objects() {
        let p = NucleiParams::default();
        for (w, h) in [(0, 0), (1, 1), (1, 7), (9, 1), (0, 5)] {
            let img = Image::new(w, h, 100u16);
            let r = segment_nuclei(img.view(), &p);
            assert_eq!(r.labels.count(), 0, "{w}x{h}");
            assert_eq!((r.labels.width(), r.labels.height()), (w, h));
        }
        let nan = Image::new(16, 16, f32::NAN);
        assert_eq!(segment_nuclei(nan.view(), &p).labels.count(), 0);
        let ramp = Image::from_fn(40, 1, |_, c| c as u16 * 1000);
        assert_eq!(segment_nuclei(ramp.view(), &p).labels.count(), 0);
        let spike = Image::from_fn(1, 30, |r, _| if r == 15 { 60000u16 } else { 0 });
        assert_eq!(segment_nuclei(spike.view(), &p).labels.count(), 0);
    }

    /// Centre row, centre column, radius and a random number, of [`random_shapes`].
    type RandomShape = (f64, f64, f64, u32);

    /// A random field size of 20 to 20 + `span` − 1 pixels a side and 1 to `max` shapes
    /// `(centre row, centre col, radius, a random number for the caller)`: centres up to 5 px
    /// outside the field, radii 2 to 2 + (`span` − 1) / 10 px.
    fn random_shapes(
        rnd: &mut impl FnMut() -> u32,
        span: u32,
        max: u32,
    ) -> (usize, usize, Vec<RandomShape>) {
        let (w, h) = (20 + (rnd() % span) as usize, 20 + (rnd() % span) as usize);
        let shapes = (0..1 + rnd() % max)
            .map(|_| {
                let r = 2.0 + f64::from(rnd() % span) / 10.0;
                let cy = f64::from(rnd() % (h as u32 + 10)) - 5.0;
                let cx = f64::from(rnd() % (w as u32 + 10)) - 5.0;
                (cy, cx, r, rnd())
            })
            .collect();
        (w, h, shapes)
    }

    /// Random fields of overlapping discs and boxes (symmetric shapes make seeds of equal
    /// height), some touching the edges, and all-foreground fields.
    #[test]
    fn declumping_in_boxes_equals_the_whole_field() {
        let mut rnd = crate::testing::lcg32(7);
        for case in 0..120 {
            let (w, h, shapes) = random_shapes(&mut rnd, 90, 14);
            let shapes: Vec<(f64, f64, f64, bool)> = shapes
                .into_iter()
                .map(|(cy, cx, r, x)| (cy, cx, r, x.is_multiple_of(3)))
                .collect();
            let fg = Image::from_fn(w, h, |y, x| {
                case % 40 == 39
                    || shapes.iter().any(|&(cy, cx, r, square)| {
                        let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                        if square {
                            dy.abs() <= r && dx.abs() <= r * 0.6
                        } else {
                            dy * dy + dx * dx <= r * r
                        }
                    })
            });
            let components = label(fg.view(), Connectivity::Eight);
            let dist = crate::ops::distance::distance_transform_edt(fg.view());
            for seed_distance in [1, 3, 7] {
                let fast = declump(components.clone(), &dist, seed_distance);
                let reference = declump_full_frame(&components, &dist, seed_distance);
                assert_eq!(
                    fast, reference,
                    "case {case}, {w}x{h}, seed distance {seed_distance}"
                );
            }
        }
        // Both ways through `flood_in_boxes` are exercised.
        let field = FIELD_FLOODS.with(|n| n.get());
        assert!(
            field >= 5 && 360 - field >= 50,
            "{field} of 360 flooded whole"
        );
    }

    /// A box with one seed is filled, not flooded: the seed's 4-connected part of the object,
    /// as the flood gives it, even where the object's parts touch only by a corner.
    #[test]
    fn one_seed_boxes_equal_the_flood() {
        let mut rnd = crate::testing::lcg32(31);
        // Cases where the seed's part is not the whole object (the fill must stop there).
        let mut partial = 0;
        for case in 0..200 {
            let (w, h) = (3 + (rnd() % 20) as usize, 3 + (rnd() % 20) as usize);
            let density = 3 + rnd() % 6;
            let object = Image::from_fn(w, h, |_, _| rnd() % 10 < density);
            let elevation = Image::from_fn(w, h, |_, _| (rnd() % 50) as f32);
            let Some(seed) = (0..w * h)
                .map(|i| (i / w, i % w))
                .filter(|&(r, c)| object.get(r, c))
                .nth((rnd() % 8) as usize)
            else {
                continue;
            };
            let (fw, fh) = (w + 7, h + 4);
            let origin = (2, 5);
            let mut markers = Image::new(w, h, 0u32);
            markers.set(seed.0, seed.1, 3);
            let want = watershed(
                elevation.view(),
                &Labels::new(markers, 3),
                Some(object.view()),
            );
            // Into a fresh field (the box's component is not in `components`), and over the
            // component's own pixels (label 1, the only component: the output reuses them).
            let own = Image::from_fn(fw, fh, |r, c| {
                let (r, c) = (r.wrapping_sub(origin.0), c.wrapping_sub(origin.1));
                u32::from(r < h && c < w && object.get(r, c))
            });
            for components in [Labels::empty(fw, fh), Labels::new(own, 1)] {
                let mut b = BoxFlood::new(origin, elevation.clone(), object.clone(), vec![seed]);
                b.numbers = vec![3];
                let got = flood_in_boxes(components, vec![b], 3);
                let got_box =
                    Image::from_fn(w, h, |r, c| got.image().get(origin.0 + r, origin.1 + c));
                assert_eq!(&got_box, want.image(), "case {case}");
                let inside = got_box.as_slice().iter().filter(|&&l| l != 0).count();
                let all = got.image().as_slice().iter().filter(|&&l| l != 0).count();
                assert_eq!(inside, all, "case {case}: nothing outside the box");
            }
            let inside = want.image().as_slice().iter().filter(|&&l| l != 0).count();
            partial += usize::from(inside < object.as_slice().iter().filter(|&&o| o).count());
        }
        assert!(partial >= 20, "{partial} of 200 cases split the object");
    }

    thread_local! {
        /// How often `flood_in_boxes` flooded the whole field (seeds of a component tied)
        /// on this test's thread.
        pub(super) static FIELD_FLOODS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// How often `flood_from_ring` flooded over the field (markers of a part tied).
        pub(super) static RING_FIELD_FLOODS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// [`declump_by_dynamics`] over the whole field at once (its form before the boxes): the
    /// surface of the field, the seeds of one flood of it, one watershed. The reference the
    /// box-by-box version must equal.
    fn declump_by_dynamics_full_frame(
        mut smooth: Image<f32>,
        fg: &Image<bool>,
        components: &Labels,
        dist: &Image<f32>,
        (t, tmap): (f32, Option<&Image<f32>>),
        rel_depth: f32,
    ) -> Labels {
        let cap = (fg.width() + fg.height()) as f32;
        let at = |i: usize| tmap.map_or(t, |m| m.as_slice()[i]);
        for (i, (v, &d)) in smooth
            .as_mut_slice()
            .iter_mut()
            .zip(dist.as_slice())
            .enumerate()
        {
            let d = if d.is_finite() { d } else { cap };
            *v = (*v - at(i)).max(0.0) * d.sqrt();
        }
        let w = fg.width();
        let seeds = dynamics_seeds(
            smooth.as_slice(),
            fg.as_slice(),
            w,
            at,
            rel_depth,
            &mut DynamicsScratch::default(),
        );
        let mut markers = Image::new(w, fg.height(), 0u32);
        for (n, &i) in seeds.iter().enumerate() {
            markers.as_mut_slice()[i as usize] = n as u32 + 1;
        }
        let n = seeds.len() as u32;
        flood_from_markers(smooth, fg, components, Labels::new(markers, n), true)
    }

    #[test]
    fn boxes_smoothed_alone_equal_the_smoothed_field() {
        // Every box (at the edges, inside, one pixel, the whole field, wider than the
        // kernel and narrower) smoothed alone has the whole field's values bit for bit.
        let mut rnd = crate::testing::lcg32(5);
        let (w, h) = (53, 41);
        let img = Image::from_fn(w, h, |_, _| (rnd() % 1000) as f32 / 997.0);
        let mut boxes = vec![
            (0, 0, h, w),
            (0, 0, 1, 1),
            (h - 1, w - 1, h, w),
            (5, 0, 9, w),
        ];
        for _ in 0..60 {
            let (r0, c0) = (rnd() as usize % h, rnd() as usize % w);
            let (r1, c1) = (
                r0 + 1 + rnd() as usize % (h - r0),
                c0 + 1 + rnd() as usize % (w - c0),
            );
            boxes.push((r0, c0, r1, c1));
        }
        let bits = |v: ImageView<f32>| {
            v.rows()
                .flat_map(|r| r.iter().map(|x| x.to_bits()))
                .collect::<Vec<_>>()
        };
        for sigma in [0.3f32, 1.0, 2.6, 9.0] {
            let field =
                DeclumpSmoothing::Field(crate::ops::filter::gaussian_blur(img.view(), sigma));
            let alone = DeclumpSmoothing::InBoxes(&img, sigma);
            let (mut none, mut crops) = (None, None);
            for &b in &boxes {
                let want = bits(field.in_box(&mut none, b).unwrap());
                let got = bits(alone.in_box(&mut crops, b).unwrap());
                assert_eq!(got, want, "sigma {sigma}, box {b:?}");
            }
        }
    }

    #[test]
    fn hybrid_declumping_in_boxes_equals_the_whole_field() {
        let mut rnd = crate::testing::lcg32(11);
        let mut boxes_only = 0;
        for case in 0..80 {
            let (w, h, blobs) = random_shapes(&mut rnd, 80, 12);
            let blobs: Vec<(f64, f64, f64, f64)> = blobs
                .into_iter()
                .map(|(cy, cx, r, x)| (cy, cx, r, 0.3 + f64::from(x % 70) / 100.0))
                .collect();
            // Coarse levels (ties of the surface) in even cases, fine ones in odd cases.
            let levels = if case % 2 == 0 { 8.0 } else { 4096.0 };
            let img = Image::from_fn(w, h, |y, x| {
                let v: f64 = blobs
                    .iter()
                    .map(|&(cy, cx, r, a)| {
                        let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
                        a * (-d2 / (2.0 * r * r)).exp()
                    })
                    .sum();
                ((v.min(1.0) * levels).round() / levels) as f32
            });
            let t = 0.2f32;
            let fg = if case % 20 == 19 {
                Image::new(w, h, true)
            } else {
                img.map(|v| v > t)
            };
            let components = label(fg.view(), Connectivity::Eight);
            let dist = crate::ops::distance::distance_transform_edt(fg.view());
            // The per-object rule's per-pixel thresholds in every third case.
            let per: Vec<f32> = (0..=components.count())
                .map(|l| 0.1 + (l % 4) as f32 / 20.0)
                .collect();
            let tmap = (case % 3 == 0).then(|| PixelThresholds::new(components.image(), &per));
            // The reference reads them from a field-sized image.
            let tmap_image = tmap.map(|m| m.labels.map(|l| m.per[l as usize]));
            // Smoothing each box (widened by the kernel's radius) gives the objects of the
            // whole field's smoothing: σ small and large against the boxes, boxes at the
            // field's edges, the all-foreground field.
            for sigma in [0.8f32, 2.6, 7.0] {
                let whole = crate::ops::filter::gaussian_blur(img.view(), sigma);
                let run = |s: DeclumpSmoothing| {
                    declump_by_dynamics(s, components.clone(), &dist, (t, tmap), 0.2)
                };
                assert_eq!(
                    run(DeclumpSmoothing::InBoxes(&img, sigma)),
                    run(DeclumpSmoothing::Field(whole)),
                    "case {case}, sigma {sigma}"
                );
            }
            for rel in [0.0f32, 0.2, 0.6] {
                let fast = declump_by_dynamics(
                    DeclumpSmoothing::Field(img.clone()),
                    components.clone(),
                    &dist,
                    (t, tmap),
                    rel,
                );
                let reference = declump_by_dynamics_full_frame(
                    img.clone(),
                    &fg,
                    &components,
                    &dist,
                    (t, tmap_image.as_ref()),
                    rel,
                );
                assert_eq!(fast, reference, "case {case}, {w}x{h}, depth {rel}");
                boxes_only += usize::from(fast.count() > 1);
            }
        }
        // Both ways through `flood_in_boxes` are exercised.
        let field = FIELD_FLOODS.with(|n| n.get());
        assert!(
            boxes_only > 100 && field >= 2,
            "{boxes_only} fields with several objects, {field} flooded whole"
        );
    }

    #[test]
    fn weird_params_do_not_panic() {
        let img = Image::from_fn(32, 32, |r, c| {
            if (r as i32 - 16).pow(2) + (c as i32 - 16).pow(2) < 64 {
                200u8
            } else {
                10
            }
        });
        let p = NucleiParams {
            smoothing_sigma: f32::NAN,
            threshold_correction: f32::INFINITY,
            threshold_min: 2.0,
            threshold_max: -1.0,
            min_diameter: f32::NAN,
            max_diameter: -3.0,
            min_seed_distance: Some(0),
            ..NucleiParams::default()
        };
        let _ = segment_nuclei(img.view(), &p);
        let p = NucleiParams {
            min_diameter: 0.0,
            max_diameter: f32::INFINITY,
            ..NucleiParams::default()
        };
        assert_eq!(segment_nuclei(img.view(), &p).labels.count(), 1);
    }

    /// Discs of radius `r` at `centres` on a `w`×`h` mask.
    fn discs(w: usize, h: usize, centres: &[(f64, f64, f64)]) -> Image<bool> {
        Image::from_fn(w, h, |y, x| {
            centres
                .iter()
                .any(|&(cy, cx, r)| (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r)
        })
    }

    #[test]
    fn diameter_estimate_ignores_clumps_and_debris() {
        // Four isolated discs of radius 10, a clump of three touching discs of radius 10 in
        // a row (area ≈ 3 π r², inscribed radius 10: not round) and two 3-px specks.
        let mut c = vec![(20.0, 20.0, 10.0), (20.0, 60.0, 10.0), (60.0, 20.0, 10.0)];
        c.push((60.0, 60.0, 10.0));
        c.extend([
            (100.0, 20.0, 10.0),
            (100.0, 38.0, 10.0),
            (100.0, 56.0, 10.0),
        ]);
        c.extend([(140.0, 10.0, 1.0), (140.0, 30.0, 1.0)]);
        let fg = discs(80, 160, &c);
        let comps = label(fg.view(), Connectivity::Eight);
        assert_eq!(comps.count(), 7);
        let dist = distance_transform_edt(fg.view());
        let d = estimate_diameter(&comps, &dist, 0).unwrap();
        // EDT to the nearest background pixel: the centre of a radius-10 disc is 11 px away.
        assert!((20.0..=22.0).contains(&d), "{d}");
        // Fewer than three round objects: no estimate.
        let fg = discs(80, 80, &[(20.0, 20.0, 10.0), (60.0, 60.0, 10.0)]);
        let comps = label(fg.view(), Connectivity::Eight);
        let dist = distance_transform_edt(fg.view());
        assert_eq!(estimate_diameter(&comps, &dist, 0), None);
    }

    #[test]
    fn auto_scale_keeps_large_textured_nuclei_whole() {
        // Six nuclei 60 px across with bright 3-px grains inside: with the fixed
        // 6-px declumping scale each breaks into pieces; scaled to the field it stays one.
        let centres: Vec<(f64, f64, f64)> = (0..6)
            .map(|k| {
                (
                    40.0 + 80.0 * (k / 3) as f64,
                    40.0 + 80.0 * (k % 3) as f64,
                    30.0,
                )
            })
            .collect();
        let fg = discs(240, 160, &centres);
        let img = Image::from_fn(240, 160, |y, x| {
            let grain = ((y / 5) + (x / 5)) % 2 == 0 && y % 5 < 3 && x % 5 < 3;
            match (fg.get(y, x), grain) {
                (true, true) => 50000u16,
                (true, false) => 30000,
                _ => 1000,
            }
        });
        let auto = segment_nuclei(img.view(), &NucleiParams::default());
        assert_eq!(auto.labels.count(), 6);
        let fixed = NucleiParams {
            auto_scale: false,
            ..NucleiParams::default()
        };
        assert!(segment_nuclei(img.view(), &fixed).labels.count() > 6);
    }

    #[test]
    fn outlines_grow_by_at_most_one_ring_above_their_level() {
        // Three blurred discs (soft edges, as a microscope's): the outline step adds pixels
        // only on the 4-connected ring around the declumped objects, and only above the
        // outline level; without a growth limit they grow further.
        let fg = discs(
            90,
            40,
            &[(20.0, 15.0, 8.0), (20.0, 45.0, 8.0), (20.0, 75.0, 6.0)],
        );
        let sharp = Image::from_fn(90, 40, |y, x| if fg.get(y, x) { 40000f32 } else { 2000.0 });
        let img = crate::ops::filter::gaussian_blur(sharp.view(), 2.5).map(|v| v.round() as u16);
        let core = NucleiParams {
            outline_contrast: 0.0,
            ..NucleiParams::default()
        };
        let a = segment_nuclei(img.view(), &core).labels;
        let b = segment_nuclei(img.view(), &NucleiParams::default()).labels;
        assert_eq!((a.count(), b.count()), (3, 3));
        let (la, lb) = (a.image(), b.image());
        let mut grown = 0;
        for y in 0..40 {
            for x in 0..90 {
                let (va, vb) = (la.get(y, x), lb.get(y, x));
                if va != 0 {
                    assert_eq!(va, vb, "a core pixel keeps its object ({y}, {x})");
                } else if vb != 0 {
                    grown += 1;
                    let ring = [(0i64, 1i64), (0, -1), (1, 0), (-1, 0)]
                        .iter()
                        .any(|&(dy, dx)| {
                            let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                            (0..40).contains(&yy)
                                && (0..90).contains(&xx)
                                && la.get(yy as usize, xx as usize) == vb
                        });
                    assert!(ring, "({y}, {x}) is not on the ring of object {vb}");
                }
            }
        }
        assert!(grown > 0, "the soft edges grow");
        // Growth 0 disables the step; an unlimited growth reaches further.
        let off = NucleiParams {
            outline_max_growth: 0.0,
            ..NucleiParams::default()
        };
        assert_eq!(segment_nuclei(img.view(), &off).labels, a);
        let free = NucleiParams {
            outline_max_growth: f32::INFINITY,
            ..NucleiParams::default()
        };
        let c = segment_nuclei(img.view(), &free).labels;
        let area = |l: &Labels| l.image().as_slice().iter().filter(|&&v| v != 0).count();
        assert!(area(&c) > area(&b), "{} vs {}", area(&c), area(&b));
    }

    #[test]
    fn unit_scale_by_the_reciprocal_equals_the_division() {
        fn every_value<T: Pixel>(img: Image<T>) {
            let got = unit_scale(img.view());
            for (&v, &g) in img.as_slice().iter().zip(got.as_slice()) {
                let want = (v.to_f64() / T::MAX) as f32;
                assert_eq!(g.to_bits(), want.to_bits(), "{v:?}");
            }
        }
        let all16 = Image::from_fn(256, 256, |r, c| (r * 256 + c) as u16);
        every_value(all16.clone());
        every_value(Image::from_fn(16, 16, |r, c| (r * 16 + c) as u8));
        // The Gaussian's own scaling of 16-bit rows is the same.
        let scaled = unit_scale(all16.view());
        for (&v, &g) in all16.as_slice().iter().zip(scaled.as_slice()) {
            assert_eq!(crate::ops::filter::unit_scale_u16(v).to_bits(), g.to_bits());
        }
    }

    /// The 16-bit field smoothed without its scaled copy (CPU backend and the trait's
    /// default) is the blur of the scaled copy, bit for bit, for several sigmas and sizes;
    /// the segmentation takes that path only for u16 pixels.
    #[test]
    fn unscaled_16_bit_smoothing_equals_the_smoothing_of_the_scaled_field() {
        use crate::backend::RequiredOnly;
        let mut rnd = crate::testing::lcg32(0x1605);
        for (w, h) in [(1, 1), (5, 40), (37, 29), (70, 9)] {
            let img = Image::from_fn(w, h, |_, _| (rnd() & 0xffff) as u16);
            let scaled = unit_scale(img.view());
            for sigma in [0.0f32, 0.4, 1.0, 2.5] {
                let want = CpuBackend.gaussian_blur(scaled.view(), sigma).unwrap();
                for got in [
                    CpuBackend
                        .gaussian_blur_unit_u16(img.view(), sigma)
                        .unwrap(),
                    RequiredOnly
                        .gaussian_blur_unit_u16(img.view(), sigma)
                        .unwrap(),
                ] {
                    let bits = |i: &Image<f32>| {
                        i.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    };
                    assert_eq!(bits(&got), bits(&want), "{w}x{h}, sigma {sigma}");
                }
            }
        }
        assert!(<u16 as Pixel>::as_u16(Image::new(3, 2, 7u16).view()).is_some());
        assert!(<u8 as Pixel>::as_u16(Image::new(2, 2, 0u8).view()).is_none());
        assert!(<f32 as Pixel>::as_u16(Image::new(2, 2, 0f32).view()).is_none());
    }

    /// The ring's flood negates only the pixels it floods; the watershed then gives what it
    /// gives on the fully negated image (it reads no elevation outside its mask).
    #[test]
    fn ring_flood_equals_the_flood_of_the_negated_image() {
        let mut rnd = crate::testing::lcg32(78);
        let before = RING_FIELD_FLOODS.with(|n| n.get());
        let mut floods = 0;
        for case in 0..100 {
            let (w, h) = (1 + (rnd() % 30) as usize, 1 + (rnd() % 30) as usize);
            let fg = Image::from_fn(w, h, |_, _| rnd() % 10 < 4);
            let objects = label(fg.view(), Connectivity::Four);
            let levels = 1 + rnd() % 20;
            // Coarse levels: plateaus and ties everywhere. In even cases the objects' pixels
            // (the markers) take distinct values, so the ring alone is flooded, with ties
            // left among its own pixels.
            let lab = objects.image().as_slice();
            let smoothed = Image::from_fn(w, h, |r, c| {
                let v = rnd();
                if case % 2 == 0 && lab[r * w + c] != 0 {
                    1.0 + (v >> 8) as f32 / (1u32 << 24) as f32
                } else {
                    (v % levels) as f32 / 7.0
                }
            });
            let ring: Vec<usize> = (0..w * h)
                .filter(|&i| lab[i] == 0 && !rnd().is_multiple_of(3))
                .collect();
            let mut markers = Image::new(w, h, 0u32);
            let mut mask = Image::new(w, h, false);
            for &i in &ring {
                mask.as_mut_slice()[i] = true;
                for n in neighbours4(i, w, h).filter(|&n| lab[n] != 0) {
                    markers.as_mut_slice()[n] = lab[n];
                    mask.as_mut_slice()[n] = true;
                }
            }
            let negated = smoothed.map(|v| -v);
            let flooded = watershed(
                negated.view(),
                &Labels::new(markers, objects.count()),
                Some(mask.view()),
            );
            let mut want = objects.image().clone();
            for &i in &ring {
                want.as_mut_slice()[i] = flooded.image().as_slice()[i];
            }
            floods += usize::from(!ring.is_empty());
            let got = flood_from_ring(smoothed, objects.clone(), ring);
            assert_eq!(got.image(), &want, "case {case}");
        }
        // Both the flood of the ring alone and, where its markers tie, the flood over the
        // field ran.
        let field = RING_FIELD_FLOODS.with(|n| n.get()) - before;
        eprintln!("{field} of {floods} ring floods over the field");
        assert!(field >= 10 && field + 30 <= floods, "{field} of {floods}");
    }

    /// The one-ring growth equals the whole-field growth it short-cuts, on random objects,
    /// outlines and elevations (plateaus included), objects at the edges.
    #[test]
    fn ring_growth_equals_the_whole_field_growth() {
        let mut rnd = crate::testing::lcg32(77);
        let mut grew = 0;
        for case in 0..150 {
            let (w, h) = (1 + (rnd() % 40) as usize, 1 + (rnd() % 30) as usize);
            let fg = Image::from_fn(w, h, |_, _| rnd() % 10 < 4);
            let objects = label(fg.view(), Connectivity::Four);
            let outline = Image::from_fn(w, h, |_, _| rnd() % 10 < 7);
            let levels = 1 + rnd() % 20;
            let smoothed = Image::from_fn(w, h, |_, _| (rnd() % levels) as f32 / 7.0);
            for max in [1.0f32, 1.2, 1.414] {
                let got = grow_outlines(
                    &CpuBackend,
                    smoothed.clone(),
                    objects.clone(),
                    outline.clone(),
                    max,
                )
                .unwrap();
                let want = grow_outlines_whole_field(
                    &CpuBackend,
                    smoothed.clone(),
                    objects.clone(),
                    outline.clone(),
                    max,
                )
                .unwrap();
                assert_eq!(got, want, "case {case}, {w}x{h}, max {max}");
                grew += usize::from(got != objects);
            }
        }
        assert!(grew > 200, "{grew} of 450 grew");
    }

    #[test]
    fn hybrid_seeds_need_height_and_a_dip() {
        // One component: a bright disc (1.0) with a dim U (0.2, below the threshold 0.5)
        // attached to its right; the flood in raster order meets the U's two arms as two
        // zero-height basins, which merge with each other and with the disc without any dip.
        // A second component, a dim square, never rises above the threshold.
        let (w, h) = (40, 30);
        let in_u = |y: usize, x: usize| {
            (4..20).contains(&y)
                && ((17..20).contains(&x)
                    || (31..34).contains(&x)
                    || (y >= 17 && (17..34).contains(&x)))
        };
        let in_disc =
            |y: usize, x: usize| (y as f64 - 10.0).powi(2) + (x as f64 - 11.0).powi(2) <= 36.0;
        let in_square = |y: usize, x: usize| (24..28).contains(&y) && (25..29).contains(&x);
        let smooth = Image::from_fn(w, h, |y, x| {
            if in_disc(y, x) {
                1.0f32
            } else if in_u(y, x) || in_square(y, x) {
                0.2
            } else {
                0.0
            }
        });
        let fg = smooth.map(|v| v > 0.0);
        let comps = label(fg.view(), Connectivity::Eight);
        assert_eq!(comps.count(), 2);
        let dist = distance_transform_edt(fg.view());
        let out = declump_by_dynamics(
            DeclumpSmoothing::Field(smooth.clone()),
            comps.clone(),
            &dist,
            (0.5, None),
            0.03,
        );
        // One object: the disc's seed floods the whole first component; the dim square is
        // no nucleus. (Counting zero-height basins as seeds gave four objects here.)
        assert_eq!(out.count(), 1);
        for (i, (&l, &s)) in out
            .image()
            .as_slice()
            .iter()
            .zip(smooth.as_slice())
            .enumerate()
        {
            let (y, x) = (i / w, i % w);
            let want = u32::from(in_disc(y, x) || in_u(y, x));
            assert_eq!(l, want, "({y}, {x}) = {s}");
        }
        // Two discs joined by a dim neck: two seeds, each at a positive height with a dip.
        let two = Image::from_fn(w, h, |y, x| {
            let d1 = (y as f64 - 10.0).powi(2) + (x as f64 - 8.0).powi(2) <= 25.0;
            let d2 = (y as f64 - 10.0).powi(2) + (x as f64 - 28.0).powi(2) <= 25.0;
            let neck = (9..12).contains(&y) && (8..28).contains(&x);
            if d1 || d2 {
                1.0f32
            } else if neck {
                0.6
            } else {
                0.0
            }
        });
        let fg = two.map(|v| v > 0.0);
        let comps = label(fg.view(), Connectivity::Eight);
        let dist = distance_transform_edt(fg.view());
        let out = declump_by_dynamics(
            DeclumpSmoothing::Field(two),
            comps.clone(),
            &dist,
            (0.5, None),
            0.03,
        );
        assert_eq!(out.count(), 2);
    }

    #[test]
    fn total_order_bits_orders_like_total_cmp() {
        let vals = [
            f32::NEG_INFINITY,
            -2.5,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            0.3,
            7.0,
            f32::INFINITY,
        ];
        for &a in &vals {
            for &b in &vals {
                assert_eq!(
                    total_order_bits(a).cmp(&total_order_bits(b)),
                    a.total_cmp(&b),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn params_round_trip_and_reject_unknown_fields() {
        let p: NucleiParams = serde_json::from_str(r#"{"min_diameter": 12}"#).unwrap();
        assert_eq!(p.min_diameter, 12.0);
        assert_eq!(p.max_diameter, 80.0);
        assert!(serde_json::from_str::<NucleiParams>(r#"{"nope": 1}"#).is_err());
        // round(6 / 2) and [ceil(π·3²), floor(π·40²)]
        assert_eq!(NucleiParams::default().seed_distance(), 3);
        assert_eq!(NucleiParams::default().area_range(), (29, 5026));
    }

    /// The CPU reference behind the trait, recording which stages were called, and failing
    /// at one of them when asked.
    struct Recording {
        calls: std::sync::Mutex<Vec<&'static str>>,
        fail_at: Option<&'static str>,
        /// Fail the Gaussian after this many successful calls.
        fail_after_blurs: Option<usize>,
    }

    impl Recording {
        fn new(fail_at: Option<&'static str>) -> Recording {
            Recording {
                calls: std::sync::Mutex::new(Vec::new()),
                fail_at,
                fail_after_blurs: None,
            }
        }
        fn call(&self, stage: &'static str) -> Result<(), Error> {
            self.calls.lock().unwrap().push(stage);
            if self.fail_at == Some(stage) {
                return Err(Error::Backend {
                    device: "test".into(),
                    message: format!("{stage} lost"),
                });
            }
            Ok(())
        }
    }

    impl Backend for Recording {
        fn name(&self) -> String {
            "recording".into()
        }
        fn gaussian_blur(&self, i: ImageView<f32>, s: f32) -> Result<Image<f32>, Error> {
            let done = self
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|&&c| c == "gaussian_blur")
                .count();
            if self.fail_after_blurs.is_some_and(|n| done >= n) {
                return Err(Error::Backend {
                    device: "test".into(),
                    message: "gaussian_blur lost".into(),
                });
            }
            self.call("gaussian_blur")?;
            CpuBackend.gaussian_blur(i, s)
        }
        fn histogram(
            &self,
            i: ImageView<f32>,
            n: usize,
        ) -> Result<Option<threshold::Histogram>, Error> {
            self.call("histogram")?;
            CpuBackend.histogram(i, n)
        }
        fn binary_erosion(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
            self.call("binary_erosion")?;
            CpuBackend.binary_erosion(m)
        }
        fn binary_dilation(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
            self.call("binary_dilation")?;
            CpuBackend.binary_dilation(m)
        }
        fn fill_holes(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
            self.call("fill_holes")?;
            CpuBackend.fill_holes(m)
        }
        fn distance_transform_edt(&self, m: ImageView<bool>) -> Result<Image<f32>, Error> {
            self.call("distance_transform_edt")?;
            CpuBackend.distance_transform_edt(m)
        }
        fn label(&self, m: ImageView<bool>, c: Connectivity) -> Result<Labels, Error> {
            self.call("label")?;
            CpuBackend.label(m, c)
        }
        fn measure_shape(
            &self,
            l: &Labels,
        ) -> Result<Vec<crate::ops::measure::ObjectShape>, Error> {
            self.call("measure_shape")?;
            CpuBackend.measure_shape(l)
        }
        fn filter_by_area(&self, l: &Labels, min: u64, max: u64) -> Result<Labels, Error> {
            self.call("filter_by_area")?;
            CpuBackend.filter_by_area(l, min, max)
        }
        fn segment_otsu(
            &self,
            f: FieldView,
            p: &OtsuParams,
        ) -> Result<crate::backend::OtsuObjects, Error> {
            self.call("segment_otsu")?;
            crate::backend::segment_otsu_by_stages(self, f, p)
        }
    }

    /// Eight nuclei of radius 9 on a dim background, two pairs touching.
    fn eight_nuclei() -> Image<u16> {
        let mut c: Vec<(f64, f64, f64)> = (0..4)
            .map(|k| (20.0, 20.0 + 30.0 * k as f64, 9.0))
            .collect();
        c.extend([(60.0, 20.0, 9.0), (60.0, 36.0, 9.0)]);
        c.extend([(60.0, 80.0, 9.0), (74.0, 80.0, 9.0)]);
        let fg = discs(130, 90, &c);
        Image::from_fn(130, 90, |y, x| if fg.get(y, x) { 30000 } else { 2000 })
    }

    #[test]
    fn the_hot_stages_go_through_the_backend() {
        let img = eight_nuclei();
        // Otsu: the method whose histogram runs on the backend.
        let p = NucleiParams {
            threshold_method: ThresholdMethod::Otsu,
            ..NucleiParams::default()
        };
        let rec = Recording::new(None);
        let got = segment_nuclei_with(&rec, img.view(), &p).unwrap();
        assert_eq!(got, segment_nuclei(img.view(), &p));
        assert_eq!(got.labels.count(), 8);
        let calls = rec.calls.lock().unwrap().clone();
        for stage in [
            "gaussian_blur",
            "histogram",
            "fill_holes",
            "label",
            "distance_transform_edt",
            "filter_by_area",
        ] {
            assert!(calls.contains(&stage), "{stage} not called: {calls:?}");
        }
    }

    #[test]
    fn a_plain_otsu_recipe_is_one_segment_otsu_call_with_the_general_path_s_result() {
        // The eight nuclei and one more cut by the bottom edge.
        let mut img = eight_nuclei();
        let edge = discs(130, 90, &[(86.0, 115.0, 8.0)]);
        for (v, &e) in img.as_mut_slice().iter_mut().zip(edge.as_slice()) {
            if e {
                *v = 30000;
            }
        }
        let plain = NucleiParams {
            min_diameter: 4.0,
            ..NucleiParams::plain_otsu()
        };
        assert!(NucleiParams::plain_otsu().is_plain_otsu());
        for exclude_border in [false, true] {
            let p = NucleiParams {
                exclude_border,
                ..plain.clone()
            };
            let rec = Recording::new(None);
            let got = segment_nuclei_with(&rec, img.view(), &p).unwrap();
            let calls = rec.calls.lock().unwrap().clone();
            assert_eq!(calls.first(), Some(&"segment_otsu"), "{calls:?}");
            assert_eq!(calls.iter().filter(|&&c| c == "segment_otsu").count(), 1);
            assert!(!calls.contains(&"measure_shape"), "{calls:?}");
            // An upper bound below 1 but above the threshold takes the general path, which
            // must give the same objects and threshold.
            let general = NucleiParams {
                threshold_max: 0.99,
                ..p.clone()
            };
            let rec = Recording::new(None);
            let want = segment_nuclei_with(&rec, img.view(), &general).unwrap();
            assert!(!rec.calls.lock().unwrap().contains(&"segment_otsu"));
            assert_eq!(got, want);
            // The two touching pairs stay joined without declumping; the edge nucleus goes
            // with `exclude_border`.
            assert_eq!(got.labels.count(), if exclude_border { 6 } else { 7 });
        }
        // Any option of the general path keeps it there.
        for p in [
            NucleiParams::default(),
            NucleiParams {
                background_radius: 10.0,
                ..plain.clone()
            },
            NucleiParams {
                object_contrast: 0.4,
                ..plain.clone()
            },
            NucleiParams {
                declump: true,
                ..plain.clone()
            },
            NucleiParams {
                auto_scale: true,
                ..plain.clone()
            },
            NucleiParams {
                fill_holes: false,
                ..plain.clone()
            },
            NucleiParams {
                threshold_correction: 1.1,
                ..plain.clone()
            },
            NucleiParams {
                threshold_log: true,
                ..plain.clone()
            },
            NucleiParams {
                threshold_method: ThresholdMethod::Li,
                ..plain.clone()
            },
        ] {
            let rec = Recording::new(None);
            segment_nuclei_with(&rec, img.view(), &p).unwrap();
            assert!(
                !rec.calls.lock().unwrap().contains(&"segment_otsu"),
                "{p:?}"
            );
        }
        // A failing device fails the field.
        let rec = Recording::new(Some("segment_otsu"));
        let err = segment_nuclei_with(&rec, img.view(), &plain).expect_err("lost");
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    }

    #[test]
    fn the_declumping_gaussian_of_the_image_goes_through_the_backend() {
        let img = eight_nuclei();
        for method in [
            DeclumpMethod::Hybrid,
            DeclumpMethod::Intensity,
            DeclumpMethod::Shape,
        ] {
            let p = NucleiParams {
                declump_method: method,
                ..NucleiParams::default()
            };
            let rec = Recording::new(None);
            let got = segment_nuclei_with(&rec, img.view(), &p).unwrap();
            assert_eq!(got, segment_nuclei(img.view(), &p), "{method:?}");
            let calls = rec.calls.lock().unwrap().clone();
            let blurs = calls.iter().filter(|&&c| c == "gaussian_blur").count();
            // The first smoothing and the declumping's; the shape method smooths the
            // distance map on the CPU, in each component's box (a few hundred pixels each).
            if method == DeclumpMethod::Shape {
                assert_eq!(blurs, 1, "{method:?}: {calls:?}");
                continue;
            }
            assert_eq!(blurs, 2, "{method:?}: {calls:?}");
            // A failing device there fails the field.
            let rec = Recording {
                fail_after_blurs: Some(1),
                ..Recording::new(None)
            };
            let err = segment_nuclei_with(&rec, img.view(), &p).expect_err("second blur");
            assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        }
    }

    #[test]
    fn a_failing_backend_is_an_error_not_a_panic() {
        let img = eight_nuclei();
        for stage in [
            "gaussian_blur",
            "histogram",
            "fill_holes",
            "label",
            "distance_transform_edt",
            "filter_by_area",
        ] {
            let rec = Recording::new(Some(stage));
            let p = NucleiParams {
                threshold_method: ThresholdMethod::Otsu,
                ..NucleiParams::default()
            };
            let err = segment_nuclei_with(&rec, img.view(), &p).expect_err(stage);
            assert_eq!(
                err,
                Error::Backend {
                    device: "test".into(),
                    message: format!("{stage} lost"),
                }
            );
        }
    }
}
