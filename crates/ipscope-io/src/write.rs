//! Image writers: single-page TIFF (any sample type ipscope reads) and 8/16-bit PNG.
//!
//! Files are written to a temporary name beside the target and renamed, so a killed process
//! never leaves a half-written image under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ipscope_image::{ImageView, Pixel};
use tiff::encoder::{colortype, TiffEncoder};

use crate::{Error, Result};

/// Sample types that can be written as grayscale TIFF.
pub trait WritableSample: Pixel {
    #[doc(hidden)]
    fn write_tiff_page<W: Write + std::io::Seek>(
        enc: &mut TiffEncoder<W>,
        width: u32,
        height: u32,
        data: &[Self],
    ) -> tiff::TiffResult<()>;
}

macro_rules! writable {
    ($t:ty, $ct:ty) => {
        impl WritableSample for $t {
            fn write_tiff_page<W: Write + std::io::Seek>(
                enc: &mut TiffEncoder<W>,
                width: u32,
                height: u32,
                data: &[Self],
            ) -> tiff::TiffResult<()> {
                enc.write_image::<$ct>(width, height, data)
            }
        }
    };
}
writable!(u8, colortype::Gray8);
writable!(u16, colortype::Gray16);
writable!(u32, colortype::Gray32);
writable!(f32, colortype::Gray32Float);

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `tmp` through `fill`, fsyncs it and renames it onto `path`.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a single-page, uncompressed grayscale TIFF.
pub fn write_tiff<T: WritableSample>(path: &Path, image: ImageView<'_, T>) -> Result<()> {
    let data = image.to_image().into_vec();
    let (w, h) = (image.width() as u32, image.height() as u32);
    write_atomic(path, |out| {
        let mut enc = TiffEncoder::new(out).map_err(|e| Error::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        T::write_tiff_page(&mut enc, w, h, &data).map_err(|e| Error::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    })
}

/// Sample types PNG can hold.
pub trait PngSample: Pixel {
    #[doc(hidden)]
    const DEPTH: png::BitDepth;
    #[doc(hidden)]
    fn push_be(self, out: &mut Vec<u8>);
}
impl PngSample for u8 {
    const DEPTH: png::BitDepth = png::BitDepth::Eight;
    fn push_be(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}
impl PngSample for u16 {
    const DEPTH: png::BitDepth = png::BitDepth::Sixteen;
    fn push_be(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

/// Writes an 8- or 16-bit grayscale PNG.
pub fn write_png<T: PngSample>(path: &Path, image: ImageView<'_, T>) -> Result<()> {
    let mut bytes = Vec::with_capacity(image.len() * std::mem::size_of::<T>());
    for row in image.rows() {
        for &v in row {
            v.push_be(&mut bytes);
        }
    }
    write_atomic(path, |out| {
        let err = |e: png::EncodingError| Error::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut enc = png::Encoder::new(out, image.width() as u32, image.height() as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(T::DEPTH);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(&bytes).map_err(err)?;
        w.finish().map_err(err)
    })
}
