//! Helpers shared by the reference tests that read real images from `$IPSCOPE_DATA`.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use ipscope_image::{DynImage, Image, Labels};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared data sets: `$IPSCOPE_DATA`, else `../shared/data` beside the repository.
pub fn data_dir() -> PathBuf {
    std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
}

/// A label image read from disk (any integer or float sample type) as labels.
pub fn labels_of(img: DynImage) -> Labels {
    let lab: Image<u32> = match img {
        DynImage::U8(i) => i.map(u32::from),
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::F32(i) => i.map(|v| v as u32),
    };
    Labels::from_image(lab)
}

/// `a` within 1e-6 absolute + 1e-6 relative of the reference `b` (`None` = NaN expected).
pub fn close(a: f64, b: Option<f64>) -> bool {
    match b {
        None => a.is_nan(),
        Some(b) => (a - b).abs() <= 1e-6 + 1e-6 * b.abs(),
    }
}
