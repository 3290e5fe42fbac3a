//! The size filter on the GPU: `ipscope_core::ops::label::filter_by_area`, exact.

use ipscope_image::{Image, Labels};

use crate::device::{groups_2d, Gpu};
use crate::kernels::RELABEL;
use crate::ops::{first_result, raster_numbers};
use crate::Error;

impl Gpu {
    /// `ipscope_core::ops::label::filter_by_area` on the GPU: the objects whose pixel count
    /// lies in `[min, max]`, renumbered `1..=N` in raster order of their first pixel.
    /// Identical to the CPU reference: areas and first pixels are integer atomics, the
    /// numbering follows the same first pixels. Labels larger than one storage binding are
    /// counted and relabelled in bands of whole rows.
    pub fn filter_by_area(&self, labels: &Labels, min: u64, max: u64) -> Result<Labels, Error> {
        const K: &str = "relabel";
        let (w, h) = (labels.width(), labels.height());
        if labels.image().is_empty() {
            return Ok(Labels::empty(w, h));
        }
        if (w as u64) * (h as u64) >= u64::from(u32::MAX) {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let lab = labels.image().as_slice();
        // The reference sizes its tables by the largest label present or promised.
        let top = lab.iter().copied().max().unwrap_or(0).max(labels.count());
        if top == u32::MAX {
            return Err(self.too_large(K, w, h, "a label of u32::MAX".into()));
        }
        let n = top as usize + 1;
        self.check_fits(K, w, h, 2 * n)?;
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
        let bands: Vec<(usize, usize)> = (0..h)
            .step_by(band)
            .map(|y0| (y0, (y0 + band).min(h)))
            .collect();
        let buffers: Vec<wgpu::Buffer> = bands
            .iter()
            .map(|&(y0, y1)| self.storage(&lab[y0 * w..y1 * w]))
            .collect();
        let mut init = vec![0u32; 2 * n];
        for o in init.chunks_exact_mut(2) {
            o[1] = u32::MAX;
        }
        let acc = self.scoped(K, || {
            let ab = self.storage(&init);
            // A buffer may not be bound read-only and read-write in one dispatch.
            let (unused_r, unused_rw) = (self.zeroed(1), self.zeroed(1));
            let mut enc = self.encoder();
            for (&(y0, y1), lb) in bands.iter().zip(&buffers) {
                let params = self.uniform([w as u32, (y1 - y0) as u32, top, y0 as u32]);
                let g = self.bind(&RELABEL, &[&params, lb, &ab, &unused_r, &unused_rw]);
                self.dispatch(&mut enc, &RELABEL, "areas", &g, groups_2d(w, y1 - y0));
            }
            let out = self.submit_and_read(enc, &[(&ab, 2 * n)])?;
            Ok(first_result(out))
        })?;
        // Kept labels, numbered in raster order of their first pixel.
        let kept: Vec<(u32, u32)> = acc
            .chunks_exact(2)
            .enumerate()
            .skip(1)
            .filter(|(_, o)| o[0] > 0 && (min..=max).contains(&u64::from(o[0])))
            .map(|(l, o)| (o[1], l as u32))
            .collect();
        let kept_count = kept.len() as u32;
        let lut = raster_numbers(kept, n);
        let relabelled = self.scoped(K, || {
            let lb_lut = self.storage(&lut);
            let unused = self.zeroed(1);
            let outs: Vec<wgpu::Buffer> = bands
                .iter()
                .map(|&(y0, y1)| self.zeroed((y1 - y0) * w))
                .collect();
            let mut enc = self.encoder();
            for ((&(y0, y1), lb), ob) in bands.iter().zip(&buffers).zip(&outs) {
                let params = self.uniform([w as u32, (y1 - y0) as u32, top, y0 as u32]);
                let g = self.bind(&RELABEL, &[&params, lb, &unused, &lb_lut, ob]);
                self.dispatch(&mut enc, &RELABEL, "remap", &g, groups_2d(w, y1 - y0));
            }
            if let [whole] = outs.as_slice() {
                return Ok(self.read_labels(enc, whole, (w, h), None, &[])?.labels);
            }
            let reads: Vec<(&wgpu::Buffer, usize)> = bands
                .iter()
                .zip(&outs)
                .map(|(&(y0, y1), ob)| (ob, (y1 - y0) * w))
                .collect();
            Ok(self.submit_and_read(enc, &reads)?.concat())
        })?;
        let img = Image::from_vec(w, h, relabelled).map_err(|e| self.device_error(K, e))?;
        Ok(Labels::new(img, kept_count))
    }
}
