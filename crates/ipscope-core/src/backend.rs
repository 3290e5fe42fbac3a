//! The device seam: the hot operations an assay needs, behind one trait, so that no assay
//! knows whether it runs on the CPU or a GPU.
//!
//! [`CpuBackend`] delegates to the reference functions in [`crate::ops`]; the GPU
//! implementation lives in the `ipscope-gpu` crate. Every implementation must give the
//! reference's results: identical for integer and label outputs (labels numbered in raster
//! order of first pixel, masks, histogram counts, squared distances), and within the
//! tolerance its documentation states for floating-point ones. Methods return
//! [`Error::Backend`] when the device fails (device lost, out of memory, an image beyond
//! what it can hold), never a panic; the CPU backend never fails.

use std::any::Any;
use std::sync::Arc;

use ipscope_image::{Image, ImageView, Labels};

use crate::ops::distance::{distance_transform_edt, distance_transform_edt_of_objects};
use crate::ops::filter::{gaussian_blur, gaussian_blur_unit_u16, unit_scale_u16};
use crate::ops::label::{label, Connectivity};
use crate::ops::measure::{measure_shape, ObjectShape};
use crate::ops::morphology;
use crate::ops::rank;
use crate::ops::threshold::{self, Histogram};
use crate::ops::watershed;
use crate::Error;

/// A foreground after [`Backend::fill_label_distance`]: the (filled) mask, its connected
/// components, and its distance transform when asked for and there is an object.
#[derive(Debug, Clone, PartialEq)]
pub struct FilledObjects {
    /// The mask, holes filled when asked.
    pub mask: Image<bool>,
    /// Its connected components, numbered in raster order of first pixel.
    pub labels: Labels,
    /// [`distance_transform_edt`] of `mask`; `None` when not asked for or without objects.
    pub distance: Option<Image<f32>>,
}

/// The result of [`Backend::segment_otsu`].
#[derive(Debug, Clone, PartialEq)]
pub struct OtsuObjects {
    /// Otsu's threshold of the smoothed image; `None` when it has none (empty, constant or
    /// without finite pixels), and then there is no object.
    pub threshold: Option<f32>,
    /// The kept objects, numbered `1..=N` in raster order of first pixel.
    pub labels: Labels,
    /// Their shape measurements, in label order (empty unless [`OtsuParams::shapes`]).
    pub shapes: Vec<ObjectShape>,
}

/// The settings of [`Backend::segment_otsu`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OtsuParams {
    /// Gaussian σ (pixels) before thresholding; 0 disables smoothing. Default 1.
    pub sigma: f32,
    /// Bins of Otsu's histogram. Default 256 (scikit-image's).
    pub nbins: usize,
    /// Objects with fewer pixels are dropped. Default 0.
    pub min_area: u64,
    /// Objects with more pixels are dropped. Default `u64::MAX`.
    pub max_area: u64,
    /// Measure the kept objects' shapes. Default true.
    pub shapes: bool,
}

impl Default for OtsuParams {
    fn default() -> Self {
        OtsuParams {
            sigma: 1.0,
            nbins: 256,
            min_area: 0,
            max_area: u64::MAX,
            shapes: true,
        }
    }
}

/// The image a one-call segmentation ([`Backend::segment_otsu`]) starts from.
#[derive(Debug, Clone, Copy)]
pub enum FieldView<'a> {
    /// f32 pixels, as they are.
    F32(ImageView<'a, f32>),
    /// 16-bit samples, each scaled onto 0..=1 by [`unit_scale_u16`] first (the nuclei
    /// segmentation's input), so that a device may take them at 2 bytes a pixel.
    UnitU16(ImageView<'a, u16>),
}

impl FieldView<'_> {
    /// (width, height).
    pub fn dims(&self) -> (usize, usize) {
        match self {
            FieldView::F32(v) => (v.width(), v.height()),
            FieldView::UnitU16(v) => (v.width(), v.height()),
        }
    }
}

/// [`Backend::segment_otsu`] stage by stage on `backend`: [`Backend::gaussian_blur`] (or
/// [`Backend::gaussian_blur_unit_u16`]),
/// [`Backend::otsu`], `pixel > threshold`, [`Backend::fill_holes`], the 8-connected
/// [`Backend::label`], [`Backend::filter_by_area_owned`] and [`Backend::measure_shape`].
/// With [`CpuBackend`] it is the reference of every backend's `segment_otsu`.
pub fn segment_otsu_by_stages<B: Backend + ?Sized>(
    backend: &B,
    field: FieldView,
    p: &OtsuParams,
) -> Result<OtsuObjects, Error> {
    let (w, h) = field.dims();
    let smoothed = match field {
        FieldView::F32(img) => backend.gaussian_blur(img, p.sigma)?,
        FieldView::UnitU16(img) => backend.gaussian_blur_unit_u16(img, p.sigma)?,
    };
    let Some(t) = backend.otsu(smoothed.view(), p.nbins)? else {
        return Ok(OtsuObjects {
            threshold: None,
            labels: Labels::empty(w, h),
            shapes: Vec::new(),
        });
    };
    let fg = smoothed.map(|v| v > t);
    drop(smoothed);
    let filled = backend.fill_holes(fg.view())?;
    drop(fg);
    let labels = backend.label(filled.view(), Connectivity::Eight)?;
    drop(filled);
    let labels = backend.filter_by_area_owned(labels, p.min_area, p.max_area)?;
    let shapes = if p.shapes {
        backend.measure_shape(&labels)?
    } else {
        Vec::new()
    };
    Ok(OtsuObjects {
        threshold: Some(t),
        labels,
        shapes,
    })
}

/// The field threshold [`Backend::smooth_and_flatten`] takes of its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatThreshold {
    /// None (the caller thresholds the result itself).
    None,
    /// [`Backend::otsu`] with 256 bins.
    Otsu,
    /// [`Backend::li`].
    Li,
}

/// The settings of [`Backend::smooth_and_flatten`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlattenParams {
    /// Gaussian σ (pixels); 0 disables smoothing.
    pub sigma: f32,
    /// Radius of the square grey opening subtracted from the result (a top-hat); 0
    /// subtracts nothing.
    pub radius: usize,
    /// Also return the unsmoothed field minus the same opening.
    pub keep_field: bool,
    /// With `keep_field`: a backend that can keep images where it made them (a device's
    /// memory) returns the field as [`Flattened::kept`], for its own
    /// [`Backend::gaussian_blur_kept`], instead of as [`Flattened::field`]; one that keeps
    /// none returns `field` as without it. For callers that only blur the field again.
    pub keep_on_backend: bool,
    /// The threshold to take of the result.
    pub threshold: FlatThreshold,
}

/// The result of [`Backend::smooth_and_flatten`].
#[derive(Debug, Clone, PartialEq)]
pub struct Flattened {
    /// The smoothed field minus its grey opening.
    pub smoothed: Image<f32>,
    /// The field (scaled onto 0..=1 for 16-bit samples) minus the same opening, when asked.
    pub field: Option<Image<f32>>,
    /// The same field kept by the backend instead (see [`FlattenParams::keep_on_backend`]).
    pub kept: Option<KeptImage>,
    /// The threshold asked for, of `smoothed`; `None` when none was asked or it has none.
    pub threshold: Option<f32>,
}

/// An image a backend keeps where it made it (a device's memory) for a later call of the
/// same backend ([`Flattened::kept`], [`Backend::gaussian_blur_kept`]), so that it need not
/// come back to the host and go up again. Only that backend can read it; dropping the last
/// clone frees it.
#[derive(Clone)]
pub struct KeptImage {
    width: usize,
    height: usize,
    inner: Arc<dyn Any + Send + Sync>,
}

impl KeptImage {
    /// A `width × height` image held by `inner`, which only the backend that made it reads.
    pub fn new(width: usize, height: usize, inner: Arc<dyn Any + Send + Sync>) -> Self {
        KeptImage {
            width,
            height,
            inner,
        }
    }

    /// `(width, height)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// What holds the image, for the backend that made it to downcast.
    pub fn inner(&self) -> &(dyn Any + Send + Sync) {
        self.inner.as_ref()
    }
}

impl std::fmt::Debug for KeptImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeptImage({}x{})", self.width, self.height)
    }
}

/// The same kept image (clones of one), not equal pixels.
impl PartialEq for KeptImage {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// [`Backend::smooth_and_flatten`] stage by stage on `backend`: [`Backend::gaussian_blur`]
/// (or [`Backend::gaussian_blur_unit_u16`]), [`Backend::grey_opening`] subtracted where it is
/// finite, then [`Backend::otsu`] or [`Backend::li`]. With [`CpuBackend`] it is the
/// reference of every backend's `smooth_and_flatten`.
pub fn smooth_and_flatten_by_stages<B: Backend + ?Sized>(
    backend: &B,
    field: FieldView,
    p: &FlattenParams,
) -> Result<Flattened, Error> {
    let (mut kept, mut smoothed) = match field {
        FieldView::UnitU16(img) if !p.keep_field => {
            (None, backend.gaussian_blur_unit_u16(img, p.sigma)?)
        }
        FieldView::UnitU16(img) => {
            let unit = img.map(unit_scale_u16);
            let smoothed = backend.gaussian_blur(unit.view(), p.sigma)?;
            (Some(unit), smoothed)
        }
        FieldView::F32(img) => (
            p.keep_field.then(|| img.to_image()),
            backend.gaussian_blur(img, p.sigma)?,
        ),
    };
    if p.radius > 0 && !smoothed.is_empty() {
        let bg = backend.grey_opening(smoothed.view(), p.radius)?;
        let subtract = |img: &mut Image<f32>| {
            for (s, &b) in img.as_mut_slice().iter_mut().zip(bg.as_slice()) {
                if b.is_finite() {
                    *s -= b;
                }
            }
        };
        subtract(&mut smoothed);
        if let Some(k) = kept.as_mut() {
            subtract(k);
        }
    }
    let threshold = match p.threshold {
        FlatThreshold::None => None,
        FlatThreshold::Otsu => backend.otsu(smoothed.view(), 256)?,
        FlatThreshold::Li => backend.li(smoothed.view())?,
    };
    Ok(Flattened {
        smoothed,
        field: kept,
        kept: None,
        threshold,
    })
}

/// The hot operations of segmentation and measurement, on some device.
pub trait Backend: Send + Sync {
    /// A short human-readable name of the device, e.g. `cpu` or `gpu: NVIDIA H100 (Vulkan)`.
    fn name(&self) -> String;

    /// [`gaussian_blur`]: `scipy.ndimage.gaussian_filter(mode='nearest', truncate=4.0)`.
    fn gaussian_blur(&self, img: ImageView<f32>, sigma: f32) -> Result<Image<f32>, Error>;

    /// [`Backend::gaussian_blur`] of an image this backend kept ([`Flattened::kept`]): the
    /// values of the blur of that image brought to the host. Default: an error, since a
    /// backend that keeps no images never made one (a kept image belongs to the backend
    /// that made it). A backend whose `smooth_and_flatten` returns kept images implements
    /// this, and a wrapper that forwards one forwards the other.
    fn gaussian_blur_kept(&self, img: &KeptImage, sigma: f32) -> Result<Image<f32>, Error> {
        let _ = sigma;
        Err(Error::Backend {
            device: self.name(),
            message: format!("{img:?} was kept by another backend; this one keeps no images"),
        })
    }

    /// [`Backend::gaussian_blur_kept`] where only the pixels of `within` are wanted: their
    /// values, and 0 elsewhere (a device then sends back only those pixels). `within` has
    /// the kept image's size. Default: the whole blur, then 0 outside `within`.
    fn gaussian_blur_kept_within(
        &self,
        img: &KeptImage,
        sigma: f32,
        within: ImageView<bool>,
    ) -> Result<Image<f32>, Error> {
        crate::ensure_shape(
            "the pixels wanted of a kept image",
            img.dims(),
            (within.width(), within.height()),
        )?;
        let mut out = self.gaussian_blur_kept(img, sigma)?;
        for r in 0..within.height() {
            for (v, &m) in out.row_mut(r).iter_mut().zip(within.row(r)) {
                if !m {
                    *v = 0.0;
                }
            }
        }
        Ok(out)
    }

    /// Whether the hybrid declumping smooths the scaled image itself, in each component's
    /// box widened by the kernel's radius (the same values there, over a fraction of the
    /// field on a nuclei field), instead of asking for the whole field's
    /// [`Backend::gaussian_blur`]. Default: the whole field (a device smooths it in one pass).
    fn declump_smoothing_in_boxes(&self) -> bool {
        false
    }

    /// [`Backend::gaussian_blur`] of a 16-bit image scaled onto 0..=1 (each pixel
    /// [`unit_scale_u16`]), as the nuclei segmentation smooths its input when it needs no
    /// other copy of the scaled pixels. Default: the scaled image, then its blur; the CPU
    /// scales each row as it reads it ([`gaussian_blur_unit_u16`], the same bits).
    fn gaussian_blur_unit_u16(&self, img: ImageView<u16>, sigma: f32) -> Result<Image<f32>, Error> {
        self.gaussian_blur(img.map(unit_scale_u16).view(), sigma)
    }

    /// [`threshold::histogram`]: `numpy.histogram` of the finite pixels; `None` when
    /// `nbins == 0` or no pixel is finite.
    fn histogram(&self, img: ImageView<f32>, nbins: usize) -> Result<Option<Histogram>, Error>;

    /// [`threshold::otsu`] from this backend's [`Backend::histogram`].
    fn otsu(&self, img: ImageView<f32>, nbins: usize) -> Result<Option<f32>, Error> {
        Ok(self
            .histogram(img, nbins)?
            .and_then(|hist| threshold::otsu_of_histogram(&hist)))
    }

    /// [`morphology::binary_erosion`] by the 4-connected cross.
    fn binary_erosion(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error>;

    /// [`morphology::binary_dilation`] by the 4-connected cross.
    fn binary_dilation(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error>;

    /// [`morphology::fill_holes`]: `scipy.ndimage.binary_fill_holes`.
    fn fill_holes(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error>;

    /// [`distance_transform_edt`]: exact Euclidean distance to the nearest background pixel.
    fn distance_transform_edt(&self, mask: ImageView<bool>) -> Result<Image<f32>, Error>;

    /// [`label`]: connected components numbered in raster order of first pixel.
    fn label(&self, mask: ImageView<bool>, conn: Connectivity) -> Result<Labels, Error>;

    /// [`measure_shape`]: area, centre and bounding box of every object `1..=count`.
    fn measure_shape(&self, labels: &Labels) -> Result<Vec<ObjectShape>, Error>;

    /// [`threshold::li`]: Li's minimum cross-entropy threshold of the finite pixels
    /// (`skimage.filters.threshold_li`); `None` for an image without finite pixels or a
    /// constant one. An implementation that sums in a different order states how far its
    /// threshold may be from the reference's. Default: the CPU reference.
    fn li(&self, img: ImageView<f32>) -> Result<Option<f32>, Error> {
        Ok(threshold::li(img))
    }

    /// [`rank::open`]: the grey opening with the (2r+1)² square (pixels outside the image
    /// take no part; NaN pixels neither). Default: the CPU reference.
    fn grey_opening(&self, img: ImageView<f32>, r: usize) -> Result<Image<f32>, Error> {
        Ok(rank::open(img, r))
    }

    /// The nuclei recipe's first steps in one call: the Gaussian of `field` (16-bit samples
    /// scaled onto 0..=1 first), minus its grey opening with the (2r+1)² square where that
    /// is finite (and the field minus the same, when asked), and the field threshold of the
    /// result. A device keeps the images on it between the steps. Default:
    /// [`smooth_and_flatten_by_stages`].
    fn smooth_and_flatten(&self, field: FieldView, p: &FlattenParams) -> Result<Flattened, Error> {
        smooth_and_flatten_by_stages(self, field, p)
    }

    /// [`watershed::watershed`]: floods `elevation` from `markers` (label > 0) inside `mask`,
    /// 4-connected (`skimage.segmentation.watershed(elevation, markers, mask=mask)`). Labels
    /// keep the marker values. An implementation that cannot reproduce the reference's
    /// priority-queue order on ties states the fraction of pixels it may assign differently.
    /// Default: the CPU reference, after checking that the three images have one size.
    fn watershed(
        &self,
        elevation: ImageView<f32>,
        markers: &Labels,
        mask: Option<ImageView<bool>>,
    ) -> Result<Labels, Error> {
        let size = (elevation.width(), elevation.height());
        crate::ensure_shape(
            "watershed markers",
            size,
            (markers.width(), markers.height()),
        )?;
        if let Some(m) = mask {
            crate::ensure_shape("watershed mask", size, (m.width(), m.height()))?;
        }
        Ok(watershed::watershed(elevation, markers, mask))
    }

    /// Hole filling (when `fill`), the connected components of the filled mask and, when
    /// `distance` and there is at least one object, its distance transform: the results of
    /// [`Backend::fill_holes`], [`Backend::label`] and [`Backend::distance_transform_edt`],
    /// in one call so that a device can keep the mask resident between the three instead of
    /// reading it back and uploading it twice more. Default: the three calls.
    fn fill_label_distance(
        &self,
        mask: Image<bool>,
        fill: bool,
        conn: Connectivity,
        distance: bool,
    ) -> Result<FilledObjects, Error> {
        // The unfilled mask is freed before the components and the distance map are made
        // (the field's largest buffers), not at the end of the call.
        let mask = if fill {
            let filled = self.fill_holes(mask.view())?;
            drop(mask);
            filled
        } else {
            mask
        };
        let labels = self.label(mask.view(), conn)?;
        let distance = if distance && labels.count() > 0 {
            Some(self.distance_of_components(mask.view(), &labels)?)
        } else {
            None
        };
        Ok(FilledObjects {
            mask,
            labels,
            distance,
        })
    }

    /// [`Backend::distance_transform_edt`] of `mask`, whose connected components are
    /// `labels` (the step of [`Backend::fill_label_distance`] that may use them). Default:
    /// the transform of the mask.
    fn distance_of_components(
        &self,
        mask: ImageView<bool>,
        _labels: &Labels,
    ) -> Result<Image<f32>, Error> {
        self.distance_transform_edt(mask)
    }

    /// [`crate::ops::label::filter_by_area`]: keeps the objects whose pixel count lies in `[min, max]`
    /// and renumbers them `1..=N` in raster order of first pixel (the size filter). Exact on
    /// every backend. Default: the CPU reference.
    fn filter_by_area(&self, labels: &Labels, min: u64, max: u64) -> Result<Labels, Error> {
        Ok(crate::ops::label::filter_by_area(labels, min, max))
    }

    /// [`Backend::filter_by_area`] of labels the caller gives up, so that a backend may
    /// renumber them where they lie. Default: [`Backend::filter_by_area`].
    fn filter_by_area_owned(&self, labels: Labels, min: u64, max: u64) -> Result<Labels, Error> {
        self.filter_by_area(&labels, min, max)
    }

    /// A global-threshold segmentation in one call ([`OtsuParams`]): Gaussian σ, Otsu's
    /// threshold, the foreground `pixel > threshold` with its holes filled, its 8-connected
    /// components, those whose pixel count lies in `[min_area, max_area]` numbered in raster
    /// order of first pixel, and their shapes. One call, so that a device can keep every
    /// intermediate image resident and move only the image up and the labels down.
    /// Default: [`segment_otsu_by_stages`] on this backend.
    fn segment_otsu(&self, field: FieldView, p: &OtsuParams) -> Result<OtsuObjects, Error> {
        segment_otsu_by_stages(self, field, p)
    }
}

/// The reference implementation: [`crate::ops`] on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn declump_smoothing_in_boxes(&self) -> bool {
        true
    }

    fn gaussian_blur(&self, img: ImageView<f32>, sigma: f32) -> Result<Image<f32>, Error> {
        Ok(gaussian_blur(img, sigma))
    }

    fn gaussian_blur_unit_u16(&self, img: ImageView<u16>, sigma: f32) -> Result<Image<f32>, Error> {
        Ok(gaussian_blur_unit_u16(img, sigma))
    }

    fn histogram(&self, img: ImageView<f32>, nbins: usize) -> Result<Option<Histogram>, Error> {
        Ok(threshold::histogram(img, nbins))
    }

    fn otsu(&self, img: ImageView<f32>, nbins: usize) -> Result<Option<f32>, Error> {
        Ok(threshold::otsu(img, nbins))
    }

    fn binary_erosion(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error> {
        Ok(morphology::binary_erosion(mask))
    }

    fn binary_dilation(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error> {
        Ok(morphology::binary_dilation(mask))
    }

    fn fill_holes(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error> {
        Ok(morphology::fill_holes(mask))
    }

    fn distance_transform_edt(&self, mask: ImageView<bool>) -> Result<Image<f32>, Error> {
        Ok(distance_transform_edt(mask))
    }

    fn label(&self, mask: ImageView<bool>, conn: Connectivity) -> Result<Labels, Error> {
        Ok(label(mask, conn))
    }

    fn measure_shape(&self, labels: &Labels) -> Result<Vec<ObjectShape>, Error> {
        Ok(measure_shape(labels))
    }

    fn filter_by_area_owned(&self, labels: Labels, min: u64, max: u64) -> Result<Labels, Error> {
        Ok(crate::ops::label::filter_by_area_in_place(labels, min, max))
    }

    /// The transform in each component's box
    /// ([`crate::ops::distance::distance_transform_edt_of_objects`], the same bits).
    fn distance_of_components(
        &self,
        _mask: ImageView<bool>,
        labels: &Labels,
    ) -> Result<Image<f32>, Error> {
        Ok(distance_transform_edt_of_objects(labels))
    }
}

/// A backend with only the required methods (each the CPU's), so that every provided
/// method runs its default: for the tests of those defaults. It also blurs kept images
/// that hold an `Image<f32>` (a "device" on the host), for the defaults built on that.
#[cfg(test)]
pub(crate) struct RequiredOnly;

#[cfg(test)]
impl Backend for RequiredOnly {
    fn name(&self) -> String {
        "required-only".into()
    }
    fn gaussian_blur(&self, i: ImageView<f32>, s: f32) -> Result<Image<f32>, Error> {
        CpuBackend.gaussian_blur(i, s)
    }
    fn gaussian_blur_kept(&self, k: &KeptImage, s: f32) -> Result<Image<f32>, Error> {
        let img = k
            .inner()
            .downcast_ref::<Image<f32>>()
            .ok_or(Error::Backend {
                device: self.name(),
                message: "not an image kept on the host".into(),
            })?;
        self.gaussian_blur(img.view(), s)
    }
    fn histogram(&self, i: ImageView<f32>, n: usize) -> Result<Option<Histogram>, Error> {
        CpuBackend.histogram(i, n)
    }
    fn binary_erosion(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
        CpuBackend.binary_erosion(m)
    }
    fn binary_dilation(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
        CpuBackend.binary_dilation(m)
    }
    fn fill_holes(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
        CpuBackend.fill_holes(m)
    }
    fn distance_transform_edt(&self, m: ImageView<bool>) -> Result<Image<f32>, Error> {
        CpuBackend.distance_transform_edt(m)
    }
    fn label(&self, m: ImageView<bool>, c: Connectivity) -> Result<Labels, Error> {
        CpuBackend.label(m, c)
    }
    fn measure_shape(&self, l: &Labels) -> Result<Vec<ObjectShape>, Error> {
        CpuBackend.measure_shape(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_watershed_rejects_mismatched_sizes_instead_of_panicking() {
        // `CpuBackend` keeps the trait's default `li` and `watershed`.
        let elev = Image::from_fn(6, 5, |r, c| (r * 6 + c) as f32);
        let mut m = Image::new(6, 5, 0u32);
        m.set(0, 0, 1);
        m.set(4, 5, 2);
        let markers = Labels::new(m, 2);
        let want = watershed::watershed(elev.view(), &markers, None);
        assert_eq!(
            CpuBackend.watershed(elev.view(), &markers, None).unwrap(),
            want
        );
        let small = Labels::empty(3, 5);
        let err = CpuBackend.watershed(elev.view(), &small, None).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        let mask = Image::new(6, 4, true);
        let err = CpuBackend
            .watershed(elev.view(), &markers, Some(mask.view()))
            .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert_eq!(
            CpuBackend.li(elev.view()).unwrap(),
            threshold::li(elev.view())
        );
    }

    #[test]
    fn default_blur_of_a_kept_image_within_a_mask_is_zero_outside_it() {
        let img = Image::from_fn(9, 7, |r, c| ((r * 9 + c) % 5) as f32);
        let kept = KeptImage::new(9, 7, Arc::new(img.clone()));
        let within = Image::from_fn(9, 7, |r, c| (r + 2 * c) % 3 == 0);
        let whole = gaussian_blur(img.view(), 1.5);
        let out = super::RequiredOnly
            .gaussian_blur_kept_within(&kept, 1.5, within.view())
            .unwrap();
        for r in 0..7 {
            for c in 0..9 {
                let want = if within.get(r, c) {
                    whole.get(r, c)
                } else {
                    0.0
                };
                assert_eq!(out.get(r, c).to_bits(), want.to_bits(), "{r},{c}");
            }
        }
        // A mask of another size, and a backend that keeps nothing, are errors.
        let small = Image::new(9, 6, true);
        let err = super::RequiredOnly
            .gaussian_blur_kept_within(&kept, 1.5, small.view())
            .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert!(CpuBackend
            .gaussian_blur_kept_within(&kept, 1.5, within.view())
            .is_err());
    }

    #[test]
    fn default_otsu_from_histogram_equals_the_reference() {
        // A backend that only supplies the histogram must reach the reference's Otsu.
        let mut state = 7u64;
        let img = Image::from_fn(37, 23, |r, c| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((state >> 40) as f32 / 16_777_216.0) * if (r + c) % 5 == 0 { 3.0 } else { 1.0 }
        });
        let want = threshold::otsu(img.view(), 256);
        assert!(want.is_some());
        assert_eq!(super::RequiredOnly.otsu(img.view(), 256).unwrap(), want);
        let flat = Image::new(5, 5, 0.5f32);
        assert_eq!(super::RequiredOnly.otsu(flat.view(), 256).unwrap(), None);
        assert_eq!(threshold::otsu(flat.view(), 256), None);
        let nan = Image::new(4, 4, f32::NAN);
        assert_eq!(super::RequiredOnly.otsu(nan.view(), 256).unwrap(), None);
    }
}
