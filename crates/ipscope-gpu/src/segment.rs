//! A resident segmentation: `Backend::segment_otsu` with every intermediate image on the
//! device. The image goes up once; the smoothed field, the mask, the filled mask and the
//! union-find labels never come back; the numbered labels (as runs along the rows, see
//! `runs.rs`) and the objects' sums come down once. Between, only a handful of words cross
//! (the histogram's range and counts, the number of objects and their first pixels, the
//! number of runs).

use ipscope_core::backend::{FieldView, OtsuObjects, OtsuParams};
use ipscope_core::ops::threshold::otsu_of_histogram;
use ipscope_image::{Image, Labels};

use crate::device::{groups_2d, Gpu};
use crate::kernels::{MEASURE, SEGMENT};
use crate::ops::{
    first_result, gaussian_weights, raster_numbers, stats_from, stats_init, ObjectStats,
    STATS_STRIDE,
};
use crate::Error;

impl Gpu {
    /// Whether [`Gpu::segment_otsu`] can keep a `w × h` image resident: every per-pixel
    /// buffer within one storage binding, and pixel indices within u32.
    pub fn segment_resident_fits(&self, w: usize, h: usize) -> bool {
        let n = (w as u64) * (h as u64);
        n * 4 <= self.max_binding && n < u64::from(u32::MAX) / 2
    }

    /// `Backend::segment_otsu` with the image resident on the device (see the module docs):
    /// the same labels and shapes as `ipscope_core::backend::segment_otsu_by_stages` on this
    /// device (identical: the same Gaussian, histogram, union-find and integer sums), and
    /// so within the Gaussian's tolerance of the CPU. An image beyond one binding is
    /// [`Error::TooLarge`] (check [`Gpu::segment_resident_fits`] first; `GpuBackend` then
    /// runs the stages one by one, tiled).
    pub fn segment_otsu(&self, field: FieldView, p: &OtsuParams) -> Result<OtsuObjects, Error> {
        const K: &str = "segment";
        let (w, h) = field.dims();
        let none = || OtsuObjects {
            threshold: None,
            labels: Labels::empty(w, h),
            shapes: Vec::new(),
        };
        if w == 0 || h == 0 || p.nbins == 0 {
            return Ok(none());
        }
        if !self.segment_resident_fits(w, h) {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "a resident segmentation needs {} bytes per buffer, the device binds at most {}",
                    (w as u64) * (h as u64) * 4,
                    self.max_binding
                ),
            ));
        }
        self.check_fits(K, w, h, p.nbins + 1)?;
        let n = w * h;
        let weights = gaussian_weights(p.sigma);
        // 1. The image up (16-bit samples as they are stored, scaled on the device),
        // smoothed where it lies: recorded, and submitted with the histogram's first pass.
        let (smoothing, smoothed) = self.scoped(K, || {
            let mut enc = self.encoder();
            let src = self.encode_field(&mut enc, field);
            if weights.len() == 1 {
                return Ok((enc, src));
            }
            let (dst, _) = self.encode_gaussian(&mut enc, &src, w, h, weights.len() / 2, &weights);
            Ok((enc, dst))
        })?;
        // 2. Otsu's threshold from the histogram of the resident field.
        let Some(t) = self
            .histogram_of(&[(&smoothed, n)], p.nbins, Some(smoothing))?
            .and_then(|hist| otsu_of_histogram(&hist))
        else {
            return Ok(none());
        };
        // 3. Threshold, fill, label; areas at first pixels, ids for the kept components.
        let lo = u32::try_from(p.min_area).unwrap_or(u32::MAX);
        let hi = u32::try_from(p.max_area).unwrap_or(u32::MAX);
        // At most n / lo components have lo or more pixels; word 0 is the counter.
        let cap = n / (lo.max(1) as usize) + 1;
        let (lab, acc, firsts, count) = self.scoped(K, || {
            let unused_r = self.zeroed(1);
            let (unused_a, unused_b) = (self.zeroed(1), self.zeroed(1));
            let mask = self.zeroed(n);
            let params = self.uniform([w as u32, h as u32, t.to_bits(), 0]);
            let g = self.bind(
                &SEGMENT,
                &[&params, &smoothed, &unused_a, &unused_b, &unused_r, &mask],
            );
            // One submission: threshold, fill, label, areas, ids.
            let mut enc = self.encoder();
            self.dispatch(&mut enc, &SEGMENT, "threshold", &g, groups_2d(w, h));
            let filled = self.fill_on_device(&mut enc, &mask, w, h);
            let lab = self.union_labels(&mut enc, &filled, w, h, 1, 0);
            let acc = self.zeroed(n);
            let firsts = self.zeroed(cap);
            let params = self.uniform([w as u32, h as u32, lo, hi]);
            let unused_w = self.zeroed(1);
            let g = self.bind(
                &SEGMENT,
                &[&params, &lab, &acc, &firsts, &unused_r, &unused_w],
            );
            enc.clear_buffer(&acc, 0, None);
            enc.clear_buffer(&firsts, 0, None);
            self.dispatch(&mut enc, &SEGMENT, "root_areas", &g, groups_2d(w, h));
            self.dispatch(&mut enc, &SEGMENT, "number", &g, groups_2d(w, h));
            let count = first_result(self.submit_and_read(enc, &[(&firsts, 1)])?);
            Ok((
                lab,
                acc,
                firsts,
                count.first().copied().unwrap_or(0) as usize,
            ))
        })?;
        drop(smoothed);
        if count >= cap {
            return Err(self.device_error(
                K,
                format!("{count} objects counted, at most {} possible", cap - 1),
            ));
        }
        if count == 0 {
            return Ok(OtsuObjects {
                threshold: Some(t),
                ..none()
            });
        }
        // 4. Each id's number in raster order of its first pixel.
        let ids = self.scoped(K, || {
            Ok(first_result(self.submit_and_read(
                self.encoder(),
                &[(&firsts, count + 1)],
            )?))
        })?;
        let rank = raster_numbers(
            (1..=count as u32)
                .map(|k| (ids.get(k as usize).copied().unwrap_or(u32::MAX), k))
                .collect(),
            count + 1,
        );
        // 5. The numbered labels and their sums, then both down.
        let (labels, sums) = self.scoped(K, || {
            let rb = self.storage(&rank);
            let out = self.zeroed(n);
            let params = self.uniform([w as u32, h as u32, 0, 0]);
            let g = self.bind(&SEGMENT, &[&params, &lab, &acc, &firsts, &rb, &out]);
            let mut enc = self.encoder();
            self.dispatch(&mut enc, &SEGMENT, "remap", &g, groups_2d(w, h));
            if !p.shapes {
                return Ok((self.read_labels(enc, &out, (w, h), None, &[])?.labels, None));
            }
            // The shape sums only: the labels stand in for the intensity binding (read-only
            // twice), whose sums are not used, instead of a zeroed image-sized buffer.
            let sums = self.storage(&stats_init(count));
            let params = self.uniform([w as u32, h as u32, count as u32, 0]);
            let g = self.bind(&MEASURE, &[&params, &out, &out, &sums]);
            self.dispatch(&mut enc, &MEASURE, "reduce", &g, groups_2d(w, h));
            let back =
                self.read_labels(enc, &out, (w, h), None, &[(&sums, count * STATS_STRIDE)])?;
            let sums = back.also.into_iter().next().unwrap_or_default();
            Ok((back.labels, Some(sums)))
        })?;
        let img = Image::from_vec(w, h, labels).map_err(|e| self.device_error(K, e))?;
        Ok(OtsuObjects {
            threshold: Some(t),
            labels: Labels::new(img, count as u32),
            shapes: sums
                .map(|sums| stats_from(&sums).iter().map(ObjectStats::shape).collect())
                .unwrap_or_default(),
        })
    }
}
