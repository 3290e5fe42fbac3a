//! Reading and writing plates: TIFF / OME-TIFF / PNG images, plate discovery from vendor
//! file-name patterns, and plate layouts.
//!
//! Everything here turns bytes on disk into `ipscope-image` types (or back); no pixel
//! algorithms live here.

pub mod decode;
mod error;
pub mod layout;
pub mod plate;
pub mod timelapse;
pub mod write;

pub use decode::{decode, probe, probe_bytes, read_image, ImageFormat, ImageInfo, ReadOptions};
pub use error::{Error, Result};
pub use layout::{
    compare_layout, read_layout, read_layout_lenient, Layout, LayoutCoverage, RowError,
};
pub use plate::{
    builtin_schemes, discover, natural_cmp, normalize_well, parse_file_name, well_name,
    ChannelFile, DiscoverOptions, Field, FileMeta, NamingScheme, Plate, Problem,
};
pub use write::{write_png, write_tiff, PngSample, WritableSample};
