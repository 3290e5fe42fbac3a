//! Hole filling, labelling and the distance transform of one mask with the mask kept on the
//! device between the three (`Backend::fill_label_distance`).

use ipscope_core::backend::FilledObjects;
use ipscope_core::ops::label::Connectivity;
use ipscope_image::Image;

use crate::device::Gpu;
use crate::ops::MaskSource;
use crate::Error;

impl Gpu {
    /// `Backend::fill_label_distance` on the GPU: the mask goes up once; hole filling leaves
    /// the filled mask on the device (`holes.wgsl` `fill`), where the
    /// labelling and the distance transform read it, in one submission. Only the filled
    /// mask (packed), the labels (as runs) and the labelled pixels' squared distances come
    /// back. The same results as the three separate calls
    /// (identical); a mask larger than one binding runs as those calls (tiled).
    pub fn fill_label_distance(
        &self,
        mask: Image<bool>,
        fill: bool,
        conn: Connectivity,
        distance: bool,
    ) -> Result<FilledObjects, Error> {
        const K: &str = "holes";
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
        let (on_device, mask) = if fill {
            let (filled, out) = self.scoped(K, || {
                let mut enc = self.encoder();
                let src = self.encode_mask_upload(&mut enc, mask.view());
                let filled = self.fill_on_device(&mut enc, &src, w, h);
                let out = self.read_mask(enc, &filled, w, h)?;
                Ok((filled, out))
            })?;
            (filled, self.mask_image(K, w, h, out)?)
        } else {
            let src = self.scoped(K, || {
                let mut enc = self.encoder();
                let src = self.encode_mask_upload(&mut enc, mask.view());
                self.submit(enc)?;
                Ok(src)
            })?;
            (src, mask)
        };
        // The distances in the same submission as the labels, and only the labelled
        // (set) pixels' come back: the others are background, at distance 0.
        let set = distance.then(|| mask.as_slice().iter().filter(|&&b| b).count());
        let (labels, d2) = self.label_words(MaskSource::Device(&on_device), w, h, conn, set)?;
        let distance = match d2 {
            Some(d2) if labels.count() > 0 => Some(self.d2_image(w, h, d2)?),
            _ => None,
        };
        Ok(FilledObjects {
            mask,
            labels,
            distance,
        })
    }
}
