//! Label images read back as runs along their rows (`runs.wgsl`): three words per run
//! instead of one per pixel. A nuclei field is mostly background, and each object crosses a
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

/// What [`Gpu::read_labels`] returns: the labels, the other buffers' words, and how the
/// labels came back.
pub(crate) type LabelsBack = (Vec<u32>, Vec<Vec<u32>>, LabelReadback);

/// Below this many pixels a label image comes back whole: the count's round trip would
/// cost more than the bytes it saves.
pub const RUNS_MIN_PIXELS: usize = 1 << 16;

/// Expands `runs` (first pixel, length, label; any order) into `out`, which is zero.
fn expand_runs(runs: &[u32], out: &mut [u32]) -> Result<(), String> {
    let n = out.len();
    for r in runs.chunks_exact(3) {
        let (i, len) = (r[0] as usize, r[1] as usize);
        match out.get_mut(i..i.saturating_add(len)) {
            Some(dst) if len > 0 => dst.fill(r[2]),
            _ => {
                return Err(format!(
                    "a run of {len} pixels from pixel {i} does not lie in the image of {n}"
                ))
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
    /// pays, see the module docs) and then each of `also` (`n_words` each, as
    /// `submit_and_read`). `labels` must hold the image in its first `w · h` words, with
    /// `w · h` below 2³².
    pub(crate) fn read_labels(
        &self,
        mut enc: wgpu::CommandEncoder,
        labels: &wgpu::Buffer,
        (w, h): (usize, usize),
        also: &[(&wgpu::Buffer, usize)],
    ) -> Result<LabelsBack, String> {
        let n = w * h;
        let on = self.label_runs.load(std::sync::atomic::Ordering::Relaxed);
        if !on || n < RUNS_MIN_PIXELS {
            let mut reads = vec![(labels, n)];
            reads.extend_from_slice(also);
            let mut back = self.submit_and_read(enc, &reads)?;
            let rest = back.split_off(1.min(back.len()));
            return Ok((first_result(back), rest, LabelReadback::Whole));
        }
        // Runs save bytes below one run per 3 pixels; the buffer holds one per 8 (1.5 bytes
        // per pixel on the device), within one binding.
        let cap = (n / 8).min((self.max_binding / 12) as usize).max(1);
        let counter = self.zeroed(1);
        let runs = self.zeroed(3 * cap);
        let params = self.uniform([w as u32, h as u32, cap as u32, 0]);
        let g = self.bind(&RUNS, &[&params, labels, &counter, &runs]);
        self.dispatch(&mut enc, &RUNS, "encode", &g, groups_2d(w, h));
        let mut reads = vec![(&counter, 1)];
        reads.extend_from_slice(also);
        let mut back = self.submit_and_read(enc, &reads)?;
        let rest = back.split_off(1.min(back.len()));
        let count = first_result(back).first().copied().unwrap_or(0) as usize;
        if count > cap {
            let whole = first_result(self.submit_and_read(self.encoder(), &[(labels, n)])?);
            return Ok((whole, rest, LabelReadback::Whole));
        }
        let mut out = vec![0u32; n];
        if count > 0 {
            let words = first_result(self.submit_and_read(self.encoder(), &[(&runs, 3 * count)])?);
            if words.len() != 3 * count {
                return Err(format!(
                    "{} words of runs came back, {} expected",
                    words.len(),
                    3 * count
                ));
            }
            expand_runs(&words, &mut out)?;
        }
        Ok((out, rest, LabelReadback::Runs(count)))
    }

    /// A label image up and back down through the readback every labelling uses, and how
    /// it came back. For tests and benches of the readback itself.
    #[doc(hidden)]
    pub fn labels_round_trip(
        &self,
        labels: ImageView<u32>,
    ) -> Result<(Image<u32>, LabelReadback), Error> {
        const K: &str = "runs";
        let (w, h) = (labels.width(), labels.height());
        if labels.is_empty() {
            return Ok((Image::new(w, h, 0), LabelReadback::Whole));
        }
        self.check_fits(K, w, h, w * h)?;
        if (w * h) as u64 >= u64::from(u32::MAX) {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let data: Vec<u32> = (0..h).flat_map(|r| labels.row(r).iter().copied()).collect();
        let (out, how) = self.scoped(K, || {
            let buffer = self.storage(&data);
            let (out, _, how) = self.read_labels(self.encoder(), &buffer, (w, h), &[])?;
            Ok((out, how))
        })?;
        let img = Image::from_vec(w, h, out).map_err(|e| self.device_error(K, e))?;
        Ok((img, how))
    }
}

#[cfg(test)]
mod tests {
    use super::expand_runs;

    #[test]
    fn runs_expand_in_any_order_and_outside_runs_are_errors() {
        let mut out = vec![0u32; 10];
        expand_runs(&[7, 3, 5, 0, 2, 9, 4, 1, 1], &mut out).unwrap();
        assert_eq!(out, [9, 9, 0, 0, 1, 0, 0, 5, 5, 5]);
        let mut out = vec![0u32; 10];
        assert!(expand_runs(&[8, 3, 1], &mut out).is_err());
        assert!(expand_runs(&[10, 1, 1], &mut out).is_err());
        assert!(expand_runs(&[2, 0, 1], &mut out).is_err());
        assert!(expand_runs(&[u32::MAX, u32::MAX, 1], &mut out).is_err());
    }
}
