//! Time-lapse plates: the frames of one field, streamed one at a time.
//!
//! A field's time axis comes in one of two layouts:
//!
//! * one multi-page TIFF per field and channel, pages = frames (ImageJ hyperstacks,
//!   OME-TIFF, most camera software);
//! * one file per frame, the frame number from a `T` group in the file-name pattern
//!   (`--pattern '…_t(?P<T>\d+)…'`, CellVoyager's `T0001`) or MetaXpress' `TimePoint_N`
//!   folders.
//!
//! [`series`] turns a discovered [`Plate`] into one [`TimeSeries`] per (well, site), and
//! [`FrameReader`] decodes a series frame by frame into one reused buffer, so memory does not
//! grow with the number of frames. [`frame_interval`] reads the frame interval from the
//! ImageJ description (`finterval`, `fps`) or the OME-XML `Pixels/@TimeIncrement`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ipscope_image::{DynImage, SampleType};
use tiff::decoder::{Decoder as TiffDecoder, DecodingResult};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::Tag;

use crate::decode::{
    check_pixels, count_tiff_pages, guarded, open_tiff, read_image, result_name, sniff, tiff_err,
    tiff_sample, Container, ReadOptions,
};
use crate::plate::{natural_cmp, Plate};
use crate::{Error, Result};

mod plain;
use plain::PlainStack;

/// Where a series' frames are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frames {
    /// Every page of one multi-page TIFF is a frame.
    Stack(PathBuf),
    /// One image (file and page) per frame, in time order.
    Files(Vec<(PathBuf, usize)>),
}

/// The frames of one channel of one field over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSeries {
    pub plate: String,
    pub well: String,
    pub row: u32,
    pub col: u32,
    pub site: u32,
    pub channel: String,
    pub frames: Frames,
}

impl TimeSeries {
    /// The file that names the series in messages and whose metadata gives the interval.
    pub fn path(&self) -> &Path {
        match &self.frames {
            Frames::Stack(p) => p,
            Frames::Files(f) => f.first().map(|(p, _)| p.as_path()).unwrap_or(Path::new("")),
        }
    }
}

/// The time series of channel `channel` on `plate`, one per (plate, well, site), in plate order.
///
/// A field holding a single multi-page file is a stack (pages = frames), also when discovery
/// read its pages as channels `c1…cN` because the name carries no channel. Fields that differ
/// only in `T` are the frames of one series. Several Z planes are refused: a time-lapse is 2D.
pub fn series(plate: &Plate, channel: &str) -> Result<Vec<TimeSeries>> {
    type Key = (String, u32, u32, u32);
    let mut groups: BTreeMap<Key, Vec<&crate::Field>> = BTreeMap::new();
    for f in &plate.fields {
        groups
            .entry((f.plate.clone(), f.row, f.col, f.site))
            .or_default()
            .push(f);
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((plate_id, row, col, site), fields) in groups {
        let first = fields[0];
        if fields.iter().any(|f| f.z != first.z) {
            return Err(Error::Discover {
                path: plate.root.clone(),
                message: format!(
                    "well {} site {site} has several Z planes; a time-lapse is one plane per frame",
                    first.well
                ),
            });
        }
        let pick = |f: &crate::Field| -> Option<(PathBuf, usize, bool)> {
            let c = f
                .channels
                .iter()
                .find(|c| c.channel.eq_ignore_ascii_case(channel));
            let one_file = f.channels.iter().all(|c| c.path == f.channels[0].path);
            match c {
                Some(c) => Some((c.path.clone(), c.page, f.channels.len() > 1 && one_file)),
                // Pages of an unnamed stack were read as channels c1..cN.
                None if one_file && f.channels.len() > 1 => {
                    Some((f.channels[0].path.clone(), 0, true))
                }
                None => None,
            }
        };
        let frames = if fields.len() == 1 {
            let Some((path, page, pages_as_channels)) = pick(first) else {
                continue;
            };
            if pages_as_channels || page == 0 {
                Frames::Stack(path)
            } else {
                Frames::Files(vec![(path, page)])
            }
        } else {
            let mut timed: Vec<(u32, PathBuf, usize)> = Vec::with_capacity(fields.len());
            for f in &fields {
                if let Some((p, page, _)) = pick(f) {
                    timed.push((f.t.unwrap_or(0), p, page));
                }
            }
            if timed.is_empty() {
                continue;
            }
            timed.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| natural_cmp(&a.1.to_string_lossy(), &b.1.to_string_lossy()))
            });
            Frames::Files(timed.into_iter().map(|(_, p, k)| (p, k)).collect())
        };
        out.push(TimeSeries {
            plate: plate_id,
            well: first.well.clone(),
            row,
            col,
            site,
            channel: channel.to_string(),
            frames,
        });
    }
    if out.is_empty() {
        return Err(Error::Discover {
            path: plate.root.clone(),
            message: format!(
                "no field has channel {channel:?}; the plate has channels {}",
                plate.channels.join(", ")
            ),
        });
    }
    Ok(out)
}

/// Where a frame interval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalSource {
    /// ImageJ's `finterval` (or `fps`) in the TIFF ImageDescription.
    ImageJ,
    /// OME-XML `Pixels/@TimeIncrement`.
    Ome,
    /// Given by the user (`--fps`).
    User,
}

/// Seconds between frames and where that number came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameInterval {
    pub seconds: f64,
    pub source: IntervalSource,
}

/// The frame interval of `path` from its metadata, or `1 / fps` when `fps` is given (the
/// user's number wins). [`Error::NoFrameInterval`] when neither exists.
pub fn frame_interval(path: &Path, fps: Option<f64>) -> Result<FrameInterval> {
    if let Some(fps) = fps {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                message: format!("--fps must be a positive number, got {fps}"),
            });
        }
        return Ok(FrameInterval {
            seconds: 1.0 / fps,
            source: IntervalSource::User,
        });
    }
    let description = image_description(path)?;
    description
        .as_deref()
        .and_then(interval_from_description)
        .ok_or_else(|| Error::NoFrameInterval {
            path: path.to_path_buf(),
        })
}

/// The first page's ImageDescription, if the file is a TIFF and has one.
fn image_description(path: &Path) -> Result<Option<String>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::new(file);
    guarded(path, || {
        if sniff(&mut r, path)? != Container::Tiff {
            return Ok(None);
        }
        r.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
        let mut dec = open_tiff(r, path, ReadOptions::default().max_pixels)?;
        Ok(dec
            .find_tag(Tag::ImageDescription)
            .ok()
            .flatten()
            .and_then(|v| v.into_string().ok()))
    })
}

/// Seconds per `unit` for the time units ImageJ and OME write.
fn seconds_per(unit: &str) -> Option<f64> {
    Some(match unit.trim() {
        "s" | "sec" | "second" | "seconds" => 1.0,
        "ms" | "msec" => 1e-3,
        "µs" | "μs" | "us" => 1e-6,
        "ns" => 1e-9,
        "min" => 60.0,
        "h" | "hr" | "hour" => 3600.0,
        _ => return None,
    })
}

/// The frame interval an ImageJ or OME-XML description records.
pub fn interval_from_description(text: &str) -> Option<FrameInterval> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let positive = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
    if trimmed.starts_with("ImageJ=") {
        let mut finterval = None;
        let mut fps = None;
        let mut unit = 1.0;
        for line in trimmed.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "finterval" => finterval = v.trim().parse::<f64>().ok().and_then(positive),
                "fps" => fps = v.trim().parse::<f64>().ok().and_then(positive),
                "tunit" => unit = seconds_per(v.trim_matches('"')).unwrap_or(1.0),
                _ => {}
            }
        }
        let seconds = finterval.map(|f| f * unit).or(fps.map(|f| 1.0 / f))?;
        return Some(FrameInterval {
            seconds,
            source: IntervalSource::ImageJ,
        });
    }
    if trimmed.starts_with('<') && trimmed.contains("OME") {
        let doc = roxmltree::Document::parse(trimmed).ok()?;
        let pixels = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Pixels")?;
        let v: f64 = pixels.attribute("TimeIncrement")?.trim().parse().ok()?;
        let unit = seconds_per(pixels.attribute("TimeIncrementUnit").unwrap_or("s"))?;
        return Some(FrameInterval {
            seconds: positive(v * unit)?,
            source: IntervalSource::Ome,
        });
    }
    None
}

/// The pixels of one frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub enum FrameData<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    F32(&'a [f32]),
}

impl FrameData<'_> {
    pub fn sample_type(&self) -> SampleType {
        match self {
            FrameData::U8(_) => SampleType::U8,
            FrameData::U16(_) => SampleType::U16,
            FrameData::U32(_) => SampleType::U32,
            FrameData::F32(_) => SampleType::F32,
        }
    }
}

/// One decoded frame (row-major, `width * height` samples).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 0-based frame number.
    pub index: usize,
    pub width: usize,
    pub height: usize,
    pub data: FrameData<'a>,
}

enum Source {
    /// Uncompressed one-sample pages, read with positioned reads (see [`plain`]).
    Plain {
        stack: PlainStack,
        buf: DecodingResult,
    },
    Stack {
        dec: Box<TiffDecoder<BufReader<File>>>,
        buf: DecodingResult,
    },
    Files {
        files: Vec<(PathBuf, usize)>,
        current: Option<DynImage>,
    },
}

/// Decodes a [`TimeSeries`] one frame at a time into a reused buffer.
pub struct FrameReader {
    source: Source,
    path: PathBuf,
    frames: usize,
    next: usize,
    size: Option<(usize, usize)>,
    opts: ReadOptions,
}

impl FrameReader {
    /// Opens a series; reads only headers (the page count of a stack).
    pub fn open(series: &TimeSeries, opts: &ReadOptions) -> Result<FrameReader> {
        FrameReader::open_with(series, opts, true)
    }

    /// [`FrameReader::open`]; `plain = false` sends every stack through the `tiff` crate
    /// (the reference the plain reader is tested against).
    fn open_with(series: &TimeSeries, opts: &ReadOptions, plain: bool) -> Result<FrameReader> {
        let (source, path, frames) = match &series.frames {
            Frames::Stack(path) => {
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
                    return Err(Error::Empty { path: path.clone() });
                }
                let stack = plain
                    .then(|| file.try_clone().ok().and_then(PlainStack::open))
                    .flatten();
                if let Some(stack) = stack {
                    let frames = stack.len();
                    let source = Source::Plain {
                        stack,
                        buf: DecodingResult::U8(Vec::new()),
                    };
                    return Ok(FrameReader {
                        source,
                        path: path.clone(),
                        frames,
                        next: 0,
                        size: None,
                        opts: opts.clone(),
                    });
                }
                let mut r = BufReader::with_capacity(1 << 16, file);
                let (dec, frames) = guarded(path, || {
                    if sniff(&mut r, path)? != Container::Tiff {
                        return Err(Error::Unsupported {
                            path: path.clone(),
                            message: "a time-lapse stack must be a multi-page TIFF".into(),
                        });
                    }
                    let frames = count_tiff_pages(&mut r, path)?;
                    r.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
                    Ok((open_tiff(r, path, opts.max_pixels)?, frames))
                })?;
                (
                    Source::Stack {
                        dec: Box::new(dec),
                        buf: DecodingResult::U8(Vec::new()),
                    },
                    path.clone(),
                    frames,
                )
            }
            Frames::Files(files) => (
                Source::Files {
                    files: files.clone(),
                    current: None,
                },
                series.path().to_path_buf(),
                files.len(),
            ),
        };
        Ok(FrameReader {
            source,
            path,
            frames,
            next: 0,
            size: None,
            opts: opts.clone(),
        })
    }

    /// Number of frames in the series.
    pub fn len(&self) -> usize {
        self.frames
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The file named in errors (the stack, or the first frame's file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether [`FrameReader::seek`] is cheap: reading a frame again costs what reading it
    /// the first time did (uncompressed stacks, read with positioned reads; not compressed
    /// stacks, which would decode every page before it again, nor one file per frame).
    pub fn seeks_cheaply(&self) -> bool {
        matches!(self.source, Source::Plain { .. })
    }

    /// The index of the frame [`FrameReader::next_frame`] returns next.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Makes frame `index` the next one read (`index` ≤ the frame count). Stacks read by
    /// the general TIFF decoder only go forward: [`Error::Unsupported`] for them.
    pub fn seek(&mut self, index: usize) -> Result<()> {
        if matches!(self.source, Source::Stack { .. }) && index != self.next {
            return Err(Error::Unsupported {
                path: self.path.clone(),
                message: "this stack's pages can only be read forward".into(),
            });
        }
        self.next = index.min(self.frames);
        Ok(())
    }

    /// The next frame, `None` after the last. Every frame must have the first frame's size
    /// ([`Error::FrameSize`] otherwise).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>> {
        if self.next >= self.frames {
            return Ok(None);
        }
        let index = self.next;
        self.next += 1;
        let max_pixels = self.opts.max_pixels;
        let (w, h, file) = match &mut self.source {
            Source::Plain { stack, buf } => {
                let path = &self.path;
                let (w, h) = stack.dimensions(index);
                check_pixels(path, w as u64, h as u64, max_pixels)?;
                stack.read(index, buf).map_err(|e| Error::io(path, e))?;
                (w, h, path.clone())
            }
            Source::Stack { dec, buf } => {
                let path = &self.path;
                let (w, h) = guarded(path, || {
                    if index > 0 {
                        dec.next_image().map_err(|e| tiff_err(path, e))?;
                    }
                    let (w, h) = dec.dimensions().map_err(|e| tiff_err(path, e))?;
                    check_pixels(path, u64::from(w), u64::from(h), max_pixels)?;
                    tiff_sample(dec, path)?;
                    dec.read_image_to_buffer(buf)
                        .map_err(|e| tiff_err(path, e))?;
                    Ok((w as usize, h as usize))
                })?;
                (w, h, path.clone())
            }
            Source::Files { files, current } => {
                let (p, page) = &files[index];
                let img = read_image(p, *page, &self.opts)?;
                let (w, h) = (img.width(), img.height());
                *current = Some(img);
                (w, h, p.clone())
            }
        };
        match self.size {
            None => self.size = Some((w, h)),
            Some((ew, eh)) if (ew, eh) != (w, h) => {
                return Err(Error::FrameSize {
                    path: file,
                    frame: index,
                    width: w,
                    height: h,
                    expected_width: ew,
                    expected_height: eh,
                })
            }
            Some(_) => {}
        }
        let n = w * h;
        let short = |got: usize| Error::Decode {
            path: file.clone(),
            message: format!("frame {index}: decoder returned {got} samples for {w}x{h}"),
        };
        let data = match &self.source {
            Source::Stack { buf, .. } | Source::Plain { buf, .. } => match buf {
                DecodingResult::U8(v) if v.len() >= n => FrameData::U8(&v[..n]),
                DecodingResult::U16(v) if v.len() >= n => FrameData::U16(&v[..n]),
                DecodingResult::U32(v) if v.len() >= n => FrameData::U32(&v[..n]),
                DecodingResult::F32(v) if v.len() >= n => FrameData::F32(&v[..n]),
                DecodingResult::U8(v) => return Err(short(v.len())),
                DecodingResult::U16(v) => return Err(short(v.len())),
                DecodingResult::U32(v) => return Err(short(v.len())),
                DecodingResult::F32(v) => return Err(short(v.len())),
                other => {
                    return Err(Error::Unsupported {
                        path: file,
                        message: format!("frame {index} holds {} samples", result_name(other)),
                    })
                }
            },
            Source::Files { current, .. } => match current {
                Some(DynImage::U8(i)) => FrameData::U8(i.as_slice()),
                Some(DynImage::U16(i)) => FrameData::U16(i.as_slice()),
                Some(DynImage::U32(i)) => FrameData::U32(i.as_slice()),
                Some(DynImage::F32(i)) => FrameData::F32(i.as_slice()),
                None => return Err(short(0)),
            },
        };
        Ok(Some(Frame {
            index,
            width: w,
            height: h,
            data,
        }))
    }
}

/// Writes a 16-bit multi-page TIFF one frame at a time, with an ImageJ description that
/// records the frame interval (as ImageJ and `tifffile.imwrite(..., imagej=True)` do).
/// Written to a temporary name and renamed by [`StackWriter::finish`].
pub struct StackWriter {
    enc: TiffEncoder<BufWriter<File>>,
    path: PathBuf,
    tmp: PathBuf,
    width: usize,
    height: usize,
    description: Option<String>,
    /// Pixel bytes written so far.
    written: u64,
}

impl StackWriter {
    /// `frames` and `interval_s` go into the ImageJ description; `interval_s = None` writes
    /// no interval (a stack that needs `--fps`).
    pub fn create(
        path: &Path,
        width: usize,
        height: usize,
        frames: usize,
        interval_s: Option<f64>,
    ) -> Result<StackWriter> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let enc = TiffEncoder::new(BufWriter::new(file)).map_err(|e| Error::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut description = format!("ImageJ=1.11a\nimages={frames}\nframes={frames}\n");
        if let Some(dt) = interval_s {
            description.push_str(&format!("finterval={dt}\n"));
        }
        description.push_str("loop=false\n");
        Ok(StackWriter {
            enc,
            path: path.to_path_buf(),
            tmp,
            width,
            height,
            description: Some(description),
            written: 0,
        })
    }

    /// Appends one frame (`width * height` samples, row-major).
    pub fn write_frame(&mut self, data: &[u16]) -> Result<()> {
        let err = |e: tiff::TiffError| Error::Encode {
            path: self.path.clone(),
            message: e.to_string(),
        };
        if data.len() != self.width * self.height {
            return Err(Error::Encode {
                path: self.path.clone(),
                message: format!(
                    "frame has {} samples, expected {}x{}",
                    data.len(),
                    self.width,
                    self.height
                ),
            });
        }
        let mut image = self
            .enc
            .new_image::<colortype::Gray16>(self.width as u32, self.height as u32)
            .map_err(err)?;
        if let Some(d) = self.description.take() {
            image
                .encoder()
                .write_tag(Tag::ImageDescription, d.as_str())
                .map_err(err)?;
        }
        image.write_data(data).map_err(err)?;
        self.written += 2 * data.len() as u64;
        Ok(())
    }

    /// Flushes the file and moves it to its final name.
    pub fn finish(self) -> Result<()> {
        let StackWriter {
            enc,
            path,
            tmp,
            written,
            ..
        } = self;
        // The encoder gives no writer back: dropping it flushes the buffer, and the file's
        // length shows whether every frame reached the disk.
        drop(enc);
        let len = std::fs::metadata(&tmp)
            .map_err(|e| Error::io(&tmp, e))?
            .len();
        if len < written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Encode {
                path,
                message: format!("only {len} of at least {written} bytes were written"),
            });
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}
