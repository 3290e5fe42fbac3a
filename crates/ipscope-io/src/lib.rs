//! Reading and writing plates: TIFF / OME-TIFF / PNG images, plate discovery from vendor
//! file-name patterns, and plate layouts.
//!
//! Everything here turns bytes on disk into `ipscope-image` types (or back); no pixel
//! algorithms live here.

mod error;
pub mod write;

pub use error::{Error, Result};
pub use write::{write_png, write_tiff, PngSample, WritableSample};
