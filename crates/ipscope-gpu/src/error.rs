/// Errors of the GPU backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `--device gpu` (or [`crate::Gpu::new`]) found no usable adapter.
    #[error("no GPU adapter found (looked for Vulkan, Metal and DX12 devices; on Linux without a GPU, Mesa's lavapipe driver `mesa-vulkan-drivers` provides a CPU Vulkan device)")]
    NoAdapter,
    /// The adapter refused to create a device.
    #[error("GPU {adapter}: cannot open the device: {message}")]
    RequestDevice { adapter: String, message: String },
    /// The device was lost (driver reset, removed, or crashed) during a kernel.
    #[error("GPU {adapter}: device lost during {kernel}: {message}")]
    DeviceLost {
        adapter: String,
        kernel: &'static str,
        message: String,
    },
    /// The device ran out of memory.
    #[error("GPU {adapter}: out of memory during {kernel}: {message}")]
    OutOfMemory {
        adapter: String,
        kernel: &'static str,
        message: String,
    },
    /// The device rejected a command (a bug in ipscope, or a driver limitation).
    #[error("GPU {adapter}: {kernel} failed: {message}")]
    Device {
        adapter: String,
        kernel: &'static str,
        message: String,
    },
    /// The image exceeds what the kernel can process on this device.
    #[error("GPU {adapter}: a {width}x{height} image is too large for {kernel}: {why}")]
    TooLarge {
        adapter: String,
        kernel: &'static str,
        width: usize,
        height: usize,
        why: String,
    },
}

impl From<Error> for ipscope_core::Error {
    fn from(e: Error) -> Self {
        let device = match &e {
            Error::NoAdapter => "gpu".to_string(),
            Error::RequestDevice { adapter, .. }
            | Error::DeviceLost { adapter, .. }
            | Error::OutOfMemory { adapter, .. }
            | Error::Device { adapter, .. }
            | Error::TooLarge { adapter, .. } => format!("gpu {adapter}"),
        };
        ipscope_core::Error::Backend {
            device,
            message: e.to_string(),
        }
    }
}
