//! Image decoding: grayscale TIFF (including BigTIFF, multi-page and OME-TIFF) and PNG.
//!
//! The format comes from the file's magic bytes, never its extension, so a PNG saved as
//! `.tif` still reads. Pixels keep their stored type and range (a 12-bit camera image in a
//! 16-bit TIFF stays 0..4095); measurements do CellProfiler's scaling later.
//!
//! Hostile or broken files must produce an [`Error`] naming the file, never a panic or a huge
//! allocation: dimensions are checked against [`ReadOptions::max_pixels`] before any pixel
//! buffer exists, the `tiff`/`png` decoders get matching allocation limits, and every decoder
//! call runs under `catch_unwind` as a last line of defence.
//!
//! OME-TIFF metadata follows the OME data model
//! (<https://docs.openmicroscopy.org/ome-model/latest/ome-tiff/specification.html>): the first
//! page's ImageDescription holds OME-XML whose first `Image/Pixels` gives `PhysicalSizeX/Y`
//! and `Channel/@Name`.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ipscope_image::{DynImage, Image, SampleType};
use tiff::decoder::{Decoder as TiffDecoder, DecodingResult, Limits as TiffLimits};
use tiff::tags::{SampleFormat, Tag};
use tiff::ColorType;

use crate::{Error, Result};

/// The container formats ipscope reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Tiff,
    OmeTiff,
    Png,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Tiff => "TIFF",
            ImageFormat::OmeTiff => "OME-TIFF",
            ImageFormat::Png => "PNG",
        })
    }
}

/// Limits applied while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Largest `width * height` accepted; bigger headers are refused before allocating.
    pub max_pixels: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_pixels: 1 << 28,
        }
    }
}

/// What a file holds, read from its header without decoding pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Width of the first page.
    pub width: usize,
    /// Height of the first page.
    pub height: usize,
    /// Number of pages (TIFF directories); 1 for PNG.
    pub pages: usize,
    pub sample_type: SampleType,
    pub bits_per_sample: u32,
    /// OME `Channel/@Name` values in order; empty when the file has no OME-XML.
    pub channel_names: Vec<String>,
    /// Physical pixel size (x, y) in micrometres from OME `PhysicalSizeX/Y`.
    pub pixel_size_um: Option<(f64, f64)>,
}

/// Reads only the header of an in-memory file. `path` is used for error messages.
pub fn probe_bytes(bytes: &[u8], path: &Path) -> Result<ImageInfo> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    guarded(path, || probe_reader(Cursor::new(bytes), path))
}

/// Reads only the header of the file at `path` (the pixel data is not read).
pub fn probe(path: &Path) -> Result<ImageInfo> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    guarded(path, || probe_reader(BufReader::new(file), path))
}

/// Decodes page `page` (0-based) of an in-memory image. `path` is used for error messages.
pub fn decode(bytes: &[u8], path: &Path, page: usize, opts: &ReadOptions) -> Result<DynImage> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    guarded(path, || {
        decode_reader(Cursor::new(bytes), path, page, opts, Some(bytes))
    })
}

/// Reads and decodes page `page` (0-based) of the image file at `path`.
pub fn read_image(path: &Path, page: usize, opts: &ReadOptions) -> Result<DynImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, path, page, opts)
}

/// Runs a decoder call, turning a panic inside a third-party decoder into [`Error::Decode`].
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_string());
            Err(Error::Decode {
                path: path.to_path_buf(),
                message: format!("the decoder crashed ({what}); the file is probably corrupt"),
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    Tiff,
    Png,
}

/// Identifies the container from its first bytes, with a helpful message for look-alikes.
pub(crate) fn sniff<R: Read + Seek>(r: &mut R, path: &Path) -> Result<Container> {
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    r.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let head = &head[..n];
    if n == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    if head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
    {
        return Ok(Container::Tiff);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Container::Png);
    }
    let message = describe_foreign(head);
    Err(Error::UnknownFormat {
        path: path.to_path_buf(),
        message,
    })
}

fn describe_foreign(head: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (b"\xff\xd8\xff", "it is a JPEG image"),
        (b"GIF8", "it is a GIF image"),
        (b"BM", "it looks like a BMP image"),
        (b"PK\x03\x04", "it is a ZIP archive"),
        (b"\x1f\x8b", "it is gzip-compressed"),
        (b"%PDF", "it is a PDF document"),
        (b"\x89HDF", "it is an HDF5 file"),
        (b"RIFF", "it is a RIFF (e.g. WebP) file"),
    ];
    for (magic, what) in known {
        if head.starts_with(magic) {
            return format!("{what}; ipscope reads TIFF, OME-TIFF and PNG");
        }
    }
    if head.starts_with(b"II") || head.starts_with(b"MM") {
        return "it starts like a TIFF but the version number is wrong".to_string();
    }
    if head.starts_with(b"\x89PNG") {
        return "it starts like a PNG but the signature is damaged".to_string();
    }
    let texty = head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80);
    if texty {
        let shown: String = String::from_utf8_lossy(head)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        return format!(
            "it looks like a text file (starts with {:?}); ipscope reads TIFF, OME-TIFF and PNG",
            shown.trim_end()
        );
    }
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "unrecognised signature {}; ipscope reads TIFF, OME-TIFF and PNG",
        hex.join(" ")
    )
}

fn probe_reader<R: Read + Seek>(mut r: R, path: &Path) -> Result<ImageInfo> {
    match sniff(&mut r, path)? {
        Container::Tiff => probe_tiff(r, path),
        Container::Png => {
            let header = png_header(r, path, &ReadOptions::default())?;
            Ok(ImageInfo {
                format: ImageFormat::Png,
                width: header.width,
                height: header.height,
                pages: 1,
                sample_type: header.sample_type,
                bits_per_sample: header.sample_type.bits(),
                channel_names: Vec::new(),
                pixel_size_um: None,
            })
        }
    }
}

/// `bytes`: the whole file, when the caller has it in memory (an uncompressed TIFF page is
/// then read from it directly, see [`direct_strips`]).
fn decode_reader<R: Read + Seek>(
    mut r: R,
    path: &Path,
    page: usize,
    opts: &ReadOptions,
    bytes: Option<&[u8]>,
) -> Result<DynImage> {
    match sniff(&mut r, path)? {
        Container::Tiff => decode_tiff(r, path, page, opts, bytes),
        Container::Png => {
            if page > 0 {
                return Err(Error::PageOutOfRange {
                    path: path.to_path_buf(),
                    page,
                    pages: 1,
                });
            }
            decode_png(r, path, opts)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TIFF

pub(crate) fn tiff_err(path: &Path, e: tiff::TiffError) -> Error {
    match e {
        tiff::TiffError::UnsupportedError(u) => Error::Unsupported {
            path: path.to_path_buf(),
            message: u.to_string(),
        },
        tiff::TiffError::LimitsExceeded => Error::Decode {
            path: path.to_path_buf(),
            message: "the image needs more memory than the --max-pixels limit allows".to_string(),
        },
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Decode {
                path: path.to_path_buf(),
                message: "file is truncated (ends before the data its header describes)"
                    .to_string(),
            }
        }
        other => Error::Decode {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// Counts the pages (main-chain IFDs) by walking the directory chain without decoding them.
pub(crate) fn count_tiff_pages<R: Read + Seek>(r: &mut R, path: &Path) -> Result<usize> {
    // Generous: real stacks have thousands of pages, not millions.
    const MAX_PAGES: usize = 1 << 20;
    let truncated = || Error::Decode {
        path: path.to_path_buf(),
        message: "file is truncated (a TIFF directory lies past the end of the file)".to_string(),
    };
    let read = |r: &mut R, buf: &mut [u8]| r.read_exact(buf).map_err(|_| truncated());
    r.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 8];
    read(r, &mut head)?;
    let le = &head[..2] == b"II";
    let u16_of = |b: [u8; 2]| {
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_of = |b: [u8; 4]| {
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let u64_of = |b: [u8; 8]| {
        if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    let big = u16_of([head[2], head[3]]) == 43;
    let mut offset = if big {
        let mut b = [0u8; 8];
        read(r, &mut b)?;
        u64_of(b)
    } else {
        u64::from(u32_of([head[4], head[5], head[6], head[7]]))
    };
    let mut seen = HashSet::new();
    let mut pages = 0usize;
    while offset != 0 && pages < MAX_PAGES {
        if !seen.insert(offset) {
            break; // a cycle in the chain; the pages so far are the real ones
        }
        r.seek(SeekFrom::Start(offset)).map_err(|_| truncated())?;
        let entries = if big {
            let mut b = [0u8; 8];
            read(r, &mut b)?;
            u64_of(b)
        } else {
            let mut b = [0u8; 2];
            read(r, &mut b)?;
            u64::from(u16_of(b))
        };
        let entry_size = if big { 20 } else { 12 };
        let skip = entries
            .checked_mul(entry_size)
            .and_then(|s| i64::try_from(s).ok())
            .ok_or_else(truncated)?;
        r.seek(SeekFrom::Current(skip)).map_err(|_| truncated())?;
        pages += 1;
        offset = if big {
            let mut b = [0u8; 8];
            read(r, &mut b)?;
            u64_of(b)
        } else {
            let mut b = [0u8; 4];
            read(r, &mut b)?;
            u64::from(u32_of(b))
        };
    }
    Ok(pages)
}

/// The sample layout of the decoder's current page, or `Unsupported` with a useful message.
pub(crate) fn tiff_sample<R: Read + Seek>(
    dec: &mut TiffDecoder<R>,
    path: &Path,
) -> Result<SampleType> {
    let unsupported = |message: String| Error::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let colortype = dec.colortype().map_err(|e| tiff_err(path, e))?;
    let bits = match colortype {
        ColorType::Gray(b) => b,
        other => {
            let what = match other {
                ColorType::RGB(_) => "an RGB colour image".to_string(),
                ColorType::RGBA(_) => "an RGBA colour image".to_string(),
                ColorType::Palette(_) => "a palette (indexed colour) image".to_string(),
                ColorType::GrayA(_) => "a grayscale image with an alpha channel".to_string(),
                ColorType::CMYK(_) | ColorType::CMYKA(_) => "a CMYK image".to_string(),
                ColorType::YCbCr(_) => "a YCbCr colour image".to_string(),
                ColorType::Multiband { num_samples, .. } => {
                    format!("an image with {num_samples} samples per pixel")
                }
                _ => format!("a {other:?} image"),
            };
            return Err(unsupported(format!(
                "{what}; ipscope wants one grayscale channel per file or page \
                 (save each channel as its own grayscale image)"
            )));
        }
    };
    let format = dec
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .map_err(|e| tiff_err(path, e))?
        .and_then(|v| v.first().copied())
        .map(SampleFormat::from_u16_exhaustive)
        .unwrap_or(SampleFormat::Uint);
    match (format, bits) {
        (SampleFormat::Uint, 8) => Ok(SampleType::U8),
        (SampleFormat::Uint, 16) => Ok(SampleType::U16),
        (SampleFormat::Uint, 32) => Ok(SampleType::U32),
        (SampleFormat::IEEEFP, 32) => Ok(SampleType::F32),
        (SampleFormat::Int, b) => Err(unsupported(format!(
            "{b}-bit signed integer samples; ipscope reads 8/16/32-bit unsigned or 32-bit float"
        ))),
        (SampleFormat::IEEEFP, b) => Err(unsupported(format!(
            "{b}-bit floating-point samples; ipscope reads 8/16/32-bit unsigned or 32-bit float"
        ))),
        (SampleFormat::Uint, b) => Err(unsupported(format!(
            "{b}-bit samples; ipscope reads 8/16/32-bit unsigned or 32-bit float"
        ))),
        (other, b) => Err(unsupported(format!(
            "{b}-bit samples of format {other:?}; ipscope reads 8/16/32-bit unsigned or 32-bit float"
        ))),
    }
}

pub(crate) fn tiff_limits(max_pixels: u64) -> TiffLimits {
    let max_bytes = usize::try_from(max_pixels.saturating_mul(4)).unwrap_or(usize::MAX);
    let mut limits = TiffLimits::default();
    limits.decoding_buffer_size = max_bytes;
    limits.intermediate_buffer_size = limits.intermediate_buffer_size.max(max_bytes);
    // Large plates put megabytes of OME-XML into the first ImageDescription.
    limits.ifd_value_size = 64 << 20;
    limits
}

pub(crate) fn check_pixels(path: &Path, width: u64, height: u64, max_pixels: u64) -> Result<()> {
    match width.checked_mul(height) {
        Some(n) if n <= max_pixels => Ok(()),
        _ => Err(Error::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            max_pixels,
        }),
    }
}

pub(crate) fn open_tiff<R: Read + Seek>(
    r: R,
    path: &Path,
    max_pixels: u64,
) -> Result<TiffDecoder<R>> {
    Ok(TiffDecoder::new(r)
        .map_err(|e| tiff_err(path, e))?
        .with_limits(tiff_limits(max_pixels)))
}

fn probe_tiff<R: Read + Seek>(mut r: R, path: &Path) -> Result<ImageInfo> {
    let pages = count_tiff_pages(&mut r, path)?;
    r.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let mut dec = open_tiff(r, path, ReadOptions::default().max_pixels)?;
    let (w, h) = dec.dimensions().map_err(|e| tiff_err(path, e))?;
    let sample_type = tiff_sample(&mut dec, path)?;
    let ome = dec
        .find_tag(Tag::ImageDescription)
        .ok()
        .flatten()
        .and_then(|v| v.into_string().ok())
        .and_then(|s| parse_ome_xml(&s));
    let (format, channel_names, pixel_size_um) = match ome {
        Some(m) => (ImageFormat::OmeTiff, m.channel_names, m.pixel_size_um),
        None => (ImageFormat::Tiff, Vec::new(), None),
    };
    Ok(ImageInfo {
        format,
        width: w as usize,
        height: h as usize,
        pages: pages.max(1),
        sample_type,
        bits_per_sample: sample_type.bits(),
        channel_names,
        pixel_size_um,
    })
}

fn decode_tiff<R: Read + Seek>(
    mut r: R,
    path: &Path,
    page: usize,
    opts: &ReadOptions,
    bytes: Option<&[u8]>,
) -> Result<DynImage> {
    let pages = count_tiff_pages(&mut r, path)?;
    if page >= pages {
        return Err(Error::PageOutOfRange {
            path: path.to_path_buf(),
            page,
            pages,
        });
    }
    r.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let mut dec = open_tiff(r, path, opts.max_pixels)?;
    if page > 0 {
        dec.seek_to_image(page).map_err(|e| tiff_err(path, e))?;
    }
    let (w, h) = dec.dimensions().map_err(|e| tiff_err(path, e))?;
    check_pixels(path, u64::from(w), u64::from(h), opts.max_pixels)?;
    let sample_type = tiff_sample(&mut dec, path)?;
    let (w, h) = (w as usize, h as usize);
    let direct = bytes.and_then(|b| direct_strips(&mut dec, b, sample_type, w, h));
    let data = match direct {
        Some(data) => data,
        None => dec.read_image().map_err(|e| tiff_err(path, e))?,
    };
    let wrong = |got: &str| Error::Decode {
        path: path.to_path_buf(),
        message: format!("decoder returned {got} samples for a {sample_type} image"),
    };
    let image = match (sample_type, data) {
        (SampleType::U8, DecodingResult::U8(v)) => DynImage::U8(to_image(path, w, h, v)?),
        (SampleType::U16, DecodingResult::U16(v)) => DynImage::U16(to_image(path, w, h, v)?),
        (SampleType::U32, DecodingResult::U32(v)) => DynImage::U32(to_image(path, w, h, v)?),
        (SampleType::F32, DecodingResult::F32(v)) => DynImage::F32(to_image(path, w, h, v)?),
        (_, other) => return Err(wrong(result_name(&other))),
    };
    Ok(image)
}

/// The current page of a little-endian TIFF whose pixels are stored as they are
/// (uncompressed, no predictor, one grayscale sample, black is zero, in strips), read
/// straight from the file's `bytes`: each strip's samples appended to the image's buffer in
/// one pass, where the decoder fills a zeroed buffer and then copies every strip into it.
/// The same samples as the decoder gives (test `direct_strips_equal_the_decoder`). `None`
/// for any other page, or where a tag is missing or odd or a strip lies outside `bytes`:
/// the decoder then reads the page (and reports what is wrong with it).
fn direct_strips<R: Read + Seek>(
    dec: &mut TiffDecoder<R>,
    bytes: &[u8],
    sample: SampleType,
    w: usize,
    h: usize,
) -> Option<DecodingResult> {
    if !(bytes.starts_with(b"II*\0") || bytes.starts_with(b"II+\0")) {
        return None;
    }
    // A tag's single value, `default` where it is absent; None where it cannot be read.
    let mut one = |tag: Tag, default: u64| -> Option<u64> {
        match dec.find_tag(tag).ok()? {
            None => Some(default),
            Some(v) => v.into_u64().ok(),
        }
    };
    // Compression 1 = none, Photometric 1 = black is zero, Predictor 1 = none, PlanarConfiguration 1 = chunky.
    if one(Tag::Compression, 1)? != 1
        || one(Tag::PhotometricInterpretation, u64::MAX)? != 1
        || one(Tag::Predictor, 1)? != 1
        || one(Tag::SamplesPerPixel, 1)? != 1
        || one(Tag::PlanarConfiguration, 1)? != 1
        || one(Tag::TileWidth, 0)? != 0
    {
        return None;
    }
    let rows_per_strip = usize::try_from(one(Tag::RowsPerStrip, u64::from(u32::MAX))?)
        .ok()?
        .clamp(1, h.max(1));
    let offsets = dec.get_tag_u64_vec(Tag::StripOffsets).ok()?;
    let counts = dec.get_tag_u64_vec(Tag::StripByteCounts).ok()?;
    let strips = h.div_ceil(rows_per_strip);
    if offsets.len() != strips || counts.len() != strips {
        return None;
    }
    let size = sample.bits() as usize / 8;
    let n = w.checked_mul(h)?;
    // Each strip's bytes: its rows' worth from its offset, inside the file.
    let mut parts = Vec::with_capacity(strips);
    for (i, (&off, &count)) in offsets.iter().zip(&counts).enumerate() {
        let rows = rows_per_strip.min(h - i * rows_per_strip);
        let need = rows.checked_mul(w)?.checked_mul(size)?;
        let start = usize::try_from(off).ok()?;
        if usize::try_from(count).ok()? < need {
            return None;
        }
        parts.push(bytes.get(start..start.checked_add(need)?)?);
    }
    fn gather<T, const N: usize>(parts: &[&[u8]], n: usize, f: fn([u8; N]) -> T) -> Vec<T> {
        let mut v = Vec::with_capacity(n);
        for part in parts {
            v.extend(
                part.chunks_exact(N)
                    .map(|c| f(c.try_into().unwrap_or([0; N]))),
            );
        }
        v
    }
    Some(match sample {
        SampleType::U8 => DecodingResult::U8(parts.concat()),
        SampleType::U16 => DecodingResult::U16(gather(&parts, n, u16::from_le_bytes)),
        SampleType::U32 => DecodingResult::U32(gather(&parts, n, u32::from_le_bytes)),
        SampleType::F32 => DecodingResult::F32(gather(&parts, n, f32::from_le_bytes)),
    })
}

pub(crate) fn result_name(r: &DecodingResult) -> &'static str {
    match r {
        DecodingResult::U8(_) => "u8",
        DecodingResult::U16(_) => "u16",
        DecodingResult::U32(_) => "u32",
        DecodingResult::U64(_) => "u64",
        DecodingResult::F16(_) => "f16",
        DecodingResult::F32(_) => "f32",
        DecodingResult::F64(_) => "f64",
        DecodingResult::I8(_) => "i8",
        DecodingResult::I16(_) => "i16",
        DecodingResult::I32(_) => "i32",
        DecodingResult::I64(_) => "i64",
    }
}

pub(crate) fn to_image<T: Copy>(
    path: &Path,
    w: usize,
    h: usize,
    mut v: Vec<T>,
) -> Result<Image<T>> {
    let n = w.saturating_mul(h);
    if v.len() < n {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            message: format!("decoder returned {} samples for a {w}x{h} image", v.len()),
        });
    }
    v.truncate(n);
    Image::from_vec(w, h, v).map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Metadata ipscope uses from an OME-XML document.
#[derive(Debug, Clone, PartialEq, Default)]
struct OmeMeta {
    channel_names: Vec<String>,
    pixel_size_um: Option<(f64, f64)>,
}

/// Parses OME-XML; `None` when the text is not OME-XML (e.g. an ImageJ description).
fn parse_ome_xml(text: &str) -> Option<OmeMeta> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if !(trimmed.starts_with('<') && trimmed.contains("OME")) {
        return None;
    }
    let doc = roxmltree::Document::parse(trimmed).ok()?;
    let root = doc.root_element();
    if root.tag_name().name() != "OME" {
        return None;
    }
    let mut meta = OmeMeta::default();
    let pixels = root
        .descendants()
        .find(|n| n.tag_name().name() == "Image")
        .and_then(|img| img.children().find(|n| n.tag_name().name() == "Pixels"));
    let Some(pixels) = pixels else {
        return Some(meta);
    };
    let size = |axis: &str| -> Option<f64> {
        let v: f64 = pixels
            .attribute(format!("PhysicalSize{axis}").as_str())?
            .trim()
            .parse()
            .ok()?;
        let unit = pixels
            .attribute(format!("PhysicalSize{axis}Unit").as_str())
            .unwrap_or("µm");
        let um = v * unit_to_um(unit)?;
        (um.is_finite() && um > 0.0).then_some(um)
    };
    meta.pixel_size_um = match (size("X"), size("Y")) {
        (Some(x), Some(y)) => Some((x, y)),
        (Some(x), None) => Some((x, x)),
        _ => None,
    };
    let channels: Vec<Option<String>> = pixels
        .children()
        .filter(|n| n.tag_name().name() == "Channel")
        .map(|c| {
            c.attribute("Name")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .collect();
    if channels.iter().any(Option::is_some) {
        meta.channel_names = channels
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.unwrap_or_else(|| format!("c{}", i + 1)))
            .collect();
    }
    Some(meta)
}

/// Micrometres per unit for the OME `UnitsLength` values a microscope would write.
fn unit_to_um(unit: &str) -> Option<f64> {
    Some(match unit.trim() {
        "m" => 1e6,
        "dm" => 1e5,
        "cm" => 1e4,
        "mm" => 1e3,
        "µm" | "μm" | "um" | "micron" => 1.0,
        "nm" => 1e-3,
        "pm" => 1e-6,
        "Å" => 1e-4,
        "in" => 25_400.0,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// PNG

struct PngHeader {
    width: usize,
    height: usize,
    sample_type: SampleType,
}

fn png_err(path: &Path, e: png::DecodingError) -> Error {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Decode {
                path: path.to_path_buf(),
                message: "file is truncated (ends before the data its header describes)"
                    .to_string(),
            }
        }
        png::DecodingError::LimitsExceeded => Error::Decode {
            path: path.to_path_buf(),
            message: "the image needs more memory than the --max-pixels limit allows".to_string(),
        },
        other => Error::Decode {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

fn png_decoder<R: Read + Seek>(r: R, opts: &ReadOptions) -> png::Decoder<BufReader<R>> {
    let budget = usize::try_from(opts.max_pixels.saturating_mul(4)).unwrap_or(usize::MAX);
    let limits = png::Limits {
        bytes: budget.max(64 << 20),
    };
    let mut dec = png::Decoder::new_with_limits(BufReader::new(r), limits);
    dec.set_transformations(png::Transformations::IDENTITY);
    dec
}

fn png_sample(info: &png::Info<'_>, path: &Path) -> Result<SampleType> {
    let unsupported = |message: String| Error::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let bits = info.bit_depth as u8;
    match info.color_type {
        png::ColorType::Grayscale => match info.bit_depth {
            png::BitDepth::Eight => Ok(SampleType::U8),
            png::BitDepth::Sixteen => Ok(SampleType::U16),
            _ => Err(unsupported(format!(
                "{bits}-bit grayscale PNG; ipscope reads 8- and 16-bit grayscale"
            ))),
        },
        other => {
            let what = match other {
                png::ColorType::Rgb => "an RGB colour PNG",
                png::ColorType::Rgba => "an RGBA colour PNG",
                png::ColorType::Indexed => "a palette (indexed colour) PNG",
                png::ColorType::GrayscaleAlpha => "a grayscale PNG with an alpha channel",
                png::ColorType::Grayscale => "a grayscale PNG",
            };
            Err(unsupported(format!(
                "{what}; ipscope wants one grayscale channel per file or page \
                 (save each channel as its own 8- or 16-bit grayscale image)"
            )))
        }
    }
}

fn png_header<R: Read + Seek>(r: R, path: &Path, opts: &ReadOptions) -> Result<PngHeader> {
    let reader = png_decoder(r, opts)
        .read_info()
        .map_err(|e| png_err(path, e))?;
    let info = reader.info();
    Ok(PngHeader {
        width: info.width as usize,
        height: info.height as usize,
        sample_type: png_sample(info, path)?,
    })
}

fn decode_png<R: Read + Seek>(r: R, path: &Path, opts: &ReadOptions) -> Result<DynImage> {
    let mut reader = png_decoder(r, opts)
        .read_info()
        .map_err(|e| png_err(path, e))?;
    let (w, h, sample_type) = {
        let info = reader.info();
        (info.width, info.height, png_sample(info, path)?)
    };
    check_pixels(path, u64::from(w), u64::from(h), opts.max_pixels)?;
    let size = reader.output_buffer_size().ok_or_else(|| Error::Decode {
        path: path.to_path_buf(),
        message: "image size overflows memory".to_string(),
    })?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| png_err(path, e))?;
    let (w, h) = (w as usize, h as usize);
    let stride = frame.line_size;
    let bytes_per = if sample_type == SampleType::U16 { 2 } else { 1 };
    let short = || Error::Decode {
        path: path.to_path_buf(),
        message: "decoder returned fewer bytes than the image size".to_string(),
    };
    if stride == 0 || stride < w * bytes_per || buf.len() < stride * h {
        return Err(short());
    }
    Ok(match sample_type {
        SampleType::U16 => {
            let mut v = Vec::with_capacity(w * h);
            for row in buf.chunks_exact(stride).take(h) {
                v.extend(
                    row[..w * 2]
                        .chunks_exact(2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]])),
                );
            }
            DynImage::U16(to_image(path, w, h, v)?)
        }
        _ => {
            let mut v = Vec::with_capacity(w * h);
            for row in buf.chunks_exact(stride).take(h) {
                v.extend_from_slice(&row[..w]);
            }
            DynImage::U8(to_image(path, w, h, v)?)
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use tiff::encoder::TiffValue;
    use tiff::encoder::{colortype, compression::DeflateLevel, Compression, TiffEncoder};

    pub(crate) fn p() -> PathBuf {
        PathBuf::from("plate/B02_w1.tif")
    }

    /// Encodes `pages` as a (multi-page) TIFF with the given compression.
    pub(crate) fn tiff_pages<C: colortype::ColorType>(
        w: u32,
        h: u32,
        pages: &[&[C::Inner]],
        compression: Compression,
    ) -> Vec<u8>
    where
        [C::Inner]: TiffValue,
    {
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new(&mut out)
            .unwrap()
            .with_compression(compression);
        for data in pages {
            enc.write_image::<C>(w, h, data).unwrap();
        }
        out.into_inner()
    }

    fn tiff1<C: colortype::ColorType>(w: u32, h: u32, data: &[C::Inner]) -> Vec<u8>
    where
        [C::Inner]: TiffValue,
    {
        tiff_pages::<C>(w, h, &[data], Compression::Uncompressed)
    }

    /// A little-endian classic TIFF assembled by hand: pixel `data` at offset 8, then one IFD.
    /// `entries` are (tag, type, values) with type 3 = SHORT, 4 = LONG; values that do not fit
    /// the 4-byte slot go after the IFD. Offsets into `data` are written relative to 0 by the
    /// caller as `8 + position`.
    pub(crate) fn tiff_by_hand(entries: &[(u16, u16, Vec<u32>)], data: &[u8]) -> Vec<u8> {
        let mut entries = entries.to_vec();
        entries.sort_by_key(|e| e.0);
        let mut out = b"II*\0".to_vec();
        let ifd = (8 + data.len() + 1) & !1;
        out.extend_from_slice(&(ifd as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(ifd, 0);
        let mut extra_at = ifd + 2 + entries.len() * 12 + 4;
        let mut extra = Vec::new();
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, ty, values) in &entries {
            let size = if *ty == 3 { 2 } else { 4 };
            let mut bytes = Vec::new();
            for &v in values {
                if *ty == 3 {
                    bytes.extend_from_slice(&(v as u16).to_le_bytes());
                } else {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            if values.len() * size <= 4 {
                bytes.resize(4, 0);
                out.extend_from_slice(&bytes);
            } else {
                out.extend_from_slice(&(extra_at as u32).to_le_bytes());
                extra_at += bytes.len();
                extra.extend_from_slice(&bytes);
            }
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&extra);
        out
    }

    pub(crate) fn png_bytes(
        w: u32,
        h: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(color);
            enc.set_depth(depth);
            if color == png::ColorType::Indexed {
                enc.set_palette(vec![0u8, 0, 0, 255, 255, 255]);
            }
            let mut wr = enc.write_header().unwrap();
            wr.write_image_data(data).unwrap();
            wr.finish().unwrap();
        }
        out
    }

    fn ramp_u16(w: usize, h: usize) -> Vec<u16> {
        // 12-bit camera values: must come back as 0..4095, not stretched to 16 bits.
        let mut v: Vec<u16> = (0..w * h).map(|i| (i * 37 % 4096) as u16).collect();
        v[w * h - 1] = 4095;
        v
    }

    #[test]
    fn every_sample_type_round_trips_natively() {
        let (w, h) = (7usize, 5usize);
        let d8: Vec<u8> = (0..w * h).map(|i| (i * 7) as u8).collect();
        let d16 = ramp_u16(w, h);
        let d32: Vec<u32> = (0..w * h).map(|i| i as u32 * 100_000 + 3).collect();
        let df: Vec<f32> = (0..w * h).map(|i| i as f32 * -0.25 + 1.5).collect();
        let opts = ReadOptions::default();

        let img = decode(&tiff1::<colortype::Gray8>(7, 5, &d8), &p(), 0, &opts).unwrap();
        assert_eq!(img, DynImage::U8(Image::from_vec(w, h, d8).unwrap()));

        let bytes = tiff1::<colortype::Gray16>(7, 5, &d16);
        let img = decode(&bytes, &p(), 0, &opts).unwrap();
        let DynImage::U16(i16) = &img else {
            panic!("expected u16, got {:?}", img.sample_type())
        };
        assert_eq!(i16.as_slice(), &d16[..]);
        assert_eq!(i16.as_slice().iter().max(), Some(&4095));
        let info = probe_bytes(&bytes, &p()).unwrap();
        assert_eq!(info.format, ImageFormat::Tiff);
        assert_eq!((info.width, info.height, info.pages), (7, 5, 1));
        assert_eq!(info.sample_type, SampleType::U16);
        assert_eq!(info.bits_per_sample, 16);
        assert!(info.channel_names.is_empty());
        assert_eq!(info.pixel_size_um, None);

        let img = decode(&tiff1::<colortype::Gray32>(7, 5, &d32), &p(), 0, &opts).unwrap();
        assert_eq!(img, DynImage::U32(Image::from_vec(w, h, d32).unwrap()));

        let bytes = tiff1::<colortype::Gray32Float>(7, 5, &df);
        let img = decode(&bytes, &p(), 0, &opts).unwrap();
        assert_eq!(img, DynImage::F32(Image::from_vec(w, h, df).unwrap()));
        assert_eq!(
            probe_bytes(&bytes, &p()).unwrap().sample_type,
            SampleType::F32
        );
    }

    #[test]
    fn every_compression_decodes() {
        let (w, h) = (33u32, 21u32);
        let d16 = ramp_u16(w as usize, h as usize);
        let d8: Vec<u8> = (0..w * h).map(|i| (i % 5) as u8 * 50).collect();
        for compression in [
            Compression::Uncompressed,
            Compression::Lzw,
            Compression::Deflate(DeflateLevel::Balanced),
            Compression::Packbits,
        ] {
            let bytes = tiff_pages::<colortype::Gray16>(w, h, &[&d16], compression);
            let img = decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap();
            assert_eq!(
                img,
                DynImage::U16(Image::from_vec(33, 21, d16.clone()).unwrap())
            );
            let bytes = tiff_pages::<colortype::Gray8>(w, h, &[&d8], compression);
            let img = decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap();
            assert_eq!(
                img,
                DynImage::U8(Image::from_vec(33, 21, d8.clone()).unwrap())
            );
        }
    }

    #[test]
    fn bigtiff_decodes() {
        let d16 = ramp_u16(9, 4);
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new_big(&mut out)
            .unwrap()
            .with_compression(Compression::Lzw);
        enc.write_image::<colortype::Gray16>(9, 4, &d16).unwrap();
        enc.write_image::<colortype::Gray16>(
            9,
            4,
            &d16[..36].iter().map(|v| v + 1).collect::<Vec<_>>(),
        )
        .unwrap();
        let bytes = out.into_inner();
        assert_eq!(&bytes[..4], b"II+\0");
        let info = probe_bytes(&bytes, &p()).unwrap();
        assert_eq!((info.width, info.height, info.pages), (9, 4, 2));
        let img = decode(&bytes, &p(), 1, &ReadOptions::default()).unwrap();
        let DynImage::U16(img) = img else { panic!() };
        assert_eq!(img.get(0, 0), d16[0] + 1);
        assert_eq!(img.get(3, 8), d16[35] + 1);
    }

    #[test]
    fn tiled_tiff_assembles_tiles() {
        // 20 x 18 pixels in 16 x 16 tiles: 2 x 2 tiles, the right and bottom ones padded.
        let (w, h, t) = (20usize, 18usize, 16usize);
        let value = |r: usize, c: usize| (r * 100 + c) as u16;
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        for tr in 0..2 {
            for tc in 0..2 {
                offsets.push(8 + data.len() as u32);
                for r in 0..t {
                    for c in 0..t {
                        let (rr, cc) = (tr * t + r, tc * t + c);
                        let v = if rr < h && cc < w {
                            value(rr, cc)
                        } else {
                            0xffff
                        };
                        data.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        let bytes = tiff_by_hand(
            &[
                (256, 4, vec![w as u32]),
                (257, 4, vec![h as u32]),
                (258, 3, vec![16]),
                (259, 3, vec![1]),
                (262, 3, vec![1]),
                (277, 3, vec![1]),
                (322, 4, vec![16]),
                (323, 4, vec![16]),
                (324, 4, offsets),
                (325, 4, vec![512; 4]),
            ],
            &data,
        );
        let img = decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap();
        assert_eq!(img, DynImage::U16(Image::from_fn(w, h, value)));
        assert_eq!(probe_bytes(&bytes, &p()).unwrap().width, 20);
    }

    /// Decodes `bytes` through the decoder only (the path for pages `direct_strips` refuses).
    fn by_decoder(bytes: &[u8]) -> Result<DynImage> {
        decode_reader(Cursor::new(bytes), &p(), 0, &ReadOptions::default(), None)
    }

    /// Whether `direct_strips` reads page 0 of `bytes`.
    fn read_directly(bytes: &[u8]) -> bool {
        let mut dec = open_tiff(Cursor::new(bytes), &p(), u64::MAX).unwrap();
        let (w, h) = dec.dimensions().unwrap();
        let sample = tiff_sample(&mut dec, &p()).unwrap();
        direct_strips(&mut dec, bytes, sample, w as usize, h as usize).is_some()
    }

    /// Uncompressed pages of every sample type, classic and BigTIFF, in strips of 1 row to the
    /// whole image: read from the bytes, the same image as the decoder gives; compressed
    /// pages, white-is-zero pages and strips past the end of the file are left to the
    /// decoder (the same image, or its error).
    #[test]
    fn direct_strips_equal_the_decoder() {
        fn encoded<C: colortype::ColorType>(
            w: u32,
            h: u32,
            data: &[C::Inner],
            rows: Option<u32>,
            big: bool,
            compression: Compression,
        ) -> Vec<u8>
        where
            [C::Inner]: TiffValue,
        {
            /// Writes the one page with `rows` rows per strip (the encoder's choice if None).
            fn page<K: tiff::encoder::TiffKind, C: colortype::ColorType>(
                mut enc: TiffEncoder<&mut Cursor<Vec<u8>>, K>,
                w: u32,
                h: u32,
                data: &[C::Inner],
                rows: Option<u32>,
            ) where
                [C::Inner]: TiffValue,
            {
                let mut img = enc.new_image::<C>(w, h).unwrap();
                if let Some(r) = rows {
                    img.rows_per_strip(r).unwrap();
                }
                img.write_data(data).unwrap();
            }
            let mut out = Cursor::new(Vec::new());
            if big {
                let enc = TiffEncoder::new_big(&mut out).unwrap();
                page::<_, C>(enc.with_compression(compression), w, h, data, rows);
            } else {
                let enc = TiffEncoder::new(&mut out).unwrap();
                page::<_, C>(enc.with_compression(compression), w, h, data, rows);
            }
            out.into_inner()
        }
        let (w, h) = (37u32, 23u32);
        let n = (w * h) as usize;
        let v8: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let v16: Vec<u16> = (0..n)
            .map(|i| (i * 2_654_435_761 % 65_521) as u16)
            .collect();
        let v32: Vec<u32> = (0..n)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761))
            .collect();
        let vf: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 100.0).collect();
        let mut cases = 0;
        for rows in [None, Some(1), Some(4), Some(22), Some(23), Some(1000)] {
            for big in [false, true] {
                let none = Compression::Uncompressed;
                for bytes in [
                    encoded::<colortype::Gray8>(w, h, &v8, rows, big, none),
                    encoded::<colortype::Gray16>(w, h, &v16, rows, big, none),
                    encoded::<colortype::Gray32>(w, h, &v32, rows, big, none),
                    encoded::<colortype::Gray32Float>(w, h, &vf, rows, big, none),
                ] {
                    assert!(read_directly(&bytes), "rows {rows:?} big {big}");
                    let want = by_decoder(&bytes).unwrap();
                    assert_eq!(
                        decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap(),
                        want
                    );
                    cases += 1;
                }
                let deflated = encoded::<colortype::Gray16>(
                    w,
                    h,
                    &v16,
                    rows,
                    big,
                    Compression::Deflate(DeflateLevel::Fast),
                );
                assert!(!read_directly(&deflated));
                assert_eq!(
                    decode(&deflated, &p(), 0, &ReadOptions::default()).unwrap(),
                    by_decoder(&deflated).unwrap()
                );
            }
        }
        assert_eq!(cases, 48);
        // A 4 x 2 page by hand: black-is-zero is read directly; white-is-zero (the decoder
        // inverts it), a strip shorter than its rows and one past the end of the file are not.
        let data: Vec<u8> = (1..=8u16).flat_map(|v| (v * 1000).to_le_bytes()).collect();
        let page = |photometric: u32, offset: u32, count: u32| {
            tiff_by_hand(
                &[
                    (256, 4, vec![4]),
                    (257, 4, vec![2]),
                    (258, 3, vec![16]),
                    (259, 3, vec![1]),
                    (262, 3, vec![photometric]),
                    (273, 4, vec![offset]),
                    (277, 3, vec![1]),
                    (278, 4, vec![2]),
                    (279, 4, vec![count]),
                ],
                &data,
            )
        };
        let black = page(1, 8, 16);
        assert!(read_directly(&black));
        assert_eq!(
            decode(&black, &p(), 0, &ReadOptions::default()).unwrap(),
            DynImage::U16(Image::from_fn(4, 2, |r, c| ((r * 4 + c + 1) * 1000) as u16))
        );
        let white = page(0, 8, 16);
        assert!(!read_directly(&white));
        assert_eq!(
            decode(&white, &p(), 0, &ReadOptions::default()).unwrap(),
            by_decoder(&white).unwrap()
        );
        for bad in [page(1, 8, 14), page(1, 1 << 20, 16)] {
            assert!(!read_directly(&bad));
            assert_eq!(
                format!("{:?}", decode(&bad, &p(), 0, &ReadOptions::default())),
                format!("{:?}", by_decoder(&bad))
            );
        }
    }

    #[test]
    fn pages_are_selected_and_out_of_range_is_named() {
        let pages: Vec<Vec<u8>> = (0..3u8).map(|k| vec![k * 10 + 1; 6]).collect();
        let refs: Vec<&[u8]> = pages.iter().map(|v| v.as_slice()).collect();
        // Uncompressed pages are read from the bytes directly, each from its own directory.
        let stored = tiff_pages::<colortype::Gray8>(3, 2, &refs, Compression::Uncompressed);
        for k in 0..3 {
            let img = decode(&stored, &p(), k, &ReadOptions::default()).unwrap();
            assert_eq!(
                img,
                DynImage::U8(Image::new(3, 2, k as u8 * 10 + 1)),
                "page {k}"
            );
        }
        let bytes =
            tiff_pages::<colortype::Gray8>(3, 2, &refs, Compression::Deflate(DeflateLevel::Fast));
        assert_eq!(probe_bytes(&bytes, &p()).unwrap().pages, 3);
        for k in 0..3 {
            let img = decode(&bytes, &p(), k, &ReadOptions::default()).unwrap();
            assert_eq!(img, DynImage::U8(Image::new(3, 2, k as u8 * 10 + 1)));
        }
        let err = decode(&bytes, &p(), 3, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PageOutOfRange {
                    page: 3,
                    pages: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("B02_w1.tif") && msg.contains("has 3 pages"),
            "{msg}"
        );
    }

    const OME: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Image ID="Image:0" Name="B02">
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="4" SizeY="3" SizeC="2"
            SizeZ="1" SizeT="1" PhysicalSizeX="650" PhysicalSizeXUnit="nm"
            PhysicalSizeY="0.0007" PhysicalSizeYUnit="mm">
      <Channel ID="Channel:0:0" Name="DAPI" SamplesPerPixel="1"/>
      <Channel ID="Channel:0:1" Name="OCT4" SamplesPerPixel="1"/>
      <TiffData FirstC="0" IFD="0" PlaneCount="2"/>
    </Pixels>
  </Image>
</OME>"#;

    pub(crate) fn ome_tiff(xml: &str, pages: usize) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new(&mut out).unwrap();
        for k in 0..pages {
            let data = vec![k as u16 * 1000 + 7; 12];
            let mut img = enc.new_image::<colortype::Gray16>(4, 3).unwrap();
            if k == 0 {
                img.encoder().write_tag(Tag::ImageDescription, xml).unwrap();
            }
            img.write_data(&data).unwrap();
        }
        out.into_inner()
    }

    #[test]
    fn ome_tiff_channel_names_and_pixel_size() {
        let bytes = ome_tiff(OME, 2);
        let info = probe_bytes(&bytes, &p()).unwrap();
        assert_eq!(info.format, ImageFormat::OmeTiff);
        assert_eq!(info.format.to_string(), "OME-TIFF");
        assert_eq!(info.pages, 2);
        assert_eq!(info.channel_names, vec!["DAPI", "OCT4"]);
        let (x, y) = info.pixel_size_um.unwrap();
        assert!(
            (x - 0.65).abs() < 1e-12 && (y - 0.7).abs() < 1e-12,
            "{x} {y}"
        );
        let img = decode(&bytes, &p(), 1, &ReadOptions::default()).unwrap();
        assert_eq!(img, DynImage::U16(Image::new(4, 3, 1007)));

        // Default unit is µm; unnamed channels get positional names.
        let xml = r#"<OME><Image><Pixels PhysicalSizeX="0.325" PhysicalSizeY="0.5">
            <Channel Name="BF"/><Channel/></Pixels></Image></OME>"#;
        let info = probe_bytes(&ome_tiff(xml, 1), &p()).unwrap();
        assert_eq!(info.pixel_size_um, Some((0.325, 0.5)));
        assert_eq!(info.channel_names, vec!["BF", "c2"]);

        // An ImageJ description is not OME.
        let info = probe_bytes(&ome_tiff("ImageJ=1.54f\nimages=1\n", 1), &p()).unwrap();
        assert_eq!(info.format, ImageFormat::Tiff);
        assert!(info.channel_names.is_empty());
    }

    #[test]
    fn png_8_and_16_bit() {
        let d8: Vec<u8> = (0..12).map(|i| i * 20).collect();
        let bytes = png_bytes(4, 3, png::ColorType::Grayscale, png::BitDepth::Eight, &d8);
        let img = decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap();
        assert_eq!(img, DynImage::U8(Image::from_vec(4, 3, d8).unwrap()));
        let info = probe_bytes(&bytes, &p()).unwrap();
        assert_eq!(info.format, ImageFormat::Png);
        assert_eq!((info.width, info.height, info.pages), (4, 3, 1));
        assert_eq!(
            (info.sample_type, info.bits_per_sample),
            (SampleType::U8, 8)
        );

        let d16: Vec<u16> = vec![0x1234, 0x00ff, 4095, 0, 65535, 1];
        let be: Vec<u8> = d16.iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = png_bytes(3, 2, png::ColorType::Grayscale, png::BitDepth::Sixteen, &be);
        let img = decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap();
        assert_eq!(img, DynImage::U16(Image::from_vec(3, 2, d16).unwrap()));
        assert_eq!(
            probe_bytes(&bytes, &p()).unwrap().sample_type,
            SampleType::U16
        );

        let err = decode(&bytes, &p(), 1, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::PageOutOfRange { pages: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn colour_pngs_are_unsupported_with_a_reason() {
        let cases = [
            (png::ColorType::Rgb, vec![0u8; 2 * 2 * 3], "RGB"),
            (
                png::ColorType::GrayscaleAlpha,
                vec![0u8; 2 * 2 * 2],
                "alpha",
            ),
            (png::ColorType::Indexed, vec![0u8; 4], "palette"),
        ];
        for (color, data, what) in cases {
            let bytes = png_bytes(2, 2, color, png::BitDepth::Eight, &data);
            for err in [
                decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap_err(),
                probe_bytes(&bytes, &p()).unwrap_err(),
            ] {
                let msg = err.to_string();
                assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
                assert!(
                    msg.contains(what) && msg.contains("one grayscale channel"),
                    "{msg}"
                );
                assert!(msg.contains("B02_w1.tif"), "{msg}");
            }
        }
    }

    #[test]
    fn unsupported_tiff_layouts() {
        let rgb = tiff1::<colortype::RGB8>(2, 2, &[0u8; 12]);
        let err = decode(&rgb, &p(), 0, &ReadOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(
            msg.contains("RGB") && msg.contains("one grayscale channel"),
            "{msg}"
        );

        let signed = tiff1::<colortype::GrayI16>(2, 2, &[-1i16, 0, 1, 2]);
        let err = decode(&signed, &p(), 0, &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("signed"), "{err}");
        assert!(matches!(err, Error::Unsupported { .. }));

        let wide = tiff1::<colortype::Gray64>(2, 2, &[1u64, 2, 3, 4]);
        let err = probe_bytes(&wide, &p()).unwrap_err();
        assert!(err.to_string().contains("64-bit"), "{err}");

        let doubles = tiff1::<colortype::Gray64Float>(2, 1, &[1.0f64, 2.0]);
        let err = decode(&doubles, &p(), 0, &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("64-bit floating-point"), "{err}");

        // 1-bit bilevel, built by hand.
        let bilevel = tiff_by_hand(
            &[
                (256, 4, vec![8]),
                (257, 4, vec![2]),
                (258, 3, vec![1]),
                (259, 3, vec![1]),
                (262, 3, vec![1]),
                (273, 4, vec![8]),
                (277, 3, vec![1]),
                (278, 4, vec![2]),
                (279, 4, vec![2]),
            ],
            &[0b1010_1010, 0xff],
        );
        let err = decode(&bilevel, &p(), 0, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("1-bit"), "{err}");
    }

    fn absurd_tiff() -> Vec<u8> {
        tiff_by_hand(
            &[
                (256, 4, vec![100_000]),
                (257, 4, vec![100_000]),
                (258, 3, vec![16]),
                (259, 3, vec![1]),
                (262, 3, vec![1]),
                (273, 4, vec![8]),
                (277, 3, vec![1]),
                (278, 4, vec![100_000]),
                (279, 4, vec![16]),
            ],
            &[0u8; 16],
        )
    }

    #[test]
    fn absurd_dimensions_are_refused_before_allocating() {
        let bytes = absurd_tiff();
        // The header alone is fine to look at...
        let info = probe_bytes(&bytes, &p()).unwrap();
        assert_eq!((info.width, info.height), (100_000, 100_000));
        // ...but decoding 10^10 pixels (20 GB) is refused up front.
        let err = decode(&bytes, &p(), 0, &ReadOptions::default()).unwrap_err();
        match &err {
            Error::TooLarge {
                width,
                height,
                max_pixels,
                path,
            } => {
                assert_eq!((*width, *height, *max_pixels), (100_000, 100_000, 1 << 28));
                assert_eq!(path, &p());
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(err.to_string().contains("--max-pixels"), "{err}");
    }

    #[test]
    fn max_pixels_is_enforced_for_tiff_and_png() {
        let tiny = ReadOptions { max_pixels: 99 };
        let tif = tiff1::<colortype::Gray8>(10, 10, &[0u8; 100]);
        let err = decode(&tif, &p(), 0, &tiny).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    width: 10,
                    height: 10,
                    max_pixels: 99,
                    ..
                }
            ),
            "{err:?}"
        );
        let ok = decode(&tif, &p(), 0, &ReadOptions { max_pixels: 100 }).unwrap();
        assert_eq!(ok.width(), 10);
        let png = png_bytes(
            10,
            10,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[0; 100],
        );
        let err = decode(&png, &p(), 0, &tiny).unwrap_err();
        assert!(matches!(err, Error::TooLarge { width: 10, .. }), "{err:?}");
    }

    #[test]
    fn truncated_files_are_decode_errors() {
        let d16 = ramp_u16(64, 64);
        let full = tiff1::<colortype::Gray16>(64, 64, &d16);
        for cut in [4usize, 9, full.len() / 2, full.len() - 3] {
            let err = decode(&full[..cut], &p(), 0, &ReadOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "cut {cut}: {err:?}");
            assert!(err.to_string().contains("B02_w1.tif"), "{err}");
        }
        // Header intact, strip data past the end of the file.
        let short = tiff_by_hand(
            &[
                (256, 4, vec![8]),
                (257, 4, vec![8]),
                (258, 3, vec![8]),
                (259, 3, vec![1]),
                (262, 3, vec![1]),
                (273, 4, vec![10_000]),
                (277, 3, vec![1]),
                (278, 4, vec![8]),
                (279, 4, vec![64]),
            ],
            &[1u8; 8],
        );
        let err = decode(&short, &p(), 0, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated"), "{err}");

        let png = png_bytes(
            16,
            16,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[9; 256],
        );
        for cut in [8usize, 20, png.len() / 2, png.len() - 12] {
            let err = decode(&png[..cut], &p(), 0, &ReadOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn garbage_after_a_valid_magic_never_panics() {
        // Deterministic pseudo-random corruption of a valid file.
        let full = ome_tiff(OME, 2);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut bytes = full.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = 4 + (state as usize) % (bytes.len() - 4);
                bytes[i] = (state >> 32) as u8;
            }
            let _ = probe_bytes(&bytes, &p());
            let _ = decode(
                &bytes,
                &p(),
                1,
                &ReadOptions {
                    max_pixels: 1 << 16,
                },
            );
        }
    }

    #[test]
    fn bad_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.tif");
        std::fs::write(&empty, b"").unwrap();
        for err in [
            read_image(&empty, 0, &ReadOptions::default()).unwrap_err(),
            probe(&empty).unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Empty { path } if path == &empty),
                "{err:?}"
            );
            assert!(err.to_string().contains("empty.tif"));
        }

        let text = dir.path().join("notes.tif");
        std::fs::write(&text, "Well,Compound\nB02,DMSO\n").unwrap();
        let err = read_image(&text, 0, &ReadOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::UnknownFormat { .. }), "{err:?}");
        assert!(
            msg.contains("notes.tif") && msg.contains("text file"),
            "{msg}"
        );

        let jpeg = dir.path().join("photo.tif");
        std::fs::write(&jpeg, b"\xff\xd8\xff\xe0\x00\x10JFIF\0").unwrap();
        let err = probe(&jpeg).unwrap_err();
        assert!(err.to_string().contains("JPEG"), "{err}");

        // A PNG with a .tif name decodes by its magic bytes.
        let png_as_tif = dir.path().join("B03_w1.tif");
        let bytes = png_bytes(
            2,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[1, 2, 3, 4],
        );
        std::fs::write(&png_as_tif, bytes).unwrap();
        let img = read_image(&png_as_tif, 0, &ReadOptions::default()).unwrap();
        assert_eq!(
            img,
            DynImage::U8(Image::from_vec(2, 2, vec![1, 2, 3, 4]).unwrap())
        );
        assert_eq!(probe(&png_as_tif).unwrap().format, ImageFormat::Png);

        let missing = dir.path().join("missing.tif");
        let err = read_image(&missing, 0, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.tif"));

        // probe reads from disk through the same path as probe_bytes.
        let tif = dir.path().join("ok.tif");
        std::fs::write(&tif, ome_tiff(OME, 2)).unwrap();
        assert_eq!(probe(&tif).unwrap().channel_names, vec!["DAPI", "OCT4"]);
    }

    #[test]
    fn a_decoder_panic_becomes_a_decode_error() {
        let err = guarded::<()>(&p(), || panic!("index out of bounds")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Decode { .. }));
        assert!(
            msg.contains("index out of bounds") && msg.contains("B02_w1.tif"),
            "{msg}"
        );
    }

    #[test]
    fn display_names() {
        assert_eq!(ImageFormat::Tiff.to_string(), "TIFF");
        assert_eq!(ImageFormat::Png.to_string(), "PNG");
        assert_eq!(ReadOptions::default().max_pixels, 268_435_456);
    }
}
