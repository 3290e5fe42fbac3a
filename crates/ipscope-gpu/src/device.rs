//! Adapter discovery, device setup, pipelines and buffer helpers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::kernels::{Binding, Kernel, KERNELS};
use crate::Error;

/// One adapter as `ipscope devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Device name reported by the driver.
    pub name: String,
    /// Graphics API: Vulkan, Metal, Dx12.
    pub backend: String,
    /// Discrete, integrated, virtual GPU, CPU (e.g. lavapipe) or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage buffer one kernel binding may cover, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Largest dispatch along one dimension, in workgroups.
    pub max_compute_workgroups_per_dimension: u32,
    /// Largest workgroup, in invocations.
    pub max_compute_invocations_per_workgroup: u32,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(desc)
}

/// The adapter wgpu prefers (high performance first), or [`Error::NoAdapter`].
fn preferred_adapter() -> Result<wgpu::Adapter, Error> {
    pollster::block_on(instance().request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .map_err(|_| Error::NoAdapter)
}

/// [`AdapterSummary::device_type`] of a software renderer (Vulkan's CPU device type).
const SOFTWARE: &str = "CPU";

impl AdapterSummary {
    /// Whether the adapter is a software renderer running on the CPU (Vulkan's CPU device
    /// type, such as Mesa's lavapipe): fine for testing, far slower than the CPU path.
    pub fn is_software_renderer(&self) -> bool {
        self.device_type == SOFTWARE
    }
}

fn summary(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let device_type = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => SOFTWARE,
        wgpu::DeviceType::Other => "other",
    };
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: device_type.to_string(),
        driver,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
    }
}

/// Every adapter of the native backends (Vulkan, Metal, DX12), in the driver's order.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters.iter().map(summary).collect()
}

/// Where a map callback leaves its outcome.
type MapSlot = Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>;

/// Errors caught outside an error scope (the device-lost callback, uncaptured errors).
#[derive(Default)]
struct Fault {
    lost: Option<String>,
    uncaptured: Option<wgpu::Error>,
}

/// The phases of one readback, in ms ([`Gpu::readback_phases`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ReadbackPhases {
    /// The device's copy into the staging buffer, submitted and waited for.
    pub copy_ms: f64,
    /// Mapping the staging buffer for reading.
    pub map_ms: f64,
    /// The host's copy out of the mapped range into a new vector.
    pub host_ms: f64,
    /// A host copy of the same size between two ordinary allocations.
    pub memcpy_ms: f64,
}

/// An open GPU device with the kernels compiled; the GPU half of [`crate::GpuBackend`].
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    layouts: HashMap<&'static str, wgpu::BindGroupLayout>,
    pipelines: HashMap<(&'static str, &'static str), wgpu::ComputePipeline>,
    fault: Arc<Mutex<Fault>>,
    /// Largest storage binding the kernels plan with (the device's, or less for tests).
    pub(crate) max_binding: u64,
    /// Per-kernel GPU timing, when the adapter has timestamp queries.
    pub(crate) profiler: Option<crate::profile::Profiler>,
    /// Idle mapped staging buffers for readbacks (MAP_READ) and uploads (MAP_WRITE), kept
    /// between calls: a new host-visible buffer is pinned, mapped and faulted in page by
    /// page on its first use, which costs more than the copy through it.
    staging: Mutex<Staging>,
    /// Label with `label.wgsl`'s tiled pair (`local`, `seams`) instead of `init`, `merge`.
    pub(crate) tiled_labels: std::sync::atomic::AtomicBool,
    /// This device's number in the process (images it keeps carry it).
    pub(crate) id: u64,
    /// Read label images back as runs (`runs.wgsl`) instead of one word per pixel.
    pub(crate) label_runs: std::sync::atomic::AtomicBool,
    /// Relax the watershed tile by tile in workgroup memory (`relax_local`) instead of one
    /// step per dispatch (`relax`).
    pub(crate) local_watershed: std::sync::atomic::AtomicBool,
    /// `unit_scale_u16` of every 16-bit value (`unpack.wgsl`'s table), made on first use.
    unit_lut: std::sync::OnceLock<wgpu::Buffer>,
}

/// Idle staging buffers, at most [`STAGING_KEEP`] of each kind.
#[derive(Default)]
struct Staging {
    read: Vec<wgpu::Buffer>,
    write: Vec<wgpu::Buffer>,
}

/// Staging buffers kept per kind (a field's images are a few sizes, repeated).
const STAGING_KEEP: usize = 6;
/// Bytes of idle staging buffers kept per kind (one 8192² f32 image is 256 MiB).
const STAGING_KEEP_BYTES: u64 = 768 << 20;
/// Uploads below this many bytes go through `create_buffer_init` (sub-allocated, cheap).
const SMALL_UPLOAD: usize = 1 << 16;

/// The size in bytes of a pooled staging buffer.
trait StagingSize {
    fn bytes(&self) -> u64;
}

impl StagingSize for wgpu::Buffer {
    fn bytes(&self) -> u64 {
        self.size()
    }
}

/// The idle buffer of `pool` that fits `size` bytes best (at most twice as large).
fn take_fitting<B: StagingSize>(pool: &mut Vec<B>, size: u64) -> Option<B> {
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, b)| b.bytes() >= size && b.bytes() <= size.saturating_mul(2).max(1 << 16))
        .min_by_key(|(_, b)| b.bytes())
        .map(|(i, _)| i)?;
    Some(pool.swap_remove(best))
}

/// Returns `b` to `pool`: at most [`STAGING_KEEP`] buffers (the smallest dropped first) and
/// [`STAGING_KEEP_BYTES`] of them (the largest dropped first), so the host memory the pool
/// pins stays bounded whatever the image sizes.
fn give_back<B: StagingSize>(pool: &mut Vec<B>, b: B) {
    pool.push(b);
    let drop_where = |pool: &mut Vec<B>, largest: bool| {
        let sizes = pool.iter().map(StagingSize::bytes).enumerate();
        let pick = if largest {
            sizes.max_by_key(|&(_, s)| s)
        } else {
            sizes.min_by_key(|&(_, s)| s)
        };
        if let Some((i, _)) = pick {
            pool.swap_remove(i);
        }
    };
    if pool.len() > STAGING_KEEP {
        drop_where(pool, false);
    }
    while pool.iter().map(StagingSize::bytes).sum::<u64>() > STAGING_KEEP_BYTES {
        drop_where(pool, true);
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.summary)
            .finish()
    }
}

impl Gpu {
    /// Opens the preferred adapter (high performance first) and compiles every kernel.
    ///
    /// [`Error::NoAdapter`] when there is none: the caller decides whether to fall back.
    pub fn new() -> Result<Gpu, Error> {
        Gpu::from_adapter(preferred_adapter()?)
    }

    /// The device `--device auto` uses: the adapter [`Gpu::new`] would open, unless that
    /// is a software renderer (Vulkan's CPU device type, such as Mesa's lavapipe), which
    /// runs the kernels on the CPU far slower than ipscope's CPU path. `Ok(Err(adapter))`
    /// then, with nothing opened; [`Error::NoAdapter`] when there is no adapter at all.
    pub fn new_hardware() -> Result<Result<Gpu, AdapterSummary>, Error> {
        let adapter = preferred_adapter()?;
        let found = summary(&adapter);
        if found.is_software_renderer() {
            return Ok(Err(found));
        }
        Gpu::from_adapter(adapter).map(Ok)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu, Error> {
        let summary = summary(&adapter);
        // Ask for the adapter's own buffer limits: the defaults (128 MiB bindings) would
        // make a large field tile on a device that could hold it whole.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: summary.max_storage_buffer_binding_size,
            max_buffer_size: summary.max_buffer_size,
            max_storage_buffers_per_shader_stage: 8,
            ..wgpu::Limits::downlevel_defaults()
        };
        // Timestamp queries when the adapter has them (benchmarks time kernels with them;
        // nothing is written unless profiling is turned on).
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ipscope"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: summary.name.clone(),
            message: e.to_string(),
        })?;
        let fault = Arc::new(Mutex::new(Fault::default()));
        {
            let fault = Arc::clone(&fault);
            device.set_device_lost_callback(move |reason, message| {
                if let Ok(mut f) = fault.lock() {
                    f.lost = Some(format!("{reason:?}: {message}"));
                }
            });
        }
        {
            // Without a handler wgpu panics on an error outside a scope.
            let fault = Arc::clone(&fault);
            device.on_uncaptured_error(Arc::new(move |e| {
                if let Ok(mut f) = fault.lock() {
                    f.uncaptured.get_or_insert(e);
                }
            }));
        }
        let mut layouts = HashMap::new();
        let mut pipelines = HashMap::new();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        for k in KERNELS {
            let layout = bind_group_layout(&device, k);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.name),
                source: wgpu::ShaderSource::Wgsl(k.source.into()),
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(k.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            for &entry in k.entry_points {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&pl),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
                pipelines.insert((k.name, entry), pipeline);
            }
            layouts.insert(k.name, layout);
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device {
                adapter: summary.name,
                kernel: "pipeline creation",
                message: e.to_string(),
            });
        }
        let max_binding = summary.max_storage_buffer_binding_size;
        // A query set the driver refuses leaves the device without timing, never failing it.
        let profiler = if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let p = crate::profile::Profiler::new(&device, &queue);
            pollster::block_on(scope.pop()).is_none().then_some(p)
        } else {
            None
        };
        Ok(Gpu {
            device,
            queue,
            summary,
            layouts,
            pipelines,
            fault,
            max_binding,
            profiler,
            staging: Mutex::new(Staging::default()),
            tiled_labels: std::sync::atomic::AtomicBool::new(false),
            label_runs: std::sync::atomic::AtomicBool::new(true),
            local_watershed: std::sync::atomic::AtomicBool::new(true),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            unit_lut: std::sync::OnceLock::new(),
        })
    }

    /// `ipscope_core::ops::filter::unit_scale_u16` of every 16-bit value, on the device
    /// (uploaded on first use, then kept: 256 KiB).
    pub(crate) fn unit_lut(&self) -> &wgpu::Buffer {
        self.unit_lut.get_or_init(|| {
            let table: Vec<f32> = (0..=u16::MAX)
                .map(ipscope_core::ops::filter::unit_scale_u16)
                .collect();
            self.storage(&table)
        })
    }

    /// Labels (and the background of hole filling) with `label.wgsl`'s tiled pair of passes
    /// when `on`: each 16 × 16 tile joined in workgroup memory, then only the neighbours
    /// across tile seams in global memory. Off (the default): every pixel joins in global
    /// memory. The labels are identical either way; this is for comparing their speed.
    pub fn set_tiled_labelling(&self, on: bool) {
        self.tiled_labels
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Times one upload and one readback of `words` 4-byte words (a new storage buffer
    /// filled from the host, then copied back through a mapped staging buffer, as every
    /// kernel call does), in ms: `(upload, readback)`. For benches: it says how much of a
    /// call's wall time the transfers alone take on this device.
    #[doc(hidden)]
    pub fn transfer_probe(&self, words: usize) -> Result<(f64, f64), Error> {
        let data = vec![0x3f80_0000u32; words.max(1)];
        self.scoped("transfer", || {
            let t = std::time::Instant::now();
            let buffer = self.storage(&data);
            self.submit(self.encoder())?;
            let up = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            let back = self.submit_and_read(self.encoder(), &[(&buffer, data.len())])?;
            let down = t.elapsed().as_secs_f64() * 1e3;
            if back.first().map(Vec::len) != Some(data.len()) {
                return Err("the readback came back short".into());
            }
            Ok((up, down))
        })
    }

    /// Times the phases of one readback of `n_words` 4-byte words, in ms, for benches that
    /// look for where a slow readback spends its time: the device's copy into a staging
    /// buffer (submitted and waited for alone), the mapping, and the host's copy out of the
    /// mapped range; plus, for comparison, a host copy of the same size between two ordinary
    /// allocations. The buffer read back is a new one, as a kernel call's result is.
    /// `fresh`: a new staging buffer; else one from the pool (as kernel calls use), seeded
    /// first.
    #[doc(hidden)]
    pub fn readback_phases(&self, n_words: usize, fresh: bool) -> Result<ReadbackPhases, Error> {
        let data = vec![0x3f80_0000u32; n_words.max(1)];
        let size = (data.len() * 4) as u64;
        let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
        self.scoped("transfer", || {
            if !fresh {
                // Seed the pool as an earlier kernel call would, with another buffer.
                let seed = self.storage(&data);
                self.submit_and_read(self.encoder(), &[(&seed, data.len())])?;
            }
            // A new buffer read back for the first time, as a kernel call's result is.
            let buffer = self.storage(&data);
            self.submit(self.encoder())?;
            let staging = self.readback_staging(size, !fresh);
            let t = std::time::Instant::now();
            let mut enc = self.encoder();
            enc.copy_buffer_to_buffer(&buffer, 0, &staging, 0, size);
            self.submit(enc)?;
            let copy_ms = ms(t);
            let t = std::time::Instant::now();
            let slot = self.map(&staging, wgpu::MapMode::Read, size);
            self.wait_mapped(&slot)?;
            let map_ms = ms(t);
            let t = std::time::Instant::now();
            let back = match staging.get_mapped_range(..size) {
                Ok(view) => words(&view),
                Err(e) => return Err(format!("reading back the probe: {e}")),
            };
            let host_ms = ms(t);
            staging.unmap();
            if !fresh {
                if let Ok(mut pool) = self.staging.lock() {
                    give_back(&mut pool.read, staging);
                }
            }
            if back != data {
                return Err("the probe came back altered".into());
            }
            let t = std::time::Instant::now();
            let copy = std::hint::black_box(data.clone());
            let memcpy_ms = ms(t);
            drop(copy);
            Ok(ReadbackPhases {
                copy_ms,
                map_ms,
                host_ms,
                memcpy_ms,
            })
        })
    }

    /// Plans kernels as if storage bindings held at most `bytes` (at least 1 KiB), so tests
    /// can exercise tiling on any device. Never raises the device's own limit.
    pub fn set_max_binding_for_tests(&mut self, bytes: u64) {
        self.max_binding = bytes
            .max(1024)
            .min(self.summary.max_storage_buffer_binding_size);
    }

    /// [`Error::Device`] of `kernel` on this adapter.
    pub(crate) fn device_error(&self, kernel: &'static str, message: impl ToString) -> Error {
        Error::Device {
            adapter: self.summary.name.clone(),
            kernel,
            message: message.to_string(),
        }
    }

    pub(crate) fn too_large(&self, kernel: &'static str, w: usize, h: usize, why: String) -> Error {
        Error::TooLarge {
            adapter: self.summary.name.clone(),
            kernel,
            width: w,
            height: h,
            why,
        }
    }

    /// Checks that `n` elements of 4 bytes fit one storage binding.
    pub(crate) fn check_fits(
        &self,
        kernel: &'static str,
        w: usize,
        h: usize,
        n: usize,
    ) -> Result<(), Error> {
        let bytes = (n as u64).saturating_mul(4);
        if bytes > self.max_binding || w > u32::MAX as usize / 2 || h > u32::MAX as usize / 2 {
            return Err(self.too_large(
                kernel,
                w,
                h,
                format!(
                    "needs {bytes} bytes per buffer, the device binds at most {}",
                    self.max_binding
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn storage<T: bytemuck::Pod>(&self, data: &[T]) -> wgpu::Buffer {
        // Zero-sized bindings are invalid; callers never dispatch on empty images, but a
        // one-element pad keeps every buffer legal.
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        if bytes.len() >= SMALL_UPLOAD && bytes.len().is_multiple_of(4) {
            if let Some(staging) = self.upload_staging(bytes) {
                let size = bytes.len() as u64;
                let dst = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage,
                    mapped_at_creation: false,
                });
                let mut enc = self.encoder();
                enc.copy_buffer_to_buffer(&staging, 0, &dst, 0, size);
                self.queue.submit([enc.finish()]);
                // Mapped again only once this copy has run (map_async waits for it).
                if let Ok(mut pool) = self.staging.lock() {
                    give_back(&mut pool.write, staging);
                }
                return dst;
            }
        }
        let pad = [0u8; 4];
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: if bytes.is_empty() { &pad } else { bytes },
                usage,
            })
    }

    /// A MAP_WRITE staging buffer holding `bytes` (unmapped, ready to copy from): an idle
    /// one from the pool, mapped again, or a new one mapped at creation. `None` when
    /// mapping fails (the caller then uploads the ordinary way).
    fn upload_staging(&self, bytes: &[u8]) -> Option<wgpu::Buffer> {
        let size = bytes.len() as u64;
        let reused = self
            .staging
            .lock()
            .ok()
            .and_then(|mut p| take_fitting(&mut p.write, size));
        let staging = match reused {
            Some(b) => {
                let slot = self.map(&b, wgpu::MapMode::Write, size);
                self.wait_mapped(&slot).ok()?;
                b
            }
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload"),
                size,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            }),
        };
        {
            let mut view = staging.get_mapped_range_mut(..size).ok()?;
            view.copy_from_slice(bytes);
        }
        staging.unmap();
        Some(staging)
    }

    /// Starts mapping the first `size` bytes of `b`; the slot receives the outcome.
    fn map(&self, b: &wgpu::Buffer, mode: wgpu::MapMode, size: u64) -> MapSlot {
        let slot = Arc::new(Mutex::new(None));
        let done = Arc::clone(&slot);
        b.map_async(mode, ..size, move |r| {
            if let Ok(mut d) = done.lock() {
                *d = Some(r);
            }
        });
        slot
    }

    /// Waits until a mapping started with [`Gpu::map`] has its outcome.
    fn wait_mapped(&self, slot: &MapSlot) -> Result<(), String> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the device: {e}"))?;
        // When several threads share the device, another thread's poll may be the one
        // running this callback, just after our wait returned: give it time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while slot.lock().map(|s| s.is_none()).unwrap_or(false)
            && std::time::Instant::now() < deadline
        {
            let _ = self.device.poll(wgpu::PollType::Poll);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let state = slot
            .lock()
            .map_err(|_| "mapping lock poisoned".to_string())?;
        match state.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(format!("mapping a staging buffer: {e}")),
            None => Err("mapping a staging buffer: the device never answered".into()),
        }
    }

    pub(crate) fn zeroed(&self, n_words: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (n_words.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn uniform<const N: usize>(&self, words: [u32; N]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    pub(crate) fn bind(&self, kernel: &Kernel, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &self.layouts[kernel.name],
            entries: &entries,
        })
    }

    /// Records one dispatch of `kernel`'s `entry` into `enc`.
    pub(crate) fn dispatch(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        entry: &'static str,
        group: &wgpu::BindGroup,
        groups: (u32, u32),
    ) {
        let timestamp_writes = self
            .profiler
            .as_ref()
            .and_then(|p| p.next(kernel.name, entry));
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(entry),
            timestamp_writes,
        });
        pass.set_pipeline(&self.pipelines[&(kernel.name, entry)]);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    pub(crate) fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Runs `f` (which encodes, submits and reads back) inside error scopes, and turns
    /// out-of-memory, validation failures and device loss into named errors.
    pub(crate) fn scoped<T>(
        &self,
        kernel: &'static str,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, Error> {
        let adapter = || self.summary.name.clone();
        if let Some(message) = self.fault.lock().ok().and_then(|f| f.lost.clone()) {
            return Err(Error::DeviceLost {
                adapter: adapter(),
                kernel,
                message,
            });
        }
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        let fault = self
            .fault
            .lock()
            .map(|mut f| (f.lost.clone(), f.uncaptured.take()))
            .unwrap_or((None, None));
        if let Some(message) = fault.0 {
            return Err(Error::DeviceLost {
                adapter: adapter(),
                kernel,
                message,
            });
        }
        if let Some(e) = o {
            return Err(Error::OutOfMemory {
                adapter: adapter(),
                kernel,
                message: e.to_string(),
            });
        }
        if let Some(e) = v.or(fault.1) {
            return Err(self.device_error(kernel, e));
        }
        out.map_err(|message| self.device_error(kernel, message))
    }

    /// A MAP_READ staging buffer of at least `size` bytes: an idle one from the pool when
    /// `pooled` and one fits, else a new one.
    fn readback_staging(&self, size: u64, pooled: bool) -> wgpu::Buffer {
        let reused = pooled
            .then(|| {
                self.staging
                    .lock()
                    .ok()
                    .and_then(|mut p| take_fitting(&mut p.read, size))
            })
            .flatten();
        reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// Submits `enc` and copies `buffers` back, `n_words` u32/f32 words each (as u32 words:
    /// f32 results come back as their bits). One copy on the host, from a pooled staging
    /// buffer into the result.
    pub(crate) fn submit_and_read(
        &self,
        mut enc: wgpu::CommandEncoder,
        buffers: &[(&wgpu::Buffer, usize)],
    ) -> Result<Vec<Vec<u32>>, String> {
        let staging: Vec<(wgpu::Buffer, u64)> = buffers
            .iter()
            .map(|&(b, n)| {
                let size = (n.max(1) * 4) as u64;
                let s = self.readback_staging(size, true);
                enc.copy_buffer_to_buffer(b, 0, &s, 0, size);
                (s, size)
            })
            .collect();
        let timestamps = self
            .profiler
            .as_ref()
            .and_then(|p| p.resolve(&self.device, &mut enc));
        self.queue.submit([enc.finish()]);
        let slots: Vec<MapSlot> = staging
            .iter()
            .map(|(s, size)| self.map(s, wgpu::MapMode::Read, *size))
            .collect();
        let mut out = Vec::with_capacity(staging.len());
        let mut failed = None;
        for ((s, size), slot) in staging.iter().zip(&slots) {
            if failed.is_some() {
                break;
            }
            if let Err(e) = self.wait_mapped(slot) {
                failed = Some(format!("reading back a result: {e}"));
                break;
            }
            match s.get_mapped_range(..*size) {
                Ok(view) => out.push(words(&view)),
                Err(e) => failed = Some(format!("reading back a result: {e}")),
            }
            s.unmap();
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if let Ok(mut pool) = self.staging.lock() {
            for (s, _) in staging {
                give_back(&mut pool.read, s);
            }
        }
        for (o, &(_, n)) in out.iter_mut().zip(buffers) {
            o.truncate(n);
        }
        if let (Some(p), Some(t)) = (&self.profiler, timestamps) {
            p.collect(&self.device, t);
        }
        Ok(out)
    }

    /// Submits `enc` and waits for it.
    pub(crate) fn submit(&self, mut enc: wgpu::CommandEncoder) -> Result<(), String> {
        let timestamps = self
            .profiler
            .as_ref()
            .and_then(|p| p.resolve(&self.device, &mut enc));
        self.queue.submit([enc.finish()]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| format!("waiting for the device: {e}"))?;
        if let (Some(p), Some(t)) = (&self.profiler, timestamps) {
            p.collect(&self.device, t);
        }
        Ok(())
    }
}

/// Little-endian u32 words of a mapped range (one copy: a cast where the range is aligned).
fn words(bytes: &[u8]) -> Vec<u32> {
    match bytemuck::try_cast_slice::<u8, u32>(bytes) {
        Ok(w) if cfg!(target_endian = "little") => w.to_vec(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn bind_group_layout(device: &wgpu::Device, k: &Kernel) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = k
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Binding::Uniform => wgpu::BufferBindingType::Uniform,
                    Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(k.name),
        entries: &entries,
    })
}

/// Workgroups covering `w × h` pixels with 16 × 16 groups.
pub(crate) fn groups_2d(w: usize, h: usize) -> (u32, u32) {
    (w.div_ceil(16) as u32, h.div_ceil(16) as u32)
}

/// Workgroups covering `n` items with groups of `size`, folded into two dimensions so no
/// dimension exceeds WebGPU's 65535.
pub(crate) fn groups_1d(n: usize, size: usize) -> (u32, u32) {
    let g = n.div_ceil(size).max(1);
    let x = g.min(65535);
    (x as u32, g.div_ceil(x) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl StagingSize for u64 {
        fn bytes(&self) -> u64 {
            *self
        }
    }

    #[test]
    fn the_staging_pool_stays_within_its_count_and_bytes() {
        let mut pool: Vec<u64> = Vec::new();
        for i in 0..STAGING_KEEP as u64 + 3 {
            give_back(&mut pool, 1024 * (i + 1));
        }
        // Full: the smallest went first.
        assert_eq!(pool.len(), STAGING_KEEP);
        assert!(pool.iter().all(|&b| b > 3 * 1024), "{pool:?}");
        // The best fit at most twice as large (64 KiB for small requests); none for a much
        // larger request.
        assert_eq!(take_fitting(&mut pool, 5 * 1024 - 8), Some(5 * 1024));
        assert_eq!(pool.len(), STAGING_KEEP - 1);
        assert_eq!(take_fitting(&mut pool, 1 << 20), None);
        let mut big = vec![300u64 << 20];
        assert_eq!(take_fitting(&mut big, 100 << 20), None);
        assert_eq!(take_fitting(&mut big, 200 << 20), Some(300 << 20));
        // Over the byte budget, the largest go until the rest fits.
        give_back(&mut pool, STAGING_KEEP_BYTES / 2);
        give_back(&mut pool, STAGING_KEEP_BYTES / 2 + 1);
        let total: u64 = pool.iter().sum();
        assert!(total <= STAGING_KEEP_BYTES, "{total}");
        assert!(pool.contains(&(STAGING_KEEP_BYTES / 2)), "{pool:?}");
        assert!(!pool.contains(&(STAGING_KEEP_BYTES / 2 + 1)), "{pool:?}");
    }
}
