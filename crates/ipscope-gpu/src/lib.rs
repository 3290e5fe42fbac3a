//! ipscope's GPU backend: wgpu device setup, buffers, and the WGSL compute kernels of
//! `kernels/`, behind `ipscope_core`'s [`Backend`] trait.
//!
//! Runs on any Vulkan, Metal or DX12 device (no CUDA). What runs on the GPU, the stated
//! tolerances and how to run the parity tests are in `docs/gpu.md`:
//!
//! * Gaussian blur (separable): f32 sums, within [`GAUSSIAN_TOLERANCE`] of the CPU; a
//!   16-bit field goes up as it is stored and is scaled on the device (`unpack.wgsl`);
//! * histogram for Otsu's threshold: identical counts, so the identical threshold;
//! * erosion, dilation, hole filling (and hole filling, labelling and the distance
//!   transform with the mask resident on the device): identical;
//! * exact Euclidean distance transform: identical;
//! * connected components: identical labels;
//! * per-object reductions (area, centroid, bounding box, intensity sum/min/max): identical;
//! * Li's threshold: one reduction per step, within [`LI_TOLERANCE`] of the CPU;
//! * seeded watershed: the same flooding costs, labels within [`WATERSHED_TOLERANCE`];
//! * the size filter (per-label area and first pixel, then relabelling): identical;
//! * a global-threshold segmentation with every intermediate image resident
//!   (`Backend::segment_otsu`: Gaussian, Otsu, hole filling, labelling, size filter, shapes;
//!   the image up once, the labels down once): identical to the same stages on the device;
//! * grey opening with a square (running extrema, `rank.wgsl`): the CPU's values; and the
//!   nuclei recipe's smoothing, background subtraction and Otsu/Li threshold with the field
//!   resident (`Backend::smooth_and_flatten`): identical to the same stages on the device;
//! * label images come back as runs along their rows (`runs.wgsl`: first pixel, length,
//!   label), a fraction of one word per pixel for a nuclei field: exact.
//!
//! Device loss, out-of-memory and images beyond the device's limits are [`Error`]s, never
//! panics. [`select`] resolves `--device auto|cpu|gpu`.

mod device;
mod error;
mod flatten;
mod front;
pub mod kernels;
mod li;
mod ops;
mod profile;
mod rank;
mod relabel;
mod runs;
mod segment;
mod watershed;

pub use device::{list_adapters, AdapterSummary, Gpu, ReadbackPhases};
pub use error::Error;
pub use li::LI_TOLERANCE;
pub use ops::ObjectStats;
pub use profile::KernelTime;
pub use runs::{LabelReadback, RUNS_MIN_PIXELS};
pub use watershed::{Relaxation, WATERSHED_MIN_IOU, WATERSHED_TOLERANCE};

use ipscope_core::backend::{
    segment_otsu_by_stages, smooth_and_flatten_by_stages, Backend, CpuBackend, FieldView,
    FilledObjects, FlattenParams, Flattened, KeptImage, OtsuObjects, OtsuParams,
};
use ipscope_core::ops::label::Connectivity;
use ipscope_core::ops::measure::ObjectShape;
use ipscope_core::ops::threshold::Histogram;
use ipscope_image::{Image, ImageView, Labels};

/// Largest difference between the GPU and CPU Gaussian, relative to the largest |pixel|:
/// the CPU sums the taps in f64, WGSL in f32 (each of up to ~2·4σ+1 taps rounds once,
/// plus the f32 weights), measured below 1e-6 on the parity images.
pub const GAUSSIAN_TOLERANCE: f32 = 4e-6;

/// The GPU implementation of core's [`Backend`].
#[derive(Debug)]
pub struct GpuBackend {
    gpu: Gpu,
}

impl GpuBackend {
    /// Opens the preferred adapter.
    pub fn new() -> Result<GpuBackend, Error> {
        Ok(GpuBackend { gpu: Gpu::new()? })
    }

    /// Wraps an open device.
    pub fn from_gpu(gpu: Gpu) -> GpuBackend {
        GpuBackend { gpu }
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        let a = self.gpu.adapter();
        format!("gpu: {} ({}, {})", a.name, a.backend, a.device_type)
    }

    fn gaussian_blur(
        &self,
        img: ImageView<f32>,
        sigma: f32,
    ) -> Result<Image<f32>, ipscope_core::Error> {
        Ok(self.gpu.gaussian_blur(img, sigma)?)
    }

    fn gaussian_blur_unit_u16(
        &self,
        img: ImageView<u16>,
        sigma: f32,
    ) -> Result<Image<f32>, ipscope_core::Error> {
        Ok(self.gpu.gaussian_blur_unit_u16(img, sigma)?)
    }

    fn histogram(
        &self,
        img: ImageView<f32>,
        nbins: usize,
    ) -> Result<Option<Histogram>, ipscope_core::Error> {
        Ok(self.gpu.histogram(img, nbins)?)
    }

    fn binary_erosion(&self, mask: ImageView<bool>) -> Result<Image<bool>, ipscope_core::Error> {
        Ok(self.gpu.binary_erosion(mask)?)
    }

    fn binary_dilation(&self, mask: ImageView<bool>) -> Result<Image<bool>, ipscope_core::Error> {
        Ok(self.gpu.binary_dilation(mask)?)
    }

    fn fill_holes(&self, mask: ImageView<bool>) -> Result<Image<bool>, ipscope_core::Error> {
        Ok(self.gpu.fill_holes(mask)?)
    }

    fn distance_transform_edt(
        &self,
        mask: ImageView<bool>,
    ) -> Result<Image<f32>, ipscope_core::Error> {
        Ok(self.gpu.distance_transform_edt(mask)?)
    }

    fn label(
        &self,
        mask: ImageView<bool>,
        conn: Connectivity,
    ) -> Result<Labels, ipscope_core::Error> {
        Ok(self.gpu.label(mask, conn)?)
    }

    fn measure_shape(&self, labels: &Labels) -> Result<Vec<ObjectShape>, ipscope_core::Error> {
        Ok(self.gpu.measure_shape(labels)?)
    }

    fn li(&self, img: ImageView<f32>) -> Result<Option<f32>, ipscope_core::Error> {
        Ok(self.gpu.li(img)?)
    }

    fn grey_opening(
        &self,
        img: ImageView<f32>,
        r: usize,
    ) -> Result<Image<f32>, ipscope_core::Error> {
        Ok(self.gpu.grey_opening(img, r)?)
    }

    fn smooth_and_flatten(
        &self,
        field: FieldView,
        p: &FlattenParams,
    ) -> Result<Flattened, ipscope_core::Error> {
        let (w, h) = field.dims();
        if self.gpu.flatten_resident_fits(w, h, p.radius) {
            Ok(self.gpu.smooth_and_flatten(field, p)?)
        } else {
            // Beyond one binding: the stages one by one, each tiled.
            smooth_and_flatten_by_stages(self, field, p)
        }
    }

    fn gaussian_blur_kept(
        &self,
        img: &KeptImage,
        sigma: f32,
    ) -> Result<Image<f32>, ipscope_core::Error> {
        Ok(self.gpu.gaussian_blur_kept(img, sigma)?)
    }

    fn gaussian_blur_kept_within(
        &self,
        img: &KeptImage,
        sigma: f32,
        within: ImageView<bool>,
    ) -> Result<Image<f32>, ipscope_core::Error> {
        Ok(self.gpu.gaussian_blur_kept_within(img, sigma, within)?)
    }

    fn watershed(
        &self,
        elevation: ImageView<f32>,
        markers: &Labels,
        mask: Option<ImageView<bool>>,
    ) -> Result<Labels, ipscope_core::Error> {
        Ok(self.gpu.watershed(elevation, markers, mask)?)
    }

    fn fill_label_distance(
        &self,
        mask: Image<bool>,
        fill: bool,
        conn: Connectivity,
        distance: bool,
    ) -> Result<FilledObjects, ipscope_core::Error> {
        Ok(self.gpu.fill_label_distance(mask, fill, conn, distance)?)
    }

    fn filter_by_area(
        &self,
        labels: &Labels,
        min: u64,
        max: u64,
    ) -> Result<Labels, ipscope_core::Error> {
        Ok(self.gpu.filter_by_area(labels, min, max)?)
    }

    fn segment_otsu(
        &self,
        field: FieldView,
        p: &OtsuParams,
    ) -> Result<OtsuObjects, ipscope_core::Error> {
        let (w, h) = field.dims();
        if self.gpu.segment_resident_fits(w, h) {
            Ok(self.gpu.segment_otsu(field, p)?)
        } else {
            // Beyond one binding: the stages one by one, each tiled.
            segment_otsu_by_stages(self, field, p)
        }
    }
}

/// The `--device` choice (`"auto"`, `"cpu"`, `"gpu"` in a configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A GPU when one is present (not a software renderer such as lavapipe), else the CPU.
    #[default]
    Auto,
    /// The CPU reference.
    Cpu,
    /// A GPU, or an error ([`Error::NoAdapter`]); never a silent fallback.
    Gpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu),
            other => Err(format!(
                "unknown device {other:?}: expected auto, cpu or gpu"
            )),
        }
    }
}

/// Opens the backend for a `--device` choice. `auto` falls back to the CPU only when no
/// adapter exists (any other failure to open one is reported); the returned backend's
/// [`Backend::name`] says which device was picked. See [`select_with_note`] for why `auto`
/// may pass over an adapter.
pub fn select(choice: DeviceChoice) -> Result<Box<dyn Backend>, Error> {
    select_with_note(choice).map(|(backend, _)| backend)
}

/// [`select`], with a note when `auto` passed over an adapter: a software renderer
/// (Vulkan's CPU device type, such as Mesa's lavapipe, often installed with the graphics
/// stack) runs the kernels on the CPU many times slower than ipscope's CPU path, so `auto`
/// takes the CPU path instead and the note says which adapter it left and how to use it
/// anyway (`--device gpu`, which takes whatever adapter there is).
pub fn select_with_note(choice: DeviceChoice) -> Result<(Box<dyn Backend>, Option<String>), Error> {
    match choice {
        DeviceChoice::Cpu => Ok((Box::new(CpuBackend), None)),
        DeviceChoice::Gpu => Ok((Box::new(GpuBackend::new()?), None)),
        DeviceChoice::Auto => match Gpu::new_hardware() {
            Ok(Ok(g)) => Ok((Box::new(GpuBackend::from_gpu(g)), None)),
            Ok(Err(software)) => Ok((
                Box::new(CpuBackend),
                Some(format!(
                    "no hardware GPU: the adapter found, {} ({}), is a software renderer on \
                     the CPU, slower than the CPU path; --device gpu would use it",
                    software.name, software.backend
                )),
            )),
            Err(Error::NoAdapter) => Ok((Box::new(CpuBackend), None)),
            Err(e) => Err(e),
        },
    }
}
