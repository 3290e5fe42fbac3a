//! The nuclei recipe's first steps resident (`Backend::smooth_and_flatten`): the field goes
//! up once (16-bit samples at 2 bytes a pixel), is smoothed, loses its grey opening
//! (`rank.wgsl`) and is thresholded (Otsu's histogram or Li's reductions) where it lies; the
//! flattened field (and, when asked, the unsmoothed one) comes down once. Between, only the
//! histogram or Li's sums cross.

use std::sync::Arc;

use ipscope_core::backend::{FieldView, FlatThreshold, FlattenParams, Flattened, KeptImage};
use ipscope_core::ops::threshold::otsu_of_histogram;
use ipscope_image::{Image, ImageView};

use crate::device::Gpu;
use crate::ops::{first_result, floats, gaussian_weights};
use crate::Error;

/// An f32 image a [`Gpu`] keeps on the device for a later call ([`KeptImage`]'s inner).
struct KeptBuffer {
    /// The [`Gpu`]'s `id`: only that device can read the buffer.
    gpu: u64,
    buffer: wgpu::Buffer,
}

impl Gpu {
    /// Whether [`Gpu::smooth_and_flatten`] can keep a `w × h` field resident with opening
    /// radius `r`: every buffer within one binding, pixel indices within u32.
    pub fn flatten_resident_fits(&self, w: usize, h: usize, r: usize) -> bool {
        let n = (w as u64) * (h as u64);
        let r = r.min(w.max(h));
        n < u64::from(u32::MAX) / 4
            && (r == 0 || self.rank_fits(w, h, r))
            && n * 4 <= self.max_binding
    }

    /// `Backend::smooth_and_flatten` with the field resident on the device (see the module
    /// docs): the same images and threshold as
    /// `ipscope_core::backend::smooth_and_flatten_by_stages` on this device (the same
    /// kernels on the same buffers), so the opening and its subtraction as on the CPU and
    /// the Gaussian and Li's threshold within their stated tolerances of it. A field
    /// beyond one binding is [`Error::TooLarge`] (check [`Gpu::flatten_resident_fits`]
    /// first; `GpuBackend` then runs the stages one by one, tiled).
    pub fn smooth_and_flatten(
        &self,
        field: FieldView,
        p: &FlattenParams,
    ) -> Result<Flattened, Error> {
        const K: &str = "flatten";
        let (w, h) = field.dims();
        let r = p.radius.min(w.max(h));
        if w == 0 || h == 0 {
            return Ok(Flattened {
                smoothed: Image::new(w, h, 0.0),
                field: p.keep_field.then(|| Image::new(w, h, 0.0)),
                kept: None,
                threshold: None,
            });
        }
        if !self.flatten_resident_fits(w, h, r) {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "a resident field with an opening of radius {r} needs more than the {} \
                     bytes the device binds",
                    self.max_binding
                ),
            ));
        }
        let n = w * h;
        let weights = gaussian_weights(p.sigma);
        // Up, smoothed, flattened: one recording, submitted with the threshold's first pass
        // (or with the readback when no threshold is asked).
        let (enc, smoothed, unit) = self.scoped(K, || {
            let mut enc = self.encoder();
            let unit = self.encode_field(&mut enc, field);
            // The Gaussian's image between its passes serves the opening's.
            let (smoothed, free) = if weights.len() > 1 {
                let r = weights.len() / 2;
                let (s, tmp) = self.encode_gaussian(&mut enc, &unit, w, h, r, &weights);
                (s, Some(tmp))
            } else {
                // A copy, so that the two images lose the opening once each.
                let copy = self.zeroed(n);
                enc.copy_buffer_to_buffer(&unit, 0, &copy, 0, (n * 4) as u64);
                (copy, None)
            };
            if r > 0 {
                let bg = self.encode_opening(&mut enc, &smoothed, (w, h), r, free);
                self.encode_subtract(&mut enc, &bg, &smoothed, n);
                if p.keep_field {
                    self.encode_subtract(&mut enc, &bg, &unit, n);
                }
            }
            Ok((enc, smoothed, unit))
        })?;
        let chunks = [(&smoothed, n)];
        let (threshold, enc) = match p.threshold {
            FlatThreshold::None => (None, enc),
            FlatThreshold::Otsu => (
                self.histogram_of(&chunks, 256, Some(enc))?
                    .and_then(|hist| otsu_of_histogram(&hist)),
                self.encoder(),
            ),
            FlatThreshold::Li => {
                let t = match self.finite_range(&chunks, Some(enc))? {
                    Some((lo, hi)) if lo < hi => self.li_of(&chunks, lo)?,
                    _ => None,
                };
                (t, self.encoder())
            }
        };
        // The field comes down only when the caller wants it on the host.
        let down = p.keep_field && !p.keep_on_backend;
        let mut out = self.scoped(K, || {
            let mut reads = vec![(&smoothed, n)];
            if down {
                reads.push((&unit, n));
            }
            self.submit_and_read(enc, &reads)
        })?;
        let image = |words: Vec<u32>| {
            Image::from_vec(w, h, floats(words)).map_err(|e| self.device_error(K, e))
        };
        let field = if down {
            Some(image(out.pop().unwrap_or_default())?)
        } else {
            None
        };
        let kept = (p.keep_field && p.keep_on_backend).then(|| {
            let inner = KeptBuffer {
                gpu: self.id,
                buffer: unit,
            };
            KeptImage::new(w, h, Arc::new(inner))
        });
        let smoothed = image(out.pop().unwrap_or_default())?;
        Ok(Flattened {
            smoothed,
            field,
            kept,
            threshold,
        })
    }

    /// `Backend::gaussian_blur_kept_within`: [`Gpu::gaussian_blur_kept`] with only the
    /// pixels of `within` brought back (as runs with their values, see `runs.rs`; the
    /// others are 0): the mask goes up packed, about 4 bytes per wanted pixel come down.
    pub fn gaussian_blur_kept_within(
        &self,
        img: &KeptImage,
        sigma: f32,
        within: ImageView<bool>,
    ) -> Result<Image<f32>, Error> {
        const K: &str = "gaussian";
        let (w, h) = img.dims();
        if (within.width(), within.height()) != (w, h) {
            return Err(self.device_error(
                K,
                format!(
                    "{img:?}: the pixels wanted are a {}x{} mask",
                    within.width(),
                    within.height()
                ),
            ));
        }
        let kept = self.kept_buffer(img)?;
        let weights = gaussian_weights(sigma);
        let set = (0..h)
            .map(|r| within.row(r).iter().filter(|&&b| b).count())
            .sum::<usize>();
        let values = self.scoped(K, || {
            let mut enc = self.encoder();
            let blurred = (weights.len() > 1).then(|| {
                let r = weights.len() / 2;
                self.encode_gaussian(&mut enc, &kept.buffer, w, h, r, &weights)
                    .0
            });
            let src = blurred.as_ref().unwrap_or(&kept.buffer);
            let mask = self.encode_mask_upload(&mut enc, within);
            let back = self.read_labels(enc, &mask, (w, h), Some((src, set)), &[])?;
            Ok(back.values.unwrap_or_default())
        })?;
        Image::from_vec(w, h, floats(values)).map_err(|e| self.device_error(K, e))
    }

    /// The buffer of an image this device kept; an image kept by another device or
    /// backend is an error.
    fn kept_buffer<'a>(&self, img: &'a KeptImage) -> Result<&'a KeptBuffer, Error> {
        img.inner()
            .downcast_ref::<KeptBuffer>()
            .filter(|k| k.gpu == self.id)
            .ok_or_else(|| {
                self.device_error("gaussian", format!("{img:?} was not kept by this device"))
            })
    }

    /// `Backend::gaussian_blur_kept`: the Gaussian of an image this device kept
    /// ([`Gpu::smooth_and_flatten`] with `keep_on_backend`), where it lies. The values of
    /// [`Gpu::gaussian_blur`] of that image brought to the host (the same kernel on the
    /// same bits); an image kept by another device or backend is an error.
    pub fn gaussian_blur_kept(&self, img: &KeptImage, sigma: f32) -> Result<Image<f32>, Error> {
        const K: &str = "gaussian";
        let (w, h) = img.dims();
        let kept = self.kept_buffer(img)?;
        let weights = gaussian_weights(sigma);
        let words = self.scoped(K, || {
            let mut enc = self.encoder();
            if weights.len() == 1 {
                return Ok(first_result(
                    self.submit_and_read(enc, &[(&kept.buffer, w * h)])?,
                ));
            }
            let r = weights.len() / 2;
            let (dst, _) = self.encode_gaussian(&mut enc, &kept.buffer, w, h, r, &weights);
            Ok(first_result(self.submit_and_read(enc, &[(&dst, w * h)])?))
        })?;
        Image::from_vec(w, h, floats(words)).map_err(|e| self.device_error(K, e))
    }
}
