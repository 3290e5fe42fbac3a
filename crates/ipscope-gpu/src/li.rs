//! Li's minimum cross-entropy threshold on the GPU: each step of the iteration is one
//! reduction pass (sums and count of the finite pixels above and at or below the current
//! threshold), the few scalar operations between steps run on the host in f64.

use ipscope_image::ImageView;

use crate::device::Gpu;
use crate::kernels::LI;
use crate::Error;

/// Largest difference between the GPU's and the CPU's Li threshold, relative to the image's
/// finite range (max − min).
///
/// The partition of the pixels at a given threshold is exact (the host chooses the f32
/// comparison value so that `v > above` holds exactly for the pixels the CPU puts above).
/// The sums are not: each invocation adds its pixels' `v − min` in f32, each workgroup adds
/// its 256 sums in a fixed tree, and the host adds the workgroup sums in f64, where the CPU
/// takes numpy's pairwise sum in f64. The means then differ by a few f32 roundings
/// (≈ 1e-7 relative), and the iteration stops at the fixed point (the partition no longer
/// changes) rather than at the CPU's "moved less than half the smallest gap between
/// distinct values", a difference below that half gap. Measured: the identical f32
/// threshold on the 8 parity images and 6 DSB2018 images.
pub const LI_TOLERANCE: f64 = 1e-5;

/// Largest workgroups per dispatch: each invocation loops over its share of the pixels, so
/// the partial sums read back per step stay small.
const MAX_GROUPS: usize = 4096;

/// Order of the pixels above `t` (in the shifted space `v − min`): the largest f32 `a`
/// with `f64(a) − min ≤ t`, so that `v > a ⟺ f64(v) − min > t` for every f32 `v`.
fn above_value(t: f64, min: f32) -> f32 {
    let shifted = |a: f32| f64::from(a) - f64::from(min);
    let mut a = (t + f64::from(min)) as f32;
    if a.is_nan() {
        return f32::INFINITY;
    }
    while a > f32::NEG_INFINITY && shifted(a) > t {
        a = a.next_down();
    }
    while a < f32::INFINITY && shifted(a.next_up()) <= t {
        a = a.next_up();
    }
    a
}

struct Chunk {
    params: wgpu::Buffer,
    partials: wgpu::Buffer,
    group: wgpu::BindGroup,
    len: usize,
    groups: usize,
}

impl Gpu {
    /// `ipscope_core::ops::threshold::li` on the GPU, within [`LI_TOLERANCE`] × (max − min)
    /// of it. Images larger than one storage binding are summed in chunks, each in its own
    /// buffer, the chunks' partial sums added on the host in order.
    pub fn li(&self, img: ImageView<f32>) -> Result<Option<f32>, Error> {
        const K: &str = "li";
        let (w, h) = (img.width(), img.height());
        if img.is_empty() {
            return Ok(None);
        }
        if w > u32::MAX as usize / 2 || h > u32::MAX as usize / 2 {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let data: Vec<f32> = img.rows().flat_map(|r| r.iter().copied()).collect();
        let (mut lo, mut hi, mut finite) = (f32::INFINITY, f32::NEG_INFINITY, 0u64);
        for &v in &data {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
                finite += 1;
            }
        }
        if finite == 0 || lo == hi {
            return Ok(None);
        }
        let per_chunk = (self.max_binding / 4).min(u64::from(u32::MAX) / 2) as usize;
        if per_chunk < 256 {
            return Err(self.too_large(K, w, h, "storage bindings under 1 KiB".into()));
        }
        let buffers: Vec<(wgpu::Buffer, usize)> = data
            .chunks(per_chunk)
            .map(|part| (self.storage(part), part.len()))
            .collect();
        let buffers: Vec<(&wgpu::Buffer, usize)> = buffers.iter().map(|(b, n)| (b, *n)).collect();
        self.li_of(&buffers, lo)
    }

    /// [`Gpu::li`] of f32 pixels already on the device, in `chunks` of (buffer, pixel
    /// count) each within one binding and below 2^31 pixels, whose smallest finite value is
    /// `lo` (and which are not all equal).
    pub(crate) fn li_of(
        &self,
        buffers: &[(&wgpu::Buffer, usize)],
        lo: f32,
    ) -> Result<Option<f32>, Error> {
        self.scoped("li", || {
            let chunks: Vec<Chunk> = buffers
                .iter()
                .map(|&(src, len)| {
                    let groups = len.div_ceil(256).clamp(1, MAX_GROUPS);
                    let params = self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("li params"),
                        size: 16,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    let partials = self.zeroed(groups * 3);
                    let group = self.bind(&LI, &[&params, src, &partials]);
                    Chunk {
                        params,
                        partials,
                        group,
                        len,
                        groups,
                    }
                })
                .collect();
            // One reduction: (sum of v − min above, at or below, count above).
            let step = |above: f32| -> Result<(f64, f64, u64), String> {
                let mut enc = self.encoder();
                for c in &chunks {
                    let words: [u32; 4] = [
                        c.len as u32,
                        (c.groups * 256) as u32,
                        above.to_bits(),
                        lo.to_bits(),
                    ];
                    self.queue
                        .write_buffer(&c.params, 0, bytemuck::cast_slice(&words));
                    self.dispatch(
                        &mut enc,
                        &LI,
                        "partial_sums",
                        &c.group,
                        (c.groups as u32, 1),
                    );
                }
                let reads: Vec<(&wgpu::Buffer, usize)> =
                    chunks.iter().map(|c| (&c.partials, c.groups * 3)).collect();
                let out = self.submit_and_read(enc, &reads)?;
                let (mut fore, mut back, mut count) = (0f64, 0f64, 0u64);
                for part in &out {
                    for p in part.chunks_exact(3) {
                        fore += f64::from(f32::from_bits(p[0]));
                        back += f64::from(f32::from_bits(p[1]));
                        count += u64::from(p[2]);
                    }
                }
                Ok((fore, back, count))
            };
            // As the reference: start from the mean, iterate t = (μb − μf) / (ln μb − ln μf).
            let (all, _, n) = step(f32::NEG_INFINITY)?;
            let mut t_next = all / n as f64;
            let mut previous: Option<u64> = None;
            for _ in 0..10_000 {
                let t_curr = t_next;
                if !t_curr.is_finite() {
                    break;
                }
                let (fore, back, n_fore) = step(above_value(t_curr, lo))?;
                let n_back = n - n_fore;
                // The same partition as the step that gave `t_curr`: it is the fixed point.
                if n_fore == 0 || n_back == 0 || previous == Some(n_fore) {
                    break;
                }
                previous = Some(n_fore);
                let (mean_fore, mean_back) = (fore / n_fore as f64, back / n_back as f64);
                if mean_back == 0.0 {
                    break;
                }
                t_next = (mean_back - mean_fore) / (mean_back.ln() - mean_fore.ln());
                if t_next == t_curr {
                    break;
                }
            }
            let t = t_next + f64::from(lo);
            Ok(t.is_finite().then_some(t as f32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::above_value;

    #[test]
    fn above_value_splits_exactly_where_the_f64_shift_does() {
        for (t, min) in [
            (0.5f64, 0.0f32),
            (0.123_456_789, 0.1),
            (1e-9, 0.3),
            (-1.0, 0.0),
            (1000.25, -7.5),
        ] {
            let a = above_value(t, min);
            let shifted = |v: f32| f64::from(v) - f64::from(min);
            assert!(shifted(a) <= t, "{t} {min}: {a}");
            assert!(shifted(a.next_up()) > t, "{t} {min}: {a}");
        }
        assert_eq!(above_value(f64::NAN, 0.0), f32::INFINITY);
    }
}
