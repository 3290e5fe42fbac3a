//! Image types shared by every ipscope crate.
//!
//! The split follows ndarray's owned / view / mutable-view pattern: algorithms take
//! [`ImageView`]s (or [`ImageViewMut`]s) so they work on whole images, crops and tiles
//! alike, and only the caller decides who owns the pixels.
//!
//! Coordinates inside the code are `(row, col)`; tables use CellProfiler's X (= column) and
//! Y (= row) names.

use std::fmt;
use std::sync::OnceLock;

pub mod memory;
pub mod scan;

/// Errors raised when building images from raw parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The buffer length does not match `width * height` (or the stride).
    #[error("buffer of {len} pixels does not fit a {width}x{height} image (stride {stride})")]
    BadBuffer {
        len: usize,
        width: usize,
        height: usize,
        stride: usize,
    },
    /// A crop or sub-view reaches outside the image.
    #[error(
        "region rows {row}..{row_end}, cols {col}..{col_end} is outside a {width}x{height} image"
    )]
    OutOfBounds {
        row: usize,
        row_end: usize,
        col: usize,
        col_end: usize,
        width: usize,
        height: usize,
    },
}

/// A pixel sample type ipscope reads natively.
///
/// `MAX` is the value CellProfiler divides by to report intensities on a 0..1 scale
/// (255 for u8, 65535 for u16, ...; 1.0 for floating-point images, which are reported as stored).
pub trait Pixel: Copy + Send + Sync + Default + PartialOrd + fmt::Debug + 'static {
    /// CellProfiler's scale divisor for this type.
    const MAX: f64;
    /// The sample type tag.
    const SAMPLE: SampleType;
    /// Lossless (for u8/u16/f32) widening to f64.
    fn to_f64(self) -> f64;
    /// Conversion to f32 (exact for u8/u16/f32).
    fn to_f32(self) -> f32;
    /// `view` itself when `Self` is u16, else `None`: for the paths that have a 16-bit form.
    fn as_u16(view: ImageView<'_, Self>) -> Option<ImageView<'_, u16>> {
        let _ = view;
        None
    }
}

macro_rules! impl_pixel {
    ($t:ty, $max:expr, $s:expr $(, $u16:item)?) => {
        impl Pixel for $t {
            const MAX: f64 = $max;
            const SAMPLE: SampleType = $s;
            $($u16)?
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
        }
    };
}
impl_pixel!(u8, 255.0, SampleType::U8);
impl_pixel!(
    u16,
    65535.0,
    SampleType::U16,
    fn as_u16(view: ImageView<'_, u16>) -> Option<ImageView<'_, u16>> {
        Some(view)
    }
);
impl_pixel!(u32, 4294967295.0, SampleType::U32);
impl_pixel!(f32, 1.0, SampleType::F32);

/// The sample types ipscope keeps without conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleType {
    U8,
    U16,
    U32,
    F32,
}

impl SampleType {
    /// Bits per sample as stored.
    pub fn bits(self) -> u32 {
        match self {
            SampleType::U8 => 8,
            SampleType::U16 => 16,
            SampleType::U32 | SampleType::F32 => 32,
        }
    }
    /// CellProfiler's scale divisor (see [`Pixel::MAX`]).
    pub fn scale(self) -> f64 {
        match self {
            SampleType::U8 => <u8 as Pixel>::MAX,
            SampleType::U16 => <u16 as Pixel>::MAX,
            SampleType::U32 => <u32 as Pixel>::MAX,
            SampleType::F32 => <f32 as Pixel>::MAX,
        }
    }
    /// Short name: `u8`, `u16`, `u32`, `f32`.
    pub fn name(self) -> &'static str {
        match self {
            SampleType::U8 => "u8",
            SampleType::U16 => "u16",
            SampleType::U32 => "u32",
            SampleType::F32 => "f32",
        }
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An owned, contiguous (stride = width) single-channel image.
#[derive(Clone, PartialEq)]
pub struct Image<T> {
    width: usize,
    height: usize,
    data: Vec<T>,
}

impl<T: fmt::Debug> fmt::Debug for Image<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// `n` copies of `value`, every one written.
///
/// `vec![0; n]` asks the allocator for zeroed memory, and for pages fresh from the system it
/// writes nothing: the first read of such a page maps the kernel's shared zero page, and the
/// first write then replaces it, a copy-on-write fault whose TLB flush interrupts every other
/// core running the process. Kernels read label and flag images before writing them, so with
/// several worker threads those faults cost a few per cent of a run. Writing the value
/// up front faults each page in once, writable. On memory the allocator reuses (most
/// allocations of a run) zeroed memory is written anyway, so this costs nothing more there.
pub fn filled_vec<T: Copy>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, value);
    v
}

impl<T: Copy> Image<T> {
    /// A `width x height` image filled with `value`.
    pub fn new(width: usize, height: usize, value: T) -> Self {
        Image {
            width,
            height,
            data: filled_vec(width * height, value),
        }
    }

    /// Wraps a row-major buffer of exactly `width * height` pixels.
    pub fn from_vec(width: usize, height: usize, data: Vec<T>) -> Result<Self, Error> {
        if width.checked_mul(height) != Some(data.len()) {
            return Err(Error::BadBuffer {
                len: data.len(),
                width,
                height,
                stride: width,
            });
        }
        Ok(Image {
            width,
            height,
            data,
        })
    }

    /// Builds an image by calling `f(row, col)` for every pixel.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> T) -> Self {
        let mut data = Vec::with_capacity(width * height);
        for r in 0..height {
            for c in 0..width {
                data.push(f(r, c));
            }
        }
        Image {
            width,
            height,
            data,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Row-major pixels.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
    #[inline]
    pub fn get(&self, row: usize, col: usize) -> T {
        self.data[row * self.width + col]
    }
    #[inline]
    pub fn set(&mut self, row: usize, col: usize, value: T) {
        self.data[row * self.width + col] = value;
    }
    pub fn row(&self, row: usize) -> &[T] {
        &self.data[row * self.width..(row + 1) * self.width]
    }
    pub fn row_mut(&mut self, row: usize) -> &mut [T] {
        &mut self.data[row * self.width..(row + 1) * self.width]
    }
    /// A borrowed view of the whole image.
    pub fn view(&self) -> ImageView<'_, T> {
        ImageView {
            width: self.width,
            height: self.height,
            stride: self.width,
            data: &self.data,
        }
    }
    /// A mutable view of the whole image.
    pub fn view_mut(&mut self) -> ImageViewMut<'_, T> {
        ImageViewMut {
            width: self.width,
            height: self.height,
            stride: self.width,
            data: &mut self.data,
        }
    }
    /// Applies `f` to every pixel, producing a new image.
    pub fn map<U: Copy>(&self, f: impl FnMut(T) -> U) -> Image<U> {
        Image {
            width: self.width,
            height: self.height,
            data: self.data.iter().copied().map(f).collect(),
        }
    }
}

/// A borrowed single-channel image region with a row stride.
#[derive(Clone, Copy)]
pub struct ImageView<'a, T> {
    width: usize,
    height: usize,
    stride: usize,
    data: &'a [T],
}

impl<T> fmt::Debug for ImageView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageView")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .finish_non_exhaustive()
    }
}

fn check_strided(len: usize, width: usize, height: usize, stride: usize) -> Result<(), Error> {
    let ok = stride >= width
        && (height == 0
            || (height - 1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(width))
                .is_some_and(|need| need <= len));
    if ok {
        Ok(())
    } else {
        Err(Error::BadBuffer {
            len,
            width,
            height,
            stride,
        })
    }
}

impl<'a, T: Copy> ImageView<'a, T> {
    /// A view over `data` with the given row stride (in pixels).
    pub fn from_slice(
        data: &'a [T],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Self, Error> {
        check_strided(data.len(), width, height, stride)?;
        Ok(ImageView {
            width,
            height,
            stride,
            data,
        })
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// Number of pixels in the view.
    pub fn len(&self) -> usize {
        self.width * self.height
    }
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
    #[inline]
    pub fn get(&self, row: usize, col: usize) -> T {
        self.data[row * self.stride + col]
    }
    #[inline]
    pub fn row(&self, row: usize) -> &'a [T] {
        let start = row * self.stride;
        &self.data[start..start + self.width]
    }
    /// Iterates over rows.
    pub fn rows(&self) -> impl Iterator<Item = &'a [T]> + '_ {
        (0..self.height).map(move |r| self.row(r))
    }
    /// The contiguous pixel slice when stride == width.
    pub fn as_contiguous(&self) -> Option<&'a [T]> {
        (self.stride == self.width).then(|| &self.data[..self.width * self.height])
    }
    /// A sub-view of `height x width` pixels starting at (`row`, `col`).
    pub fn crop(&self, row: usize, col: usize, height: usize, width: usize) -> Result<Self, Error> {
        if row + height > self.height || col + width > self.width {
            return Err(Error::OutOfBounds {
                row,
                row_end: row + height,
                col,
                col_end: col + width,
                width: self.width,
                height: self.height,
            });
        }
        let start = row * self.stride + col;
        let end = if height == 0 {
            start
        } else {
            start + (height - 1) * self.stride + width
        };
        Ok(ImageView {
            width,
            height,
            stride: self.stride,
            data: &self.data[start..end.max(start)],
        })
    }
    /// Copies the view into an owned, contiguous image.
    pub fn to_image(&self) -> Image<T> {
        let mut data = Vec::with_capacity(self.width * self.height);
        for r in self.rows() {
            data.extend_from_slice(r);
        }
        Image {
            width: self.width,
            height: self.height,
            data,
        }
    }
    /// Converts every pixel into a new owned image.
    pub fn map<U: Copy>(&self, mut f: impl FnMut(T) -> U) -> Image<U> {
        let mut data = Vec::with_capacity(self.width * self.height);
        for r in self.rows() {
            data.extend(r.iter().map(|&v| f(v)));
        }
        Image {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// A mutable single-channel image region with a row stride.
pub struct ImageViewMut<'a, T> {
    width: usize,
    height: usize,
    stride: usize,
    data: &'a mut [T],
}

impl<'a, T: Copy> ImageViewMut<'a, T> {
    /// A mutable view over `data` with the given row stride (in pixels).
    pub fn from_slice(
        data: &'a mut [T],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Self, Error> {
        check_strided(data.len(), width, height, stride)?;
        Ok(ImageViewMut {
            width,
            height,
            stride,
            data,
        })
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    #[inline]
    pub fn get(&self, row: usize, col: usize) -> T {
        self.data[row * self.stride + col]
    }
    #[inline]
    pub fn set(&mut self, row: usize, col: usize, value: T) {
        self.data[row * self.stride + col] = value;
    }
    pub fn row_mut(&mut self, row: usize) -> &mut [T] {
        let start = row * self.stride;
        &mut self.data[start..start + self.width]
    }
    /// A read-only view of the same pixels.
    pub fn as_view(&self) -> ImageView<'_, T> {
        ImageView {
            width: self.width,
            height: self.height,
            stride: self.stride,
            data: self.data,
        }
    }
    /// Sets every pixel to `value`.
    pub fn fill(&mut self, value: T) {
        for r in 0..self.height {
            self.row_mut(r).fill(value);
        }
    }
}

/// An image of any sample type ipscope reads, kept in its native type.
#[derive(Debug, Clone, PartialEq)]
pub enum DynImage {
    U8(Image<u8>),
    U16(Image<u16>),
    U32(Image<u32>),
    F32(Image<f32>),
}

/// Calls `$body` with `$img` bound to the typed image inside a [`DynImage`].
#[macro_export]
macro_rules! with_dyn_image {
    ($dyn:expr, $img:ident => $body:expr) => {
        match $dyn {
            $crate::DynImage::U8($img) => $body,
            $crate::DynImage::U16($img) => $body,
            $crate::DynImage::U32($img) => $body,
            $crate::DynImage::F32($img) => $body,
        }
    };
}

impl DynImage {
    pub fn width(&self) -> usize {
        with_dyn_image!(self, i => i.width())
    }
    pub fn height(&self) -> usize {
        with_dyn_image!(self, i => i.height())
    }
    pub fn sample_type(&self) -> SampleType {
        match self {
            DynImage::U8(_) => SampleType::U8,
            DynImage::U16(_) => SampleType::U16,
            DynImage::U32(_) => SampleType::U32,
            DynImage::F32(_) => SampleType::F32,
        }
    }
    /// A copy as f32 on the stored scale (no rescaling).
    pub fn to_f32(&self) -> Image<f32> {
        with_dyn_image!(self, i => i.map(|v| v.to_f32()))
    }
}

/// A label image: `u32` per pixel, 0 = background, objects numbered `1..=count`.
///
/// ipscope numbers objects in raster order of their first pixel, so `ObjectNumber` in tables
/// equals the label value and two runs on the same input give the same numbers.
#[derive(Debug, Clone)]
pub struct Labels {
    image: Image<u32>,
    count: u32,
    /// [`Labels::bounding_boxes`], made on first use: the labels never change once wrapped,
    /// and the segmentation's declumping and distance map and the measurements all read the
    /// boxes of the same labels.
    boxes: OnceLock<Vec<Option<BoundingBox>>>,
    /// [`Labels::areas`], made on first use (the intensity measurements of every channel
    /// read them).
    areas: OnceLock<Vec<u32>>,
}

/// A bounding box `(row0, col0, row1, col1)`, the ends exclusive.
pub type BoundingBox = (usize, usize, usize, usize);

/// Widens `b` (or starts it) to hold the run `start..end` of row `r`: how
/// [`Labels::bounding_boxes`] and labellings that write runs build the boxes.
#[inline]
pub fn grow_box(b: &mut Option<BoundingBox>, r: usize, start: usize, end: usize) {
    let b = b.get_or_insert((r, start, r + 1, end));
    b.0 = b.0.min(r);
    b.1 = b.1.min(start);
    b.2 = b.2.max(r + 1);
    b.3 = b.3.max(end);
}

/// Equal pixels and count (whether the boxes were made yet does not matter).
impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.image == other.image
    }
}

impl Labels {
    /// Wraps a label image whose largest label is `count`.
    ///
    /// The caller promises labels lie in `0..=count`; [`Labels::from_image`] computes it.
    pub fn new(image: Image<u32>, count: u32) -> Self {
        Labels {
            image,
            count,
            boxes: OnceLock::new(),
            areas: OnceLock::new(),
        }
    }
    /// Wraps a label image whose largest label is `count` with its boxes already known
    /// (what [`Labels::bounding_boxes`] would compute: index = label, `count + 1` entries),
    /// as a labelling that writes the objects run by run can record them without another
    /// pass over the image. Boxes of another length are ignored (made on first use).
    pub fn with_boxes(image: Image<u32>, count: u32, boxes: Vec<Option<BoundingBox>>) -> Self {
        let labels = Labels::new(image, count);
        if boxes.len() == count as usize + 1 {
            let _ = labels.boxes.set(boxes);
        }
        labels
    }
    /// Wraps a label image, taking `count` as its largest value.
    pub fn from_image(image: Image<u32>) -> Self {
        let count = image.as_slice().iter().copied().max().unwrap_or(0);
        Labels::new(image, count)
    }
    /// An all-background label image.
    pub fn empty(width: usize, height: usize) -> Self {
        Labels::new(Image::new(width, height, 0), 0)
    }
    /// The largest label (= number of objects when labels are sequential).
    pub fn count(&self) -> u32 {
        self.count
    }
    pub fn width(&self) -> usize {
        self.image.width()
    }
    pub fn height(&self) -> usize {
        self.image.height()
    }
    pub fn image(&self) -> &Image<u32> {
        &self.image
    }
    pub fn view(&self) -> ImageView<'_, u32> {
        self.image.view()
    }
    pub fn into_image(self) -> Image<u32> {
        self.image
    }
    /// Each label that has pixels with its box ([`Labels::bounding_boxes`]), in label order.
    pub fn object_boxes(&self) -> impl Iterator<Item = (u32, BoundingBox)> + '_ {
        self.bounding_boxes()
            .iter()
            .enumerate()
            .filter_map(|(l, b)| b.map(|b| (l as u32, b)))
    }
    /// The bounding box of each label `0..=count` (index = label; `None` for labels without
    /// pixels, and always for 0, the background), from one pass over the image on the first
    /// call; later calls return the same boxes.
    pub fn bounding_boxes(&self) -> &[Option<BoundingBox>] {
        self.boxes.get_or_init(|| {
            let n = self.count as usize;
            let mut boxes: Vec<Option<BoundingBox>> = vec![None; n + 1];
            for r in 0..self.height() {
                scan::for_each_nonzero_run(self.image.row(r), |start, end, l| {
                    if let Some(b) = boxes.get_mut(l as usize) {
                        grow_box(b, r, start, end);
                    }
                });
            }
            boxes
        })
    }
    /// The number of pixels of each label `0..=count` (index = label; 0 for the
    /// background), from one pass over the image on the first call; later calls return the
    /// same counts.
    pub fn areas(&self) -> &[u32] {
        self.areas.get_or_init(|| {
            let mut areas = vec![0u32; self.count as usize + 1];
            for r in 0..self.height() {
                scan::for_each_nonzero_run(self.image.row(r), |start, end, l| {
                    if let Some(a) = areas.get_mut(l as usize) {
                        *a += (end - start) as u32;
                    }
                });
            }
            areas
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 generator for the tests' random label images.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// The areas from the run scan against a count of each pixel (labels past `count`
    /// ignored), and the second call's are the first's.
    #[test]
    fn areas_equal_the_pixel_counts() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for (w, h, count) in [(1usize, 1usize, 1u32), (37, 23, 5), (100, 71, 40)] {
            let img = Image::from_fn(w, h, |_, _| (next() >> 32) as u32 % (count + 3));
            let labels = Labels::new(img.clone(), count);
            let mut want = vec![0u32; count as usize + 1];
            for &v in img.as_slice() {
                if v > 0 && v <= count {
                    want[v as usize] += 1;
                }
            }
            assert_eq!(labels.areas(), &want[..], "{w}x{h}");
            assert_eq!(labels.areas(), &want[..], "second call, {w}x{h}");
        }
    }

    /// The boxes from the run scan against each pixel's own min/max, on random label images
    /// (sparse to dense, labels past `count` ignored), and the second call's are the first's.
    #[test]
    fn bounding_boxes_equal_the_pixel_extremes() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for (w, h, density, count) in [
            (1, 1, 1, 1),
            (37, 23, 2, 5),
            (64, 9, 9, 3),
            (100, 71, 5, 40),
        ] {
            let img = Image::from_fn(w, h, |_, _| {
                if next() % 10 < density {
                    (next() % (u64::from(count) + 3)) as u32
                } else {
                    0
                }
            });
            let labels = Labels::new(img.clone(), count);
            let mut want: Vec<Option<BoundingBox>> = vec![None; count as usize + 1];
            for r in 0..h {
                for c in 0..w {
                    let l = img.row(r)[c] as usize;
                    if l == 0 || l > count as usize {
                        continue;
                    }
                    let b = want[l].get_or_insert((r, c, r + 1, c + 1));
                    *b = (b.0.min(r), b.1.min(c), b.2.max(r + 1), b.3.max(c + 1));
                }
            }
            assert_eq!(labels.bounding_boxes(), &want[..], "{w}x{h}");
            assert_eq!(labels.bounding_boxes(), &want[..], "{w}x{h}, second call");
            assert_eq!(labels.clone().bounding_boxes(), &want[..]);
            let present: Vec<(u32, BoundingBox)> = want
                .iter()
                .enumerate()
                .filter_map(|(l, b)| b.map(|b| (l as u32, b)))
                .collect();
            assert_eq!(labels.object_boxes().collect::<Vec<_>>(), present);
        }
    }

    #[test]
    fn views_and_crops_share_pixels() {
        let img = Image::from_fn(5, 4, |r, c| (r * 10 + c) as u16);
        let v = img.view();
        let crop = v.crop(1, 2, 2, 3).unwrap();
        assert_eq!(crop.row(0), &[12, 13, 14]);
        assert_eq!(crop.row(1), &[22, 23, 24]);
        assert_eq!(crop.to_image().as_slice(), &[12, 13, 14, 22, 23, 24]);
        assert!(v.crop(3, 0, 2, 1).is_err());
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(Image::from_vec(3, 2, vec![0u8; 5]).is_err());
        assert!(Image::from_vec(3, 2, vec![0u8; 6]).is_ok());
        assert!(ImageView::from_slice(&[0u8; 7], 3, 2, 4).is_ok());
        assert!(ImageView::from_slice(&[0u8; 6], 3, 2, 4).is_err());
    }

    #[test]
    fn labels_count_is_max_label() {
        let l = Labels::from_image(Image::from_vec(2, 2, vec![0, 3, 1, 0]).unwrap());
        assert_eq!(l.count(), 3);
    }
}
