//! Label images read back as runs along their rows (`runs.wgsl`): three words per run
//! instead of one per pixel (four, and one per labelled pixel, with the values of another
//! image at the labelled pixels, e.g. squared distances). A nuclei field is mostly background, and each object crosses a
//! row in one run, so its labels come down in a fraction of the bytes (at 8192² with about
//! 90,000 nuclei, some 2 million runs: about 24 MB instead of 268 MB). The host expands the
//! runs into the image, exactly. The encoding runs on the resident labels, so a field with
//! more runs than the buffer holds costs one more small readback and then comes back whole.

use ipscope_image::{Image, ImageView};

use crate::device::{groups_2d, Gpu};
use crate::kernels::RUNS;
use crate::ops::first_result;
use crate::Error;

/// How a label image came back from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelReadback {
    /// As this many runs (three words each).
    Runs(usize),
    /// One word per pixel: runs switched off ([`Gpu::set_label_runs`]), an image below
    /// [`RUNS_MIN_PIXELS`], or more runs than the buffer held (one per 8 pixels).
    Whole,
}

/// What [`Gpu::read_labels`] brings back.
pub(crate) struct LabelsBack {
    /// The label image, one word per pixel.
    pub labels: Vec<u32>,
    /// The values image at the labelled pixels (0 elsewhere), when one was given.
    pub values: Option<Vec<u32>>,
    /// The other buffers' words, in order.
    pub also: Vec<Vec<u32>>,
    /// How the labels came back.
    pub how: LabelReadback,
}

/// What [`Gpu::labels_round_trip`] brings back: the labels, the values at the labelled
/// pixels (when given), and how the labels came back.
pub type RoundTrip = (Image<u32>, Option<Image<u32>>, LabelReadback);

/// Below this many pixels a label image comes back whole: the count's round trip would
/// cost more than the bytes it saves.
pub const RUNS_MIN_PIXELS: usize = 1 << 16;

/// Expands `runs` (first pixel, length, label, and with `values` where the run's values
/// start in `packed`; any order) into `out` and `values`, which are zero.
fn expand_runs(
    runs: &[u32],
    out: &mut [u32],
    mut values: Option<(&mut [u32], &[u32])>,
) -> Result<(), String> {
    let n = out.len();
    let stride = if values.is_some() { 4 } else { 3 };
    for r in runs.chunks_exact(stride) {
        let (i, len) = (r[0] as usize, r[1] as usize);
        let outside =
            || format!("a run of {len} pixels from pixel {i} does not lie in the image of {n}");
        match out.get_mut(i..i.saturating_add(len)) {
            Some(dst) if len > 0 => dst.fill(r[2]),
            _ => return Err(outside()),
        }
        if let Some((dst, packed)) = values.as_mut() {
            let v = r[3] as usize;
            match (
                dst.get_mut(i..i + len),
                packed.get(v..v.saturating_add(len)),
            ) {
                (Some(d), Some(src)) => d.copy_from_slice(src),
                _ => {
                    return Err(format!(
                        "the values of a run of {len} pixels from pixel {i} lie outside the \
                         {} words that came back",
                        packed.len()
                    ))
                }
            }
        }
    }
    Ok(())
}

impl Gpu {
    /// Reads label images back as runs when `on` (the default), else one word per pixel.
    /// The labels are identical either way; this is for comparing the two.
    pub fn set_label_runs(&self, on: bool) {
        self.label_runs
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Submits `enc` and reads back the `w × h` label image in `labels` (as runs where that
    /// pays, see the module docs), with `values` (another image of one word per pixel and
    /// the number of labelled pixels) at the labelled pixels only, and each of `also`
    /// (`n_words` each, as `submit_and_read`). `labels` (and the values) must hold the
    /// image in their first `w · h` words, with `w · h` below 2³².
    pub(crate) fn read_labels(
        &self,
        mut enc: wgpu::CommandEncoder,
        labels: &wgpu::Buffer,
        (w, h): (usize, usize),
        values: Option<(&wgpu::Buffer, usize)>,
        also: &[(&wgpu::Buffer, usize)],
    ) -> Result<LabelsBack, String> {
        let n = w * h;
        let on = self.label_runs.load(std::sync::atomic::Ordering::Relaxed);
        // One word per pixel: labels, values, then the rest.
        let whole = |enc: wgpu::CommandEncoder, also: &[(&wgpu::Buffer, usize)]| {
            let mut reads = vec![(labels, n)];
            reads.extend(values.map(|(v, _)| (v, n)));
            reads.extend_from_slice(also);
            let mut back = self.submit_and_read(enc, &reads)?.into_iter();
            let labels = back.next().unwrap_or_default();
            // The values at the labelled pixels only, as the runs give them.
            let values = values.map(|_| {
                let mut v = back.next().unwrap_or_default();
                for (v, &l) in v.iter_mut().zip(&labels) {
                    if l == 0 {
                        *v = 0;
                    }
                }
                v
            });
            Ok::<_, String>((labels, values, back.collect::<Vec<_>>()))
        };
        if !on || n < RUNS_MIN_PIXELS {
            let (labels, values, also) = whole(enc, also)?;
            return Ok(LabelsBack {
                labels,
                values,
                also,
                how: LabelReadback::Whole,
            });
        }
        // Runs save bytes below one run per 3 pixels; the buffer holds one per 8 (1.5 or 2
        // bytes per pixel on the device), within one binding.
        let stride = if values.is_some() { 4 } else { 3 };
        let cap = (n / 8)
            .min((self.max_binding / (4 * stride as u64)) as usize)
            .max(1);
        let value_cap = values.map_or(0, |(_, k)| k.max(1));
        let counter = self.zeroed(2);
        let runs = self.zeroed(stride * cap);
        let packed = self.zeroed(value_cap);
        let unused = self.zeroed(1);
        let params = self.uniform([w as u32, h as u32, cap as u32, value_cap as u32]);
        let src = values.map_or(&unused, |(v, _)| v);
        let g = self.bind(&RUNS, &[&params, labels, &counter, &runs, src, &packed]);
        self.dispatch(&mut enc, &RUNS, "encode", &g, groups_2d(w, h));
        let mut reads = vec![(&counter, 2)];
        reads.extend_from_slice(also);
        let mut back = self.submit_and_read(enc, &reads)?;
        let also_back = back.split_off(1.min(back.len()));
        let c = first_result(back);
        let (count, spanned) = (
            c.first().copied().unwrap_or(0) as usize,
            c.get(1).copied().unwrap_or(0) as usize,
        );
        if count > cap || (values.is_some() && spanned > value_cap) {
            let (labels, values, _) = whole(self.encoder(), &[])?;
            return Ok(LabelsBack {
                labels,
                values,
                also: also_back,
                how: LabelReadback::Whole,
            });
        }
        let mut out = vec![0u32; n];
        let mut out_values = values.map(|_| vec![0u32; n]);
        if count > 0 {
            let mut reads = vec![(&runs, stride * count)];
            if values.is_some() {
                reads.push((&packed, spanned));
            }
            let mut words = self.submit_and_read(self.encoder(), &reads)?.into_iter();
            let runs = words.next().unwrap_or_default();
            let packed = words.next().unwrap_or_default();
            if runs.len() != stride * count {
                return Err(format!(
                    "{} words of runs came back, {} expected",
                    runs.len(),
                    stride * count
                ));
            }
            let v = out_values.as_deref_mut().map(|d| (d, packed.as_slice()));
            expand_runs(&runs, &mut out, v)?;
        }
        Ok(LabelsBack {
            labels: out,
            values: out_values,
            also: also_back,
            how: LabelReadback::Runs(count),
        })
    }

    /// A label image (and a values image of the same size) up and back down through the
    /// readback every labelling uses, and how it came back: the values come back at the
    /// labelled pixels, 0 elsewhere. `room`: the value words the device makes room for
    /// (default: one per labelled pixel; fewer sends the image back whole). For tests and
    /// benches of the readback itself.
    #[doc(hidden)]
    pub fn labels_round_trip(
        &self,
        labels: ImageView<u32>,
        values: Option<ImageView<u32>>,
        room: Option<usize>,
    ) -> Result<RoundTrip, Error> {
        const K: &str = "runs";
        let (w, h) = (labels.width(), labels.height());
        if values.is_some_and(|v| (v.width(), v.height()) != (w, h)) {
            return Err(self.device_error(K, "the values image differs in size from the labels"));
        }
        if labels.is_empty() {
            let v = values.map(|_| Image::new(w, h, 0));
            return Ok((Image::new(w, h, 0), v, LabelReadback::Whole));
        }
        self.check_fits(K, w, h, w * h)?;
        if (w * h) as u64 >= u64::from(u32::MAX) / 2 {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let rows = |img: ImageView<u32>| -> Vec<u32> {
            (0..h).flat_map(|r| img.row(r).iter().copied()).collect()
        };
        let data = rows(labels);
        let labelled = room.unwrap_or_else(|| data.iter().filter(|&&l| l != 0).count());
        let back = self.scoped(K, || {
            let buffer = self.storage(&data);
            let v = values.map(|v| self.storage(&rows(v)));
            let v = v.as_ref().map(|b| (b, labelled));
            self.read_labels(self.encoder(), &buffer, (w, h), v, &[])
        })?;
        let image = |d: Vec<u32>| Image::from_vec(w, h, d).map_err(|e| self.device_error(K, e));
        let v = back.values.map(image).transpose()?;
        Ok((image(back.labels)?, v, back.how))
    }
}

#[cfg(test)]
mod tests {
    use super::expand_runs;

    #[test]
    fn runs_expand_in_any_order_and_outside_runs_are_errors() {
        let mut out = vec![0u32; 10];
        expand_runs(&[7, 3, 5, 0, 2, 9, 4, 1, 1], &mut out, None).unwrap();
        assert_eq!(out, [9, 9, 0, 0, 1, 0, 0, 5, 5, 5]);
        let mut out = vec![0u32; 10];
        assert!(expand_runs(&[8, 3, 1], &mut out, None).is_err());
        assert!(expand_runs(&[10, 1, 1], &mut out, None).is_err());
        assert!(expand_runs(&[2, 0, 1], &mut out, None).is_err());
        assert!(expand_runs(&[u32::MAX, u32::MAX, 1], &mut out, None).is_err());
        // With values: each run's values from where it says they start.
        let (mut out, mut values) = (vec![0u32; 10], vec![0u32; 10]);
        let packed = [10, 11, 12, 20, 21];
        let runs = [7, 3, 5, 0, 0, 2, 9, 3];
        expand_runs(&runs, &mut out, Some((&mut values, &packed))).unwrap();
        assert_eq!(out, [9, 9, 0, 0, 0, 0, 0, 5, 5, 5]);
        assert_eq!(values, [20, 21, 0, 0, 0, 0, 0, 10, 11, 12]);
        let mut values = vec![0u32; 10];
        let runs = [7, 3, 5, 3];
        assert!(expand_runs(&runs, &mut out, Some((&mut values, &packed))).is_err());
    }
}
