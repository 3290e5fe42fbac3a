//! The GPU versions of core's hot operations, one method per kernel.
//!
//! Each returns what its CPU reference in `ipscope_core::ops` returns; the parity tests in
//! `tests/parity.rs` hold them to it (exact, except the Gaussian's stated f32 tolerance).

use ipscope_core::backend::FieldView;
use ipscope_core::ops::filter::{gaussian_kernel, unit_scale_u16, GAUSSIAN_TRUNCATE};
use ipscope_core::ops::label::{clear_border, Connectivity};
use ipscope_core::ops::measure::ObjectShape;
use ipscope_core::ops::threshold::Histogram;
use ipscope_image::{Image, ImageView, Labels};

use crate::device::{groups_1d, groups_2d, Gpu};
use crate::kernels::{EDT, GAUSSIAN, HISTOGRAM, HOLES, LABEL, MEASURE, MORPHOLOGY, UNPACK};
use crate::Error;

/// Dispatches of an iterated kernel between two convergence checks.
pub(crate) const BATCH: usize = 16;

/// The pixels of `view` in raster order: where they lie when the view is contiguous, else
/// copied into `buf`.
pub(crate) fn pixels<'a, T: Copy>(view: ImageView<'a, T>, buf: &'a mut Vec<T>) -> &'a [T] {
    match view.as_contiguous() {
        Some(d) => d,
        None => {
            buf.extend(view.rows().flatten().copied());
            buf
        }
    }
}

/// New numbers `1..=N` in raster order of first pixel: `objects` holds each kept object's
/// (first pixel's raster index, key), the result (of length `len`) the number at each key,
/// 0 at the others.
pub(crate) fn raster_numbers(mut objects: Vec<(u32, u32)>, len: usize) -> Vec<u32> {
    objects.sort_unstable();
    let mut number = vec![0u32; len];
    for (k, &(_, key)) in objects.iter().enumerate() {
        number[key as usize] = k as u32 + 1;
    }
    number
}

/// The Gaussian's taps for `sigma` (`gaussian_kernel`, truncated as the CPU's), as f32; one
/// tap: no smoothing.
pub(crate) fn gaussian_weights(sigma: f32) -> Vec<f32> {
    gaussian_kernel(f64::from(sigma), GAUSSIAN_TRUNCATE)
        .iter()
        .map(|&k| k as f32)
        .collect()
}

/// The first readback of [`Gpu::submit_and_read`]'s results.
pub(crate) fn first_result(out: Vec<Vec<u32>>) -> Vec<u32> {
    out.into_iter().next().unwrap_or_default()
}

/// f32 results from the words they came back as (in place).
pub(crate) fn floats(words: Vec<u32>) -> Vec<f32> {
    words.into_iter().map(f32::from_bits).collect()
}

/// A mask for a kernel: on the host (uploaded packed), or a buffer already on the device
/// (one u32 per pixel, 0 or 1).
#[derive(Clone, Copy)]
pub(crate) enum MaskSource<'a> {
    Host(ImageView<'a, bool>),
    Device(&'a wgpu::Buffer),
}

impl Gpu {
    /// The buffer of `src`, uploading it when it is on the host, its expansion recorded
    /// into `enc` (call inside `scoped`).
    fn mask_buffer<'a>(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: MaskSource<'a>,
        owned: &'a mut Option<wgpu::Buffer>,
    ) -> &'a wgpu::Buffer {
        match src {
            MaskSource::Device(b) => b,
            MaskSource::Host(mask) => owned.insert(self.encode_mask_upload(enc, mask)),
        }
    }

    /// Uploads `mask` packed 32 pixels to a word ([`packed_mask`]: 1/32 of one u32 per
    /// pixel) and records its expansion to one u32 per pixel (`morphology.wgsl` `unpack`)
    /// into `enc`; the expanded buffer (call inside `scoped`).
    pub(crate) fn encode_mask_upload(
        &self,
        enc: &mut wgpu::CommandEncoder,
        mask: ImageView<bool>,
    ) -> wgpu::Buffer {
        let (w, h) = (mask.width(), mask.height());
        let packed = self.storage(&packed_mask(mask));
        let dst = self.zeroed(w * h);
        let params = self.uniform([w as u32, h as u32, 0, 0]);
        let g = self.bind(&MORPHOLOGY, &[&params, &packed, &dst]);
        self.dispatch(enc, &MORPHOLOGY, "unpack", &g, groups_2d(w, h));
        dst
    }
}

/// A mask packed 32 pixels to a word: bit b of word k is pixel 32k + b in raster order (the
/// layout of `morphology.wgsl`'s `pack` and `unpack`); at least one word.
pub(crate) fn packed_mask(mask: ImageView<bool>) -> Vec<u32> {
    let n = mask.width() * mask.height();
    let mut out = vec![0u32; n.div_ceil(32).max(1)];
    let mut i = 0;
    for row in mask.rows() {
        for &b in row {
            out[i / 32] |= u32::from(b) << (i % 32);
            i += 1;
        }
    }
    out
}

pub(crate) fn mask_words(mask: ImageView<bool>) -> Vec<u32> {
    mask.rows()
        .flat_map(|r| r.iter().map(|&b| u32::from(b)))
        .collect()
}

impl Gpu {
    /// `ipscope_core::ops::filter::gaussian_blur` on the GPU.
    ///
    /// Sums in f32 where the CPU sums in f64: the result differs from the CPU's by at most
    /// `GAUSSIAN_TOLERANCE × max |pixel|` (see `tests/parity.rs`). Images larger than one
    /// storage binding are processed in bands of rows with a halo of the kernel radius, so
    /// the result is the same as one pass over the whole image.
    pub fn gaussian_blur(&self, src: ImageView<f32>, sigma: f32) -> Result<Image<f32>, Error> {
        const K: &str = "gaussian";
        let (w, h) = (src.width(), src.height());
        let weights = gaussian_weights(sigma);
        if weights.len() == 1 || src.is_empty() {
            return Ok(src.to_image());
        }
        let r = weights.len() / 2;
        // Rows per band: the band plus its two halos must fit one binding.
        let max_rows = (self.max_binding / 4 / w as u64) as usize;
        if max_rows < 2 * r + 1 {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "one band of {} rows needs {} bytes, the device binds at most {}",
                    2 * r + 1,
                    (2 * r + 1) * w * 4,
                    self.max_binding
                ),
            ));
        }
        let band = (max_rows - 2 * r).min(h);
        self.in_bands(K, src, band, r, |data, rows| {
            self.gaussian_tile(data, w, rows, r, &weights)
        })
    }

    /// A per-pixel filter of `src` whose result at a pixel depends on the rows within
    /// `halo` of it, run by `tile(pixels, rows)` on bands of `band` rows with their halos
    /// (one tile, read where it lies when the view is contiguous, when `band` covers the
    /// image), each band's own rows kept: the result of one pass over the whole image.
    pub(crate) fn in_bands(
        &self,
        kernel: &'static str,
        src: ImageView<f32>,
        band: usize,
        halo: usize,
        mut tile: impl FnMut(&[f32], usize) -> Result<Vec<f32>, Error>,
    ) -> Result<Image<f32>, Error> {
        let (w, h) = (src.width(), src.height());
        if band >= h {
            let mut copied = Vec::new();
            let res = tile(pixels(src, &mut copied), h)?;
            return Image::from_vec(w, h, res).map_err(|e| self.device_error(kernel, e));
        }
        let mut out = Image::new(w, h, 0.0f32);
        let mut y0 = 0;
        while y0 < h {
            let y1 = (y0 + band.max(1)).min(h);
            let (a, b) = (y0.saturating_sub(halo), (y1 + halo).min(h));
            let part = src
                .crop(a, 0, b - a, w)
                .map_err(|e| self.device_error(kernel, e))?;
            let data: Vec<f32> = part.rows().flat_map(|row| row.iter().copied()).collect();
            let res = tile(&data, b - a)?;
            for y in y0..y1 {
                let off = (y - a) * w;
                out.row_mut(y).copy_from_slice(&res[off..off + w]);
            }
            y0 = y1;
        }
        Ok(out)
    }

    /// `ipscope_core::ops::filter::gaussian_blur_unit_u16` on the GPU: the 16-bit field goes
    /// up as it is stored (2 bytes a pixel), is scaled onto 0..=1 on the device by a table of
    /// the host's `unit_scale_u16` (`unpack.wgsl`: the same f32 bits), and is blurred as
    /// [`Gpu::gaussian_blur`] blurs it: the same result as that of the scaled image, for half
    /// the upload. A field beyond one binding is scaled on the host and blurred in bands.
    pub fn gaussian_blur_unit_u16(
        &self,
        src: ImageView<u16>,
        sigma: f32,
    ) -> Result<Image<f32>, Error> {
        const K: &str = "unpack";
        let (w, h) = (src.width(), src.height());
        let weights = gaussian_weights(sigma);
        if weights.len() == 1 || src.is_empty() || (w * h) as u64 * 4 > self.max_binding {
            return self.gaussian_blur(src.map(unit_scale_u16).view(), sigma);
        }
        let res = self.scoped(K, || {
            let mut enc = self.encoder();
            let unit = self.encode_unit_u16(&mut enc, src);
            let (dst, _) = self.encode_gaussian(&mut enc, &unit, w, h, weights.len() / 2, &weights);
            let out = self.submit_and_read(enc, &[(&dst, w * h)])?;
            Ok(floats(first_result(out)))
        })?;
        Image::from_vec(w, h, res).map_err(|e| self.device_error(K, e))
    }

    /// Uploads the 16-bit pixels of `src` as they are stored (two to a word) and records
    /// their scaling onto 0..=1 (`unpack.wgsl`) into `enc`; the f32 image's buffer (call
    /// inside `scoped`, with `src` within one binding at 4 bytes a pixel).
    pub(crate) fn encode_unit_u16(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: ImageView<u16>,
    ) -> wgpu::Buffer {
        let (w, h) = (src.width(), src.height());
        let mut copied = Vec::new();
        let mut px = pixels(src, &mut copied);
        // Whole words: an odd count of pixels gets one pad pixel.
        let padded: Vec<u16>;
        if px.len() % 2 == 1 {
            padded = px.iter().copied().chain([0]).collect();
            px = &padded;
        }
        let packed = self.storage(px);
        let unit = self.zeroed(w * h);
        let params = self.uniform([w as u32, h as u32, 0, 0]);
        let g = self.bind(&UNPACK, &[&params, &packed, &unit, self.unit_lut()]);
        self.dispatch(enc, &UNPACK, "unit_u16", &g, groups_2d(w, h));
        unit
    }

    /// Uploads `field` as f32 pixels, or as 16-bit samples scaled on the device
    /// ([`Gpu::encode_unit_u16`]); the f32 image's buffer (call inside `scoped`, with the
    /// field within one binding at 4 bytes a pixel).
    pub(crate) fn encode_field(
        &self,
        enc: &mut wgpu::CommandEncoder,
        field: FieldView,
    ) -> wgpu::Buffer {
        match field {
            FieldView::F32(img) => self.storage(pixels(img, &mut Vec::new())),
            FieldView::UnitU16(img) => self.encode_unit_u16(enc, img),
        }
    }

    fn gaussian_tile(
        &self,
        data: &[f32],
        w: usize,
        h: usize,
        r: usize,
        weights: &[f32],
    ) -> Result<Vec<f32>, Error> {
        self.scoped("gaussian", || {
            let src = self.storage(data);
            let mut enc = self.encoder();
            let (dst, _) = self.encode_gaussian(&mut enc, &src, w, h, r, weights);
            let out = self.submit_and_read(enc, &[(&dst, w * h)])?;
            Ok(floats(first_result(out)))
        })
    }

    /// Records the separable Gaussian of the `w × h` f32 image in `src` (radius `r`, taps
    /// `weights`) into `enc` (call inside `scoped`); the result's buffer, and the image
    /// between the two passes, free for later work recorded into the same encoder.
    pub(crate) fn encode_gaussian(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        w: usize,
        h: usize,
        r: usize,
        weights: &[f32],
    ) -> (wgpu::Buffer, wgpu::Buffer) {
        let params = self.uniform([w as u32, h as u32, r as u32, 0]);
        let tmp = self.zeroed(w * h);
        let dst = self.zeroed(w * h);
        let wb = self.storage(weights);
        let g1 = self.bind(&GAUSSIAN, &[&params, src, &tmp, &wb]);
        let g2 = self.bind(&GAUSSIAN, &[&params, &tmp, &dst, &wb]);
        self.dispatch(enc, &GAUSSIAN, "columns", &g1, groups_2d(w, h));
        self.dispatch(enc, &GAUSSIAN, "rows", &g2, groups_2d(w, h));
        (dst, tmp)
    }

    /// `ipscope_core::ops::threshold::histogram` on the GPU: the same range, edges and
    /// integer counts, for any image size (chunks of one binding each).
    pub fn histogram(&self, img: ImageView<f32>, nbins: usize) -> Result<Option<Histogram>, Error> {
        const K: &str = "histogram";
        let (w, h) = (img.width(), img.height());
        if nbins == 0 || img.is_empty() {
            return Ok(None);
        }
        self.check_fits(K, w, h, nbins + 1)?;
        if w > u32::MAX as usize / 2 || h > u32::MAX as usize / 2 {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let mut copied = Vec::new();
        let data = pixels(img, &mut copied);
        // An image above one binding is counted in chunks, one buffer each, into the same
        // (atomic, integer) range and counts: the result does not depend on the chunking.
        let per_chunk = (self.max_binding / 4).min(u64::from(u32::MAX) / 2) as usize;
        let chunks: Vec<(wgpu::Buffer, usize)> = data
            .chunks(per_chunk.max(1))
            .map(|part| (self.storage(part), part.len()))
            .collect();
        let chunks: Vec<(&wgpu::Buffer, usize)> = chunks.iter().map(|(b, n)| (b, *n)).collect();
        self.histogram_of(&chunks, nbins, None)
    }

    /// The smallest and largest finite value of f32 pixels already on the device, in
    /// `chunks` of (buffer, pixel count) as [`Gpu::histogram_of`] takes them; `None` when no
    /// pixel is finite. `lead`: work that makes those pixels, submitted first.
    pub(crate) fn finite_range(
        &self,
        chunks: &[(&wgpu::Buffer, usize)],
        lead: Option<wgpu::CommandEncoder>,
    ) -> Result<Option<(f32, f32)>, Error> {
        let keys = self.scoped("histogram", || {
            let range = self.storage(&[u32::MAX, 0u32]);
            let counts = self.zeroed(1);
            let edges = self.zeroed(1);
            let mut enc = lead.unwrap_or_else(|| self.encoder());
            for &(src, n) in chunks {
                let params = self.uniform([n as u32, 0, 0, 0]);
                let g = self.bind(&HISTOGRAM, &[&params, src, &range, &counts, &edges]);
                self.dispatch(&mut enc, &HISTOGRAM, "find_range", &g, groups_1d(n, 256));
            }
            let out = self.submit_and_read(enc, &[(&range, 2)])?;
            Ok(first_result(out))
        })?;
        let unkey = |k: u32| {
            f32::from_bits(if k & 0x8000_0000 != 0 {
                k & 0x7fff_ffff
            } else {
                !k
            })
        };
        Ok((keys[0] <= keys[1]).then(|| (unkey(keys[0]), unkey(keys[1]))))
    }

    /// The histogram of f32 pixels already on the device, in `chunks` of (buffer, pixel
    /// count), each within one binding and below 2^31 pixels: [`Gpu::histogram`]'s result.
    /// `lead`: work that makes those pixels, recorded but not yet submitted; it goes in the
    /// first submission.
    pub(crate) fn histogram_of(
        &self,
        chunks: &[(&wgpu::Buffer, usize)],
        nbins: usize,
        lead: Option<wgpu::CommandEncoder>,
    ) -> Result<Option<Histogram>, Error> {
        const K: &str = "histogram";
        let Some(range) = self.finite_range(chunks, lead)? else {
            return Ok(None); // no finite pixel
        };
        // The same float32 edges as the CPU reference (numpy.linspace in float32).
        let (first, last, _, edges) = ipscope_core::ops::threshold::histogram_edges(range, nbins);
        let counts = self.scoped(K, || {
            let range = self.zeroed(2);
            let counts = self.zeroed(nbins);
            let eb = self.storage(&edges);
            let mut enc = self.encoder();
            enc.clear_buffer(&counts, 0, None);
            for &(src, n) in chunks {
                let params =
                    self.uniform([n as u32, nbins as u32, first.to_bits(), last.to_bits()]);
                let g = self.bind(&HISTOGRAM, &[&params, src, &range, &counts, &eb]);
                self.dispatch(
                    &mut enc,
                    &HISTOGRAM,
                    "count_bins",
                    &g,
                    groups_1d(n, 256 * 16),
                );
            }
            let out = self.submit_and_read(enc, &[(&counts, nbins)])?;
            Ok(first_result(out))
        })?;
        let bin_centers = edges.windows(2).map(|e| (e[0] + e[1]) / 2.0).collect();
        Ok(Some(Histogram {
            counts: counts.into_iter().map(u64::from).collect(),
            edges,
            bin_centers,
        }))
    }

    fn morph(&self, mask: ImageView<bool>, entry: &'static str) -> Result<Image<bool>, Error> {
        const K: &str = "morphology";
        let (w, h) = (mask.width(), mask.height());
        if mask.is_empty() {
            return Ok(Image::new(w, h, false));
        }
        if (w * h) as u64 * 4 > self.max_binding {
            return self.morph_banded(mask, entry);
        }
        self.check_fits(K, w, h, w * h)?;
        let out = self.scoped(K, || {
            let params = self.uniform([w as u32, h as u32, 0, 0]);
            let mut enc = self.encoder();
            let src = self.encode_mask_upload(&mut enc, mask);
            let dst = self.zeroed(w * h);
            let g = self.bind(&MORPHOLOGY, &[&params, &src, &dst]);
            self.dispatch(&mut enc, &MORPHOLOGY, entry, &g, groups_2d(w, h));
            self.read_mask(enc, &dst, w, h)
        })?;
        self.mask_image(K, w, h, out)
    }

    /// Reads back the `w × h` mask in `mask` (one u32 per pixel) packed 32 pixels to a word
    /// (`morphology.wgsl` `pack`, encoded after `enc`'s work): 1/32 of the bytes to copy.
    pub(crate) fn read_mask(
        &self,
        mut enc: wgpu::CommandEncoder,
        mask: &wgpu::Buffer,
        w: usize,
        h: usize,
    ) -> Result<Vec<u32>, String> {
        let n = (w * h).div_ceil(32);
        let params = self.uniform([w as u32, h as u32, 0, 0]);
        let packed = self.zeroed(n);
        let g = self.bind(&MORPHOLOGY, &[&params, mask, &packed]);
        self.dispatch(&mut enc, &MORPHOLOGY, "pack", &g, groups_1d(n, 256));
        Ok(first_result(self.submit_and_read(enc, &[(&packed, n)])?))
    }

    /// A mask image from [`Gpu::read_mask`]'s packed words.
    pub(crate) fn mask_image(
        &self,
        kernel: &'static str,
        w: usize,
        h: usize,
        packed: Vec<u32>,
    ) -> Result<Image<bool>, Error> {
        let fail = |message: String| self.device_error(kernel, message);
        if packed.len() < (w * h).div_ceil(32) {
            return Err(fail(format!(
                "{} packed words for a {w} x {h} mask",
                packed.len()
            )));
        }
        let data = (0..w * h)
            .map(|i| (packed[i / 32] >> (i % 32)) & 1 != 0)
            .collect();
        Image::from_vec(w, h, data).map_err(|e| fail(e.to_string()))
    }

    /// Records into `enc` the filling of the `w × h` mask in `src` (one u32 per pixel); the
    /// filled mask's buffer, left on the device (call inside `scoped`): the background
    /// labelled 4-connected (`label.wgsl`, inverted), the components that touch the border
    /// marked open, every other background pixel filled.
    pub(crate) fn fill_on_device(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        w: usize,
        h: usize,
    ) -> wgpu::Buffer {
        let lab = self.union_labels(enc, src, w, h, 0, 1);
        let params = self.uniform([w as u32, h as u32, 0, 0]);
        let open = self.zeroed(w * h);
        let filled = self.zeroed(w * h);
        let g = self.bind(&HOLES, &[&params, &lab, &open, &filled]);
        enc.clear_buffer(&open, 0, None);
        self.dispatch(enc, &HOLES, "open_border", &g, groups_2d(w, h));
        self.dispatch(enc, &HOLES, "fill", &g, groups_2d(w, h));
        filled
    }

    /// Records into `enc` the labelling of the `w × h` mask in `src`; the labels' buffer
    /// (call inside `scoped`): `init`, one `merge` (union-find over the earlier neighbours)
    /// and `flatten` (`local`, `seams` and `flatten` with [`Gpu::set_tiled_labelling`]).
    /// Every component carries its first pixel's index (raster order) plus one. `eight`:
    /// 8-connected; `invert`: label the zero pixels.
    pub(crate) fn union_labels(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        w: usize,
        h: usize,
        eight: u32,
        invert: u32,
    ) -> wgpu::Buffer {
        let params = self.uniform([w as u32, h as u32, eight, invert]);
        let lab = self.zeroed(w * h);
        let g = self.bind(&LABEL, &[&params, src, &lab]);
        let tiled = self.tiled_labels.load(std::sync::atomic::Ordering::Relaxed);
        let entries = if tiled {
            ["local", "seams", "flatten"]
        } else {
            ["init", "merge", "flatten"]
        };
        for entry in entries {
            self.dispatch(enc, &LABEL, entry, &g, groups_2d(w, h));
        }
        lab
    }

    /// Erosion or dilation of a mask larger than one binding, in bands of rows with a halo of
    /// one row on each side (the 4-cross reaches one row): each band's rows see exactly the
    /// neighbours they see in the whole image, so the result is the untiled one.
    fn morph_banded(
        &self,
        mask: ImageView<bool>,
        entry: &'static str,
    ) -> Result<Image<bool>, Error> {
        const K: &str = "morphology";
        let (w, h) = (mask.width(), mask.height());
        let max_rows = (self.max_binding / 4 / w as u64) as usize;
        if max_rows < 3 {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "one band of 3 rows needs {} bytes, the device binds at most {}",
                    3 * w * 4,
                    self.max_binding
                ),
            ));
        }
        let band = max_rows - 2;
        let mut out = Image::new(w, h, false);
        let mut y0 = 0;
        while y0 < h {
            let y1 = (y0 + band).min(h);
            let (a, b) = (y0.saturating_sub(1), (y1 + 1).min(h));
            let tile = mask
                .crop(a, 0, b - a, w)
                .map_err(|e| self.device_error(K, e))?;
            let res = self.morph(tile, entry)?;
            for y in y0..y1 {
                out.row_mut(y).copy_from_slice(res.row(y - a));
            }
            y0 = y1;
        }
        Ok(out)
    }

    /// `ipscope_core::ops::morphology::binary_erosion` on the GPU (exact).
    pub fn binary_erosion(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error> {
        self.morph(mask, "erode")
    }

    /// `ipscope_core::ops::morphology::binary_dilation` on the GPU (exact).
    pub fn binary_dilation(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error> {
        self.morph(mask, "dilate")
    }

    /// `ipscope_core::ops::morphology::fill_holes` on the GPU (exact): the background's
    /// 4-connected components are labelled on the device and those that do not touch the
    /// border filled. A mask larger than one binding labels its background with the tiled
    /// labelling and fills on the host.
    pub fn fill_holes(&self, mask: ImageView<bool>) -> Result<Image<bool>, Error> {
        const K: &str = "holes";
        let (w, h) = (mask.width(), mask.height());
        if mask.is_empty() {
            return Ok(Image::new(w, h, false));
        }
        if (w * h) as u64 * 4 > self.max_binding {
            // The holes: the background's components that do not touch the border.
            let background = mask.map(|v| !v);
            let holes = clear_border(&self.label_tiled(background.view(), Connectivity::Four)?);
            let holes = holes.image();
            return Ok(Image::from_fn(w, h, |r, c| {
                mask.get(r, c) || holes.get(r, c) != 0
            }));
        }
        self.check_fits(K, w, h, w * h)?;
        if (w * h) as u64 >= u64::from(u32::MAX) {
            return Err(self.too_large(K, w, h, "more pixels than u32 labels".into()));
        }
        let out = self.scoped(K, || {
            let mut enc = self.encoder();
            let src = self.encode_mask_upload(&mut enc, mask);
            let filled = self.fill_on_device(&mut enc, &src, w, h);
            self.read_mask(enc, &filled, w, h)
        })?;
        self.mask_image(K, w, h, out)
    }

    /// `ipscope_core::ops::distance::distance_transform_edt` on the GPU: exact integer
    /// squared distances, square root on the host as the CPU takes it, so bit-identical.
    /// A mask larger than one binding is processed in strips of columns, then bands of rows.
    pub fn distance_transform_edt(&self, mask: ImageView<bool>) -> Result<Image<f32>, Error> {
        const K: &str = "edt";
        let (w, h) = (mask.width(), mask.height());
        if mask.is_empty() {
            return Ok(Image::new(w, h, 0.0));
        }
        if (w as u64).pow(2) + (h as u64).pow(2) >= 1 << 31 {
            return Err(self.too_large(K, w, h, "squared distances must stay below 2^31".into()));
        }
        let d2 = if (w * h) as u64 * 4 > self.max_binding {
            self.edt_tiled(mask)?
        } else {
            self.edt_whole(mask)?
        };
        self.d2_image(w, h, d2)
    }

    /// Distances from squared distances, with the square root the CPU takes.
    pub(crate) fn d2_image(&self, w: usize, h: usize, d2: Vec<u32>) -> Result<Image<f32>, Error> {
        let data = d2
            .into_iter()
            .map(|d| {
                if d == u32::MAX {
                    f32::INFINITY
                } else {
                    (f64::from(d)).sqrt() as f32
                }
            })
            .collect();
        Image::from_vec(w, h, data).map_err(|e| self.device_error("edt", e))
    }

    /// Squared distances of a mask larger than one binding. The transform is separable, so
    /// it tiles exactly: the column pass on strips of whole columns, the row pass on bands
    /// of whole rows, the vertical distances assembled on the host in between.
    fn edt_tiled(&self, mask: ImageView<bool>) -> Result<Vec<u32>, Error> {
        const K: &str = "edt";
        let (w, h) = (mask.width(), mask.height());
        let strip = (self.max_binding / 4 / h as u64) as usize;
        let band = (self.max_binding / 4 / w as u64) as usize;
        if strip == 0 || band == 0 {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "one whole column or row needs {} bytes, the device binds at most {}",
                    w.max(h) * 4,
                    self.max_binding
                ),
            ));
        }
        let crop_error = |e: ipscope_image::Error| self.device_error(K, e);
        let mut g = vec![0u32; w * h];
        let mut x0 = 0;
        while x0 < w {
            let sw = strip.min(w - x0);
            let part = mask.crop(0, x0, h, sw).map_err(crop_error)?;
            let words = mask_words(part);
            let col = self.scoped(K, || {
                let params = self.uniform([sw as u32, h as u32, 0, 0]);
                let m = self.storage(&words);
                let gb = self.zeroed(sw * h);
                let unused = self.zeroed(1);
                let bg = self.bind(
                    &EDT,
                    &[&params, &m, &gb, &unused, &unused, &unused, &unused],
                );
                let mut enc = self.encoder();
                self.dispatch(&mut enc, &EDT, "columns", &bg, (sw.div_ceil(64) as u32, 1));
                let out = self.submit_and_read(enc, &[(&gb, sw * h)])?;
                Ok(first_result(out))
            })?;
            for (y, row) in col.chunks_exact(sw).enumerate() {
                g[y * w + x0..y * w + x0 + sw].copy_from_slice(row);
            }
            x0 += sw;
        }
        let mut d2 = vec![0u32; w * h];
        let mut y0 = 0;
        while y0 < h {
            let bh = band.min(h - y0);
            let part = &g[y0 * w..(y0 + bh) * w];
            let rows = self.scoped(K, || {
                let params = self.uniform([w as u32, bh as u32, 0, 0]);
                let unused = self.zeroed(1);
                let gb = self.storage(part);
                let db = self.zeroed(w * bh);
                let v = self.zeroed(w * bh);
                let z = self.zeroed(w * bh);
                // Another buffer for the column flags: `unused` is bound read-only as the mask.
                let no_flags = self.zeroed(1);
                let bg = self.bind(&EDT, &[&params, &unused, &gb, &db, &v, &z, &no_flags]);
                let mut enc = self.encoder();
                self.dispatch(&mut enc, &EDT, "rows", &bg, groups_1d(bh, 1));
                let out = self.submit_and_read(enc, &[(&db, w * bh)])?;
                Ok(first_result(out))
            })?;
            d2[y0 * w..(y0 + bh) * w].copy_from_slice(&rows);
            y0 += bh;
        }
        Ok(d2)
    }

    /// Squared distances of a mask within one binding, both passes in one submission.
    fn edt_whole(&self, mask: ImageView<bool>) -> Result<Vec<u32>, Error> {
        self.edt_words(MaskSource::Host(mask), mask.width(), mask.height())
    }

    /// [`Gpu::edt_whole`] of a `w × h` mask given as words or a device buffer.
    pub(crate) fn edt_words(&self, src: MaskSource, w: usize, h: usize) -> Result<Vec<u32>, Error> {
        const K: &str = "edt";
        self.scoped(K, || {
            let mut owned = None;
            let mut enc = self.encoder();
            let m = self.mask_buffer(&mut enc, src, &mut owned);
            let d2 = self.encode_edt(&mut enc, m, w, h);
            let out = self.submit_and_read(enc, &[(&d2, w * h)])?;
            Ok(first_result(out))
        })
    }

    /// Records the exact squared distances of the `w × h` mask in `m` (one u32 per pixel)
    /// into `enc`; their buffer (call inside `scoped`).
    pub(crate) fn encode_edt(
        &self,
        enc: &mut wgpu::CommandEncoder,
        m: &wgpu::Buffer,
        w: usize,
        h: usize,
    ) -> wgpu::Buffer {
        // The windowed column pass settles nearly every pixel of a nuclei mask in parallel;
        // the sweep then runs only down the columns it flagged.
        let params = self.uniform([w as u32, h as u32, 1, 0]);
        let g = self.zeroed(w * h);
        let d2 = self.zeroed(w * h);
        let v = self.zeroed(w * h);
        let z = self.zeroed(w * h);
        let need = self.zeroed(w);
        let bg = self.bind(&EDT, &[&params, m, &g, &d2, &v, &z, &need]);
        self.dispatch(enc, &EDT, "columns_window", &bg, groups_2d(w, h));
        self.dispatch(enc, &EDT, "columns", &bg, (w.div_ceil(64) as u32, 1));
        self.dispatch(enc, &EDT, "rows", &bg, groups_1d(h, 1));
        d2
    }

    /// `ipscope_core::ops::label::label` on the GPU: identical labels (raster order of
    /// first pixel).
    pub fn label(&self, mask: ImageView<bool>, conn: Connectivity) -> Result<Labels, Error> {
        let (w, h) = (mask.width(), mask.height());
        if !mask.is_empty() && (w * h) as u64 * 4 > self.max_binding {
            return self.label_tiled(mask, conn);
        }
        self.label_whole(mask, conn)
    }

    /// Labels of a mask larger than one binding: each band of whole rows labelled on the
    /// device, the components that meet across a seam merged on the host (union-find over
    /// the two rows of each seam, with the same connectivity), then numbered in raster order
    /// of their first pixel, as the reference numbers them. Exact.
    fn label_tiled(&self, mask: ImageView<bool>, conn: Connectivity) -> Result<Labels, Error> {
        const K: &str = "label";
        let (w, h) = (mask.width(), mask.height());
        let band = (self.max_binding / 4 / w as u64) as usize;
        if band == 0 {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "one row needs {} bytes, the device binds at most {}",
                    w * 4,
                    self.max_binding
                ),
            ));
        }
        let mut global = vec![0u32; w * h];
        let mut parent: Vec<u32> = vec![0];
        let mut y0 = 0;
        while y0 < h {
            let bh = band.min(h - y0);
            let part = mask
                .crop(y0, 0, bh, w)
                .map_err(|e| self.device_error(K, e))?;
            let l = self.label_whole(part, conn)?;
            let offset = parent.len() as u32 - 1;
            let Some(top) = offset.checked_add(l.count()) else {
                return Err(self.too_large(K, w, h, "more objects than u32 labels".into()));
            };
            parent.extend(offset + 1..=top);
            for (g, &v) in global[y0 * w..(y0 + bh) * w]
                .iter_mut()
                .zip(l.image().as_slice())
            {
                if v != 0 {
                    *g = v + offset;
                }
            }
            y0 += bh;
        }
        fn find(parent: &mut [u32], mut x: u32) -> u32 {
            while parent[x as usize] != x {
                let up = parent[parent[x as usize] as usize];
                parent[x as usize] = up;
                x = up;
            }
            x
        }
        let eight = conn == Connectivity::Eight;
        let mut y = band;
        while y < h {
            for x in 0..w {
                let a = global[(y - 1) * w + x];
                if a == 0 {
                    continue;
                }
                let lo = if eight { x.saturating_sub(1) } else { x };
                let hi = if eight { (x + 1).min(w - 1) } else { x };
                for xb in lo..=hi {
                    let b = global[y * w + xb];
                    if b != 0 {
                        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                        if ra != rb {
                            parent[ra.max(rb) as usize] = ra.min(rb);
                        }
                    }
                }
            }
            y += band;
        }
        let mut number = vec![0u32; parent.len()];
        let mut next = 0u32;
        for g in global.iter_mut() {
            if *g != 0 {
                let r = find(&mut parent, *g) as usize;
                if number[r] == 0 {
                    next += 1;
                    number[r] = next;
                }
                *g = number[r];
            }
        }
        let img = Image::from_vec(w, h, global).map_err(|e| self.device_error(K, e))?;
        Ok(Labels::new(img, next))
    }

    fn label_whole(&self, mask: ImageView<bool>, conn: Connectivity) -> Result<Labels, Error> {
        const K: &str = "label";
        let (w, h) = (mask.width(), mask.height());
        if mask.is_empty() {
            return Ok(Labels::empty(w, h));
        }
        self.check_fits(K, w, h, w * h)?;
        if (w * h) as u64 >= u64::from(u32::MAX) {
            return Err(self.too_large(K, w, h, "more pixels than u32 labels".into()));
        }
        Ok(self
            .label_words(MaskSource::Host(mask), w, h, conn, None)?
            .0)
    }

    /// [`Gpu::label_whole`] of a `w × h` mask (within one binding, not empty) given as words
    /// or a device buffer; with `distance` (the mask's number of set pixels), also the
    /// mask's squared distances ([`Gpu::edt_words`]), computed in the same submission and
    /// read back at the labelled pixels only (the others are 0).
    pub(crate) fn label_words(
        &self,
        src: MaskSource,
        w: usize,
        h: usize,
        conn: Connectivity,
        distance: Option<usize>,
    ) -> Result<(Labels, Option<Vec<u32>>), Error> {
        const K: &str = "label";
        let eight = u32::from(conn == Connectivity::Eight);
        let back = self.scoped(K, || {
            let mut owned = None;
            let mut enc = self.encoder();
            let m = self.mask_buffer(&mut enc, src, &mut owned);
            let lab = self.union_labels(&mut enc, m, w, h, eight, 0);
            let d2 = distance.map(|set| (self.encode_edt(&mut enc, m, w, h), set));
            let values = d2.as_ref().map(|(b, set)| (b, *set));
            self.read_labels(enc, &lab, (w, h), values, &[])
        })?;
        let (roots, d2) = (back.labels, back.values);
        // Each component carries its first pixel's index + 1; number them as met in raster
        // order, which is the order of those first pixels. In place: a component's first
        // pixel gets the next number, every later pixel copies its first pixel's number
        // (already rewritten, being earlier in raster order).
        let mut data = roots;
        let mut next = 0u32;
        for i in 0..data.len() {
            let r = data[i] as usize;
            data[i] = if r == 0 {
                0
            } else if r == i + 1 {
                next += 1;
                next
            } else if r <= i {
                data[r - 1]
            } else {
                return Err(self.device_error(
                    K,
                    format!("pixel {i} points at a later first pixel {}", r - 1),
                ));
            };
        }
        let img = Image::from_vec(w, h, data).map_err(|e| self.device_error(K, e))?;
        Ok((Labels::new(img, next), d2))
    }

    /// Per-object integer sums, as [`ObjectStats`]: `ipscope_core::ops::measure`'s shape
    /// and the raw-sample intensity statistics, exact.
    pub fn object_stats(
        &self,
        labels: &Labels,
        intensity: Option<ImageView<u16>>,
    ) -> Result<Vec<ObjectStats>, Error> {
        const K: &str = "measure";
        const STRIDE: usize = STATS_STRIDE;
        let (w, h) = (labels.width(), labels.height());
        let n = labels.count() as usize;
        if n == 0 || labels.image().is_empty() {
            return Ok(Vec::new());
        }
        self.check_fits(K, w, h, n * STRIDE)?;
        // Bands of whole rows, each within one binding, all adding into one accumulator.
        let band = (self.max_binding / 4 / w as u64) as usize;
        if band == 0 {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "one row needs {} bytes, the device binds at most {}",
                    w * 4,
                    self.max_binding
                ),
            ));
        }
        let lab = labels.image().as_slice();
        let vals: Vec<u32> = match intensity {
            Some(v) => {
                ipscope_core::ensure_shape("intensity", (w, h), (v.width(), v.height()))
                    .map_err(|e| self.device_error(K, e))?;
                v.rows()
                    .flat_map(|r| r.iter().map(|&x| u32::from(x)))
                    .collect()
            }
            None => vec![0; w * h],
        };
        let acc = self.scoped(K, || {
            let ab = self.storage(&stats_init(n));
            let mut y0 = 0;
            while y0 < h {
                let y1 = (y0 + band).min(h);
                let rows = y1 - y0;
                let params = self.uniform([w as u32, rows as u32, n as u32, y0 as u32]);
                let lb = self.storage(&lab[y0 * w..y1 * w]);
                let vb = self.storage(&vals[y0 * w..y1 * w]);
                let g = self.bind(&MEASURE, &[&params, &lb, &vb, &ab]);
                let mut enc = self.encoder();
                self.dispatch(&mut enc, &MEASURE, "reduce", &g, groups_2d(w, rows));
                self.submit(enc)?;
                y0 = y1;
            }
            let out = self.submit_and_read(self.encoder(), &[(&ab, n * STRIDE)])?;
            Ok(first_result(out))
        })?;
        Ok(stats_from(&acc))
    }

    /// `ipscope_core::ops::measure::measure_shape` on the GPU (exact: integer sums, the
    /// same final divisions).
    pub fn measure_shape(&self, labels: &Labels) -> Result<Vec<ObjectShape>, Error> {
        Ok(self
            .object_stats(labels, None)?
            .iter()
            .map(ObjectStats::shape)
            .collect())
    }
}

/// Words per object of `measure.wgsl`'s accumulator.
pub(crate) const STATS_STRIDE: usize = 13;

/// The accumulator of `measure.wgsl` for `n` objects, before any pixel: zero sums, the
/// minima at `u32::MAX`.
pub(crate) fn stats_init(n: usize) -> Vec<u32> {
    let mut init = vec![0u32; n * STATS_STRIDE];
    for o in init.chunks_exact_mut(STATS_STRIDE) {
        o[5] = u32::MAX;
        o[6] = u32::MAX;
        o[11] = u32::MAX;
    }
    init
}

/// [`ObjectStats`] of labels 1.. from `measure.wgsl`'s accumulator.
pub(crate) fn stats_from(acc: &[u32]) -> Vec<ObjectStats> {
    let wide = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    acc.chunks_exact(STATS_STRIDE)
        .enumerate()
        .map(|(i, o)| ObjectStats {
            label: i as u32 + 1,
            area: u64::from(o[0]),
            sum_row: wide(o[1], o[2]),
            sum_col: wide(o[3], o[4]),
            bbox: if o[0] == 0 {
                (0, 0, 0, 0)
            } else {
                (o[5] as usize, o[6] as usize, o[7] as usize, o[8] as usize)
            },
            sum_intensity: wide(o[9], o[10]),
            min_intensity: o[11],
            max_intensity: o[12],
        })
        .collect()
}

/// Integer per-object sums from the `measure` kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStats {
    /// The object's label.
    pub label: u32,
    /// Pixel count.
    pub area: u64,
    /// Sum of the rows of its pixels.
    pub sum_row: u64,
    /// Sum of the columns of its pixels.
    pub sum_col: u64,
    /// (first row, first column, last row + 1, last column + 1); zeros when absent.
    pub bbox: (usize, usize, usize, usize),
    /// Sum of the raw samples.
    pub sum_intensity: u64,
    /// Smallest raw sample (`u32::MAX` when absent).
    pub min_intensity: u32,
    /// Largest raw sample.
    pub max_intensity: u32,
}

impl ObjectStats {
    /// As `measure_shape` reports it.
    pub fn shape(&self) -> ObjectShape {
        let a = self.area;
        ObjectShape {
            label: self.label,
            area: a,
            center_x: self.sum_col as f64 / a as f64,
            center_y: self.sum_row as f64 / a as f64,
            bbox_min_x: self.bbox.1,
            bbox_min_y: self.bbox.0,
            bbox_max_x: self.bbox.3,
            bbox_max_y: self.bbox.2,
        }
    }
}
