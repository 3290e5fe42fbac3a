//! Uncompressed one-sample TIFF stacks, read with one positioned read per page.
//!
//! Most time-lapse stacks (ImageJ, `tifffile`, camera software) are uncompressed strips of
//! one grayscale sample. For those the general decoder's per-page work costs about as much
//! as the pixels: it re-reads each directory through a buffered reader whose refill after
//! every seek copies 64 kB from the page cache, then seeks back to the strip. [`PlainStack`]
//! walks the directory chain once, checks that every page is plain, and records where its
//! strips lie; a frame is then one read per run of contiguous strips straight into the
//! reused buffer (and a byte swap when the file's byte order is not the machine's).
//! Anything else (compression, tiles, several samples, WhiteIsZero, a predictor, an odd
//! sample format, a strip past the end of the file, a directory cycle) gives `None`, and
//! the series goes through the `tiff` crate as before, its errors included.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;

use ipscope_image::SampleType;
use tiff::decoder::DecodingResult;

/// One page: its size, sample type and the range of its runs in [`PlainStack::runs`].
#[derive(Debug)]
struct Page {
    width: usize,
    height: usize,
    sample: SampleType,
    runs: Range<usize>,
}

/// The strips of every page of a plain stack.
#[derive(Debug)]
pub(super) struct PlainStack {
    file: File,
    /// The file's byte order is not the machine's.
    swap: bool,
    pages: Vec<Page>,
    /// (file offset, bytes) of runs of contiguous strips, in page and row order.
    runs: Vec<(u64, usize)>,
}

/// Reads `buf.len()` bytes at `offset` without moving a shared file position.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Reads directories of one file (classic or BigTIFF, either byte order).
struct Walker<'a> {
    file: &'a File,
    len: u64,
    le: bool,
    big: bool,
}

impl Walker<'_> {
    fn uint(&self, b: &[u8]) -> u64 {
        if self.le {
            b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x))
        } else {
            b.iter().fold(0, |v, &x| (v << 8) | u64::from(x))
        }
    }

    fn bytes(&self, offset: u64, n: usize) -> Option<Vec<u8>> {
        if offset.checked_add(n as u64)? > self.len {
            return None;
        }
        let mut v = vec![0u8; n];
        read_at(self.file, &mut v, offset).ok()?;
        Some(v)
    }

    /// The values of one entry (integer types only), reading them from the file when they
    /// do not fit the entry.
    fn values(&self, entry: &[u8]) -> Option<Vec<u64>> {
        let size = match self.uint(&entry[2..4]) {
            1 => 1,
            3 => 2,
            4 | 13 => 4,
            16 | 18 => 8,
            _ => return None,
        };
        let (count, field) = if self.big {
            (self.uint(&entry[4..12]), &entry[12..20])
        } else {
            (self.uint(&entry[4..8]), &entry[8..12])
        };
        // Strip tables of real stacks hold at most a few thousand entries per page.
        if count == 0 || count > 1 << 20 {
            return None;
        }
        let total = count as usize * size;
        let owned;
        let data = if total <= field.len() {
            &field[..total]
        } else {
            owned = self.bytes(self.uint(field), total)?;
            &owned[..]
        };
        Some(data.chunks_exact(size).map(|c| self.uint(c)).collect())
    }

    /// The page at `offset` (its strips appended to `runs`) and the next directory's offset.
    fn page(&self, offset: u64, runs: &mut Vec<(u64, usize)>) -> Option<(Page, u64)> {
        let (head, entry_size, next_size) = if self.big { (8, 20, 8) } else { (2, 12, 4) };
        let window = self.len.checked_sub(offset)?.min(512) as usize;
        let mut ifd = self.bytes(offset, window)?;
        let count = self.uint(ifd.get(..head)?) as usize;
        let need = count
            .checked_mul(entry_size)?
            .checked_add(head + next_size)?;
        if need > ifd.len() {
            ifd = self.bytes(offset, need)?;
        }
        let (mut width, mut height, mut bits, mut format) = (None, None, None, vec![1]);
        let (mut compression, mut photometric, mut samples) = (1, None, 1);
        let (mut rows_per_strip, mut offsets, mut counts) = (None, None, None);
        for e in ifd[head..head + count * entry_size].chunks_exact(entry_size) {
            let tag = self.uint(&e[..2]);
            let one = || self.values(e).and_then(|v| (v.len() == 1).then(|| v[0]));
            match tag {
                256 => width = Some(one()?),
                257 => height = Some(one()?),
                258 => bits = Some(one()?),
                259 => compression = one()?,
                262 => photometric = Some(one()?),
                273 => offsets = Some(self.values(e)?),
                277 => samples = one()?,
                278 => rows_per_strip = Some(one()?),
                279 => counts = Some(self.values(e)?),
                284 | 317 if one()? != 1 => return None,
                339 => format = self.values(e)?,
                // Tiles, colour maps, extra samples: not a plain page.
                320 | 322..=325 | 338 => return None,
                _ => {}
            }
        }
        if compression != 1 || photometric != Some(1) || samples != 1 {
            return None;
        }
        let sample = match (format.as_slice(), bits?) {
            ([1], 8) => SampleType::U8,
            ([1], 16) => SampleType::U16,
            ([1], 32) => SampleType::U32,
            ([3], 32) => SampleType::F32,
            _ => return None,
        };
        let bytes_per = match sample {
            SampleType::U8 => 1,
            SampleType::U16 => 2,
            _ => 4,
        };
        let (width, height) = (
            usize::try_from(width?).ok()?,
            usize::try_from(height?).ok()?,
        );
        if width == 0 || height == 0 {
            return None;
        }
        let rps = usize::try_from(rows_per_strip.unwrap_or(height as u64))
            .unwrap_or(usize::MAX)
            .clamp(1, height);
        let (offsets, counts) = (offsets?, counts?);
        if offsets.len() != height.div_ceil(rps) || counts.len() != offsets.len() {
            return None;
        }
        let start = runs.len();
        for (i, (&off, &len)) in offsets.iter().zip(&counts).enumerate() {
            let rows = rps.min(height - i * rps);
            let want = rows.checked_mul(width)?.checked_mul(bytes_per)?;
            if len != want as u64 || off.checked_add(len)? > self.len {
                return None;
            }
            let this_page = runs.len() > start;
            match runs.last_mut() {
                Some((o, l)) if this_page && *o + *l as u64 == off => *l += want,
                _ => runs.push((off, want)),
            }
        }
        let next_at = head + count * entry_size;
        let next = self.uint(&ifd[next_at..next_at + next_size]);
        let page = Page {
            width,
            height,
            sample,
            runs: start..runs.len(),
        };
        Some((page, next))
    }
}

impl PlainStack {
    /// The stack's pages when every one is plain (see the module docs), else `None`.
    pub(super) fn open(file: File) -> Option<PlainStack> {
        // Generous, as `count_tiff_pages`: real stacks have thousands of pages.
        const MAX_PAGES: usize = 1 << 20;
        let len = file.metadata().ok()?.len();
        let mut head = [0u8; 16];
        let n = (len.min(16)) as usize;
        read_at(&file, &mut head[..n], 0).ok()?;
        let le = match &head[..2] {
            b"II" => true,
            b"MM" => false,
            _ => return None,
        };
        let mut w = Walker {
            file: &file,
            len,
            le,
            big: false,
        };
        let mut offset = match w.uint(&head[2..4]) {
            42 => w.uint(&head[4..8]),
            43 if w.uint(&head[4..6]) == 8 && n == 16 => {
                w.big = true;
                w.uint(&head[8..16])
            }
            _ => return None,
        };
        let (mut pages, mut runs, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
        while offset != 0 {
            if pages.len() >= MAX_PAGES || !seen.insert(offset) {
                return None;
            }
            let (page, next) = w.page(offset, &mut runs)?;
            pages.push(page);
            offset = next;
        }
        if pages.is_empty() {
            return None;
        }
        let swap = le != cfg!(target_endian = "little");
        Some(PlainStack {
            file,
            swap,
            pages,
            runs,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Width and height of page `index`.
    pub(super) fn dimensions(&self, index: usize) -> (usize, usize) {
        self.pages
            .get(index)
            .map(|p| (p.width, p.height))
            .unwrap_or((0, 0))
    }

    /// Reads page `index` into `buf` (made the page's sample type and size, its memory
    /// reused).
    pub(super) fn read(&self, index: usize, buf: &mut DecodingResult) -> std::io::Result<()> {
        let Some(p) = self.pages.get(index) else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let n = p.width * p.height;
        match (p.sample, &mut *buf) {
            (SampleType::U8, DecodingResult::U8(v)) => v.resize(n, 0),
            (SampleType::U16, DecodingResult::U16(v)) => v.resize(n, 0),
            (SampleType::U32, DecodingResult::U32(v)) => v.resize(n, 0),
            (SampleType::F32, DecodingResult::F32(v)) => v.resize(n, 0.0),
            (SampleType::U8, b) => *b = DecodingResult::U8(vec![0; n]),
            (SampleType::U16, b) => *b = DecodingResult::U16(vec![0; n]),
            (SampleType::U32, b) => *b = DecodingResult::U32(vec![0; n]),
            (_, b) => *b = DecodingResult::F32(vec![0.0; n]),
        }
        let mut target = buf.as_buffer(0);
        let bytes = target.as_bytes_mut();
        let mut at = 0;
        for &(offset, len) in &self.runs[p.runs.clone()] {
            read_at(&self.file, &mut bytes[at..at + len], offset)?;
            at += len;
        }
        if self.swap {
            match buf {
                DecodingResult::U16(v) => v.iter_mut().for_each(|x| *x = x.swap_bytes()),
                DecodingResult::U32(v) => v.iter_mut().for_each(|x| *x = x.swap_bytes()),
                DecodingResult::F32(v) => v
                    .iter_mut()
                    .for_each(|x| *x = f32::from_bits(x.to_bits().swap_bytes())),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timelapse::{FrameData, FrameReader, Frames, TimeSeries};
    use crate::ReadOptions;
    use std::io::Write;
    use std::path::Path;
    use tiff::encoder::{colortype, Compression, TiffEncoder, TiffKind};

    fn series(path: &Path) -> TimeSeries {
        TimeSeries {
            plate: "P".into(),
            well: "A01".into(),
            row: 1,
            col: 1,
            site: 1,
            channel: "w1".into(),
            frames: Frames::Stack(path.to_path_buf()),
        }
    }

    /// Every frame as f64 (with its sample type), read with or without the plain reader.
    fn frames(path: &Path, plain: bool) -> Vec<(SampleType, usize, usize, Vec<f64>)> {
        let mut r =
            FrameReader::open_with(&series(path), &ReadOptions::default(), plain).expect("open");
        assert_eq!(
            matches!(r.source, crate::timelapse::Source::Plain { .. }),
            plain
        );
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().expect("frame") {
            let v: Vec<f64> = match f.data {
                FrameData::U8(d) => d.iter().map(|&x| f64::from(x)).collect(),
                FrameData::U16(d) => d.iter().map(|&x| f64::from(x)).collect(),
                FrameData::U32(d) => d.iter().map(|&x| f64::from(x)).collect(),
                FrameData::F32(d) => d.iter().map(|&x| f64::from(x)).collect(),
            };
            out.push((f.data.sample_type(), f.width, f.height, v));
        }
        out
    }

    /// A 3-page stack of `C` (13 × 7, `rows` rows per strip), pixel values from `value`.
    fn write<C: colortype::ColorType, K: TiffKind>(
        enc: &mut TiffEncoder<std::fs::File, K>,
        rows: u32,
        value: impl Fn(usize) -> C::Inner,
    ) where
        [C::Inner]: tiff::encoder::TiffValue,
    {
        for page in 0..3 {
            let data: Vec<C::Inner> = (0..13 * 7).map(|i| value(page * 1000 + i)).collect();
            let mut img = enc.new_image::<C>(13, 7).expect("image");
            img.rows_per_strip(rows).expect("rows per strip");
            img.write_data(&data).expect("write");
        }
    }

    #[test]
    fn plain_pages_equal_the_tiff_crate_for_every_sample_type_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, want_plain: bool| {
            let path = dir.path().join(name);
            let got = frames(&path, want_plain);
            let reference = frames(&path, false);
            assert_eq!(got.len(), 3, "{name}");
            assert_eq!(got, reference, "{name}");
            let plain = PlainStack::open(std::fs::File::open(&path).unwrap()).is_some();
            assert_eq!(plain, want_plain, "{name}");
        };
        let create = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        // Several strips per page (7 rows, 3 per strip: the last strip is short).
        let mut e = TiffEncoder::new(create("u8.tif")).unwrap();
        write::<colortype::Gray8, _>(&mut e, 3, |i| (i * 7 % 251) as u8);
        drop(e);
        check("u8.tif", true);
        let mut e = TiffEncoder::new(create("u16.tif")).unwrap();
        write::<colortype::Gray16, _>(&mut e, 2, |i| (i * 977 % 65521) as u16);
        drop(e);
        check("u16.tif", true);
        let mut e = TiffEncoder::new(create("u32.tif")).unwrap();
        write::<colortype::Gray32, _>(&mut e, 7, |i| (i as u32).wrapping_mul(2_654_435_761));
        drop(e);
        check("u32.tif", true);
        let mut e = TiffEncoder::new(create("f32.tif")).unwrap();
        write::<colortype::Gray32Float, _>(&mut e, 4, |i| i as f32 * -0.37);
        drop(e);
        check("f32.tif", true);
        let mut e = TiffEncoder::new_big(create("big.tif")).unwrap();
        write::<colortype::Gray16, _>(&mut e, 3, |i| (i * 31) as u16);
        drop(e);
        check("big.tif", true);
        // Compressed pages are not plain: the tiff crate reads them.
        let mut e = TiffEncoder::new(create("packbits.tif"))
            .unwrap()
            .with_compression(Compression::Packbits);
        write::<colortype::Gray16, _>(&mut e, 3, |i| (i / 5) as u16);
        drop(e);
        check("packbits.tif", false);
    }

    /// A big-endian (`MM`) stack of two 3 × 2 16-bit pages, one strip per row, written by
    /// hand (the `tiff` encoder writes the machine's byte order only).
    fn big_endian_stack(truncate: bool) -> Vec<u8> {
        let mut f = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        let entry = |f: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32| {
            f.extend(tag.to_be_bytes());
            f.extend(typ.to_be_bytes());
            f.extend(count.to_be_bytes());
            if typ == 3 && count == 1 {
                f.extend((value as u16).to_be_bytes());
                f.extend([0, 0]);
            } else {
                f.extend(value.to_be_bytes());
            }
        };
        // Page p at offset 8 + p·ifd_len: IFD (2 + 10·12 + 4 bytes), two strip offsets,
        // two byte counts, then the pixels.
        let ifd_len = 2 + 10 * 12 + 4;
        let page_len = ifd_len + 8 + 8 + 12;
        for p in 0..2u32 {
            let start = 8 + p * page_len;
            let tables = start + ifd_len;
            let pixels = tables + 16;
            f.extend(10u16.to_be_bytes());
            entry(&mut f, 256, 3, 1, 3);
            entry(&mut f, 257, 3, 1, 2);
            entry(&mut f, 258, 3, 1, 16);
            entry(&mut f, 259, 3, 1, 1);
            entry(&mut f, 262, 3, 1, 1);
            entry(&mut f, 273, 4, 2, tables);
            entry(&mut f, 277, 3, 1, 1);
            entry(&mut f, 278, 3, 1, 1);
            entry(&mut f, 279, 4, 2, tables + 8);
            entry(&mut f, 339, 3, 1, 1);
            let next = if p == 0 { start + page_len } else { 0 };
            f.extend(next.to_be_bytes());
            f.extend(pixels.to_be_bytes());
            f.extend((pixels + 6).to_be_bytes());
            f.extend(6u32.to_be_bytes());
            f.extend(6u32.to_be_bytes());
            for i in 0..6u16 {
                f.extend((1000 * p as u16 + 300 * i + 1).to_be_bytes());
            }
        }
        if truncate {
            f.truncate(f.len() - 3);
        }
        f
    }

    #[test]
    fn big_endian_pages_are_swapped_and_a_truncated_stack_is_left_to_the_tiff_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mm.tif");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&big_endian_stack(false))
            .unwrap();
        let got = frames(&path, true);
        assert_eq!(got, frames(&path, false));
        assert_eq!(
            got[1].3,
            vec![1001.0, 1301.0, 1601.0, 1901.0, 2201.0, 2501.0]
        );
        let cut = dir.path().join("cut.tif");
        std::fs::File::create(&cut)
            .unwrap()
            .write_all(&big_endian_stack(true))
            .unwrap();
        assert!(PlainStack::open(std::fs::File::open(&cut).unwrap()).is_none());
        // The general reader names the file when the last strip is missing.
        let mut r = FrameReader::open(&series(&cut), &ReadOptions::default()).unwrap();
        let first = r.next_frame().map(|f| f.is_some());
        let err = first.and_then(|_| r.next_frame().map(|f| f.is_some()));
        let msg = err.expect_err("a truncated page").to_string();
        assert!(msg.contains("cut.tif"), "{msg}");
    }

    #[test]
    fn plain_stacks_seek_back_and_read_the_same_frames_and_compressed_ones_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.tif");
        let mut e = TiffEncoder::new(std::fs::File::create(&plain).unwrap()).unwrap();
        write::<colortype::Gray16, _>(&mut e, 3, |i| (i * 13 % 4093) as u16);
        drop(e);
        let want = frames(&plain, true);
        let mut r = FrameReader::open(&series(&plain), &ReadOptions::default()).unwrap();
        assert!(r.seeks_cheaply());
        let read = |r: &mut FrameReader| match r.next_frame().unwrap().map(|f| f.data) {
            Some(FrameData::U16(d)) => d.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(read(&mut r), want[0].3);
        assert_eq!(read(&mut r), want[1].3);
        assert_eq!(r.position(), 2);
        r.seek(0).unwrap();
        assert_eq!(read(&mut r), want[0].3);
        r.seek(2).unwrap();
        assert_eq!(read(&mut r), want[2].3);
        assert!(r.next_frame().unwrap().is_none());
        let packed = dir.path().join("packbits.tif");
        let mut e = TiffEncoder::new(std::fs::File::create(&packed).unwrap())
            .unwrap()
            .with_compression(Compression::Packbits);
        write::<colortype::Gray16, _>(&mut e, 3, |i| (i / 5) as u16);
        drop(e);
        let mut r = FrameReader::open(&series(&packed), &ReadOptions::default()).unwrap();
        assert!(!r.seeks_cheaply());
        r.next_frame().unwrap();
        let msg = r.seek(0).expect_err("forward only").to_string();
        assert!(
            msg.contains("packbits.tif") && msg.contains("forward"),
            "{msg}"
        );
    }
}
