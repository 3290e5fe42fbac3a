//! Hole filling, labelling and the distance transform of one mask with the mask kept on the
//! device between the three (`Backend::fill_label_distance`).

use ipscope_core::backend::FilledObjects;
use ipscope_core::ops::label::Connectivity;
use ipscope_image::Image;

use crate::device::{groups_2d, Gpu};
use crate::kernels::MORPHOLOGY;
use crate::ops::{mask_words, to_u32, MaskSource, BATCH};
use crate::Error;

impl Gpu {
    /// `Backend::fill_label_distance` on the GPU: the mask goes up once; hole filling leaves
    /// the filled mask on the device (`morphology.wgsl` `fill_from_flood`), where the
    /// labelling and the distance transform read it. Only the filled mask, the labels and the
    /// squared distances come back. The same results as the three separate calls
    /// (identical); a mask larger than one binding runs as those calls (tiled).
    pub fn fill_label_distance(
        &self,
        mask: Image<bool>,
        fill: bool,
        conn: Connectivity,
        distance: bool,
    ) -> Result<FilledObjects, Error> {
        const K: &str = "morphology";
        let (w, h) = (mask.width(), mask.height());
        let resident = !mask.is_empty()
            && (w * h) as u64 * 4 <= self.max_binding
            && ((w * h) as u64) < u64::from(u32::MAX)
            && (w as u64).pow(2) + (h as u64).pow(2) < 1 << 31;
        if !resident {
            let mask = if fill {
                self.fill_holes(mask.view())?
            } else {
                mask
            };
            let labels = self.label(mask.view(), conn)?;
            let distance = if distance && labels.count() > 0 {
                Some(self.distance_transform_edt(mask.view())?)
            } else {
                None
            };
            return Ok(FilledObjects {
                mask,
                labels,
                distance,
            });
        }
        self.check_fits(K, w, h, w * h)?;
        let words = mask_words(mask.view());
        let src = self.scoped(K, || Ok(self.storage(&words)))?;
        let (on_device, mask) =
            if fill {
                let (filled, out) = self.scoped(K, || {
                    let params = self.uniform([w as u32, h as u32, 0, 0]);
                    let reached = self.zeroed(w * h);
                    let changed = self.zeroed(1);
                    let g = self.bind(&MORPHOLOGY, &[&params, &src, &reached, &changed]);
                    let mut enc = self.encoder();
                    enc.clear_buffer(&reached, 0, None);
                    enc.clear_buffer(&changed, 0, None);
                    self.submit(enc)?;
                    loop {
                        let mut enc = self.encoder();
                        enc.clear_buffer(&changed, 0, None);
                        for _ in 0..BATCH {
                            self.dispatch(&mut enc, &MORPHOLOGY, "flood", &g, groups_2d(w, h));
                        }
                        let flag = self.submit_and_read(enc, &[(&changed, 1)])?;
                        if to_u32(&flag[0])[0] == 0 {
                            break;
                        }
                    }
                    let filled = self.zeroed(w * h);
                    let g = self.bind(&MORPHOLOGY, &[&params, &reached, &filled, &changed]);
                    let mut enc = self.encoder();
                    self.dispatch(
                        &mut enc,
                        &MORPHOLOGY,
                        "fill_from_flood",
                        &g,
                        groups_2d(w, h),
                    );
                    let out = self.submit_and_read(enc, &[(&filled, w * h)])?;
                    Ok((filled, to_u32(&out[0])))
                })?;
                let img = Image::from_vec(w, h, out.into_iter().map(|v| v != 0).collect())
                    .map_err(|e| Error::Device {
                        adapter: self.adapter().name.clone(),
                        kernel: K,
                        message: e.to_string(),
                    })?;
                (filled, img)
            } else {
                (src, mask)
            };
        let labels = self.label_words(MaskSource::Device(&on_device), w, h, conn)?;
        let distance = if distance && labels.count() > 0 {
            let d2 = self.edt_words(MaskSource::Device(&on_device), w, h)?;
            Some(self.d2_image(w, h, d2)?)
        } else {
            None
        };
        Ok(FilledObjects {
            mask,
            labels,
            distance,
        })
    }
}
