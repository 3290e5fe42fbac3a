//! Seeded watershed on the GPU: Jacobi relaxation of flooding keys (see
//! `kernels/watershed.wgsl`), by default repeated inside each tile in workgroup memory,
//! until a batch of steps changes nothing; in bands of rows with halos exchanged between
//! batches when the image's state exceeds one storage binding.

use ipscope_image::{Image, ImageView, Labels};

use crate::device::{groups_2d, Gpu};
use crate::kernels::WATERSHED;
use crate::ops::BATCH;
use crate::Error;

/// Largest fraction of the flooded pixels (labelled by the CPU or the GPU) that the GPU may
/// label differently from `ipscope_core::ops::watershed::watershed`.
///
/// Every pixel gets the cheapest flooding cost of the reference (the largest elevation on
/// the best path from a marker), so the basins agree wherever one basin is strictly
/// cheaper. Where two basins reach a pixel at the same cost, the reference decides by the
/// order in which its priority queue pushed them (first come, first served, across the whole
/// image); the GPU by the steps since each path last climbed, then by the cost and steps of
/// the pixel that lifted the path onto its level (the reference floods a plateau breadth
/// first behind its entries, in the order they were pushed), then by the raster order of the
/// markers the paths started from (the order the reference queues them in). Those ties are plateaus and ridges where basins meet,
/// so differences are thin lines along the boundaries. Measured: at most 0.38 % on the
/// synthetic parity cases (none on touching discs, a noise field or a flat plateau), 0.125 %
/// on six DSB2018 images.
pub const WATERSHED_TOLERANCE: f64 = 0.005;

/// Smallest intersection over union of an object with its counterpart (same marker label)
/// between the GPU and the CPU watershed, for objects of at least 20 pixels (measured: 0.83
/// on the parity blob fields; every DSB2018 object matched at IoU > 0.5).
pub const WATERSHED_MIN_IOU: f64 = 0.8;

/// Monotone map from f32 to u32 (NaN floods last, as +inf, like the reference).
fn key(v: f32) -> u32 {
    let v = if v.is_nan() { f32::INFINITY } else { v };
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Dispatches of `relax_local` per round (even: the state ends where it started).
const LOCAL_BATCH: usize = 4;

/// Outside the mask (above every elevation key, +inf included).
const OUTSIDE: u32 = u32::MAX;

/// Words per pixel of the relaxation state: cost, steps, the cost and steps of the pixel that
/// lifted the path onto its level, the
/// marker's raster index, label.
const S: usize = 6;

impl Gpu {
    /// `ipscope_core::ops::watershed::watershed` on the GPU: the same costs, labels within
    /// [`WATERSHED_TOLERANCE`] of the reference (see there). Labels keep the marker values;
    /// pixels outside the mask or out of every marker's reach are 0.
    pub fn watershed(
        &self,
        elevation: ImageView<f32>,
        markers: &Labels,
        mask: Option<ImageView<bool>>,
    ) -> Result<Labels, Error> {
        self.watershed_rounds(elevation, markers, mask)
            .map(|(labels, _)| labels)
    }

    /// Relaxes the watershed tile by tile in workgroup memory when `on` (the default): each
    /// dispatch repeats the step inside every 16 × 16 tile until the tile stops changing, so
    /// a front crosses a tile per dispatch instead of a pixel. Off: one step per dispatch.
    /// The labels are identical either way (the relaxation's fixed point does not depend on
    /// the order of its steps); this is for comparing their speed.
    pub fn set_local_watershed(&self, on: bool) {
        self.local_watershed
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Gpu::watershed`], and how much relaxing it took.
    #[doc(hidden)]
    pub fn watershed_rounds(
        &self,
        elevation: ImageView<f32>,
        markers: &Labels,
        mask: Option<ImageView<bool>>,
    ) -> Result<(Labels, Relaxation), Error> {
        const K: &str = "watershed";
        let (w, h) = (elevation.width(), elevation.height());
        let shape_error = |what: &str, (mw, mh): (usize, usize)| {
            self.device_error(K, format!("{what} are {mw}x{mh}, the elevation is {w}x{h}"))
        };
        if (markers.width(), markers.height()) != (w, h) {
            return Err(shape_error("markers", (markers.width(), markers.height())));
        }
        if let Some(m) = mask {
            if (m.width(), m.height()) != (w, h) {
                return Err(shape_error("mask", (m.width(), m.height())));
            }
        }
        let present = markers
            .image()
            .as_slice()
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        let count = present.max(markers.count());
        if elevation.is_empty() {
            return Ok((
                Labels::new(Image::new(w, h, 0u32), count),
                Relaxation::default(),
            ));
        }
        if w.saturating_mul(h) > u32::MAX as usize {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let bands = self.watershed_bands(w, h)?;
        let inside = |r: usize, c: usize| mask.is_none_or(|m| m.get(r, c));
        let mut elev = Vec::with_capacity(w * h);
        for r in 0..h {
            let erow = elevation.row(r);
            for (c, &v) in erow.iter().enumerate() {
                elev.push(if inside(r, c) { key(v) } else { OUTSIDE });
            }
        }
        let marks = markers.image().as_slice();
        let row_bytes = (w * S * 4) as u64;
        let out = self.scoped(K, || {
            let changed = self.zeroed(1);
            let mut state = Vec::with_capacity(bands.len());
            let mut enc = self.encoder();
            for band in &bands {
                let (lo, hi) = (band.lo, band.hi);
                let params = self.uniform([
                    w as u32,
                    (hi - lo) as u32,
                    (band.y0 - lo) as u32,
                    (band.y1 - lo) as u32,
                    lo as u32,
                    0,
                    0,
                    0,
                ]);
                let eb = self.storage(&elev[lo * w..hi * w]);
                let a = self.zeroed((hi - lo) * w * S);
                let b = self.zeroed((hi - lo) * w * S);
                let ab = self.bind(&WATERSHED, &[&params, &eb, &a, &b, &changed]);
                let ba = self.bind(&WATERSHED, &[&params, &eb, &b, &a, &changed]);
                // The markers go up in the first words of `b`; `init` builds the state in
                // `a`, halo rows included (their starting state is the neighbour's).
                self.queue
                    .write_buffer(&b, 0, bytemuck::cast_slice(&marks[lo * w..hi * w]));
                self.dispatch(&mut enc, &WATERSHED, "init", &ba, groups_2d(w, hi - lo));
                state.push((a, b, ab, ba));
            }
            self.submit(enc)?;
            // Tile by tile a dispatch carries a front across a tile, so a round needs fewer
            // of them (a basin a few tiles across settles in one round).
            let (step, batch) = if self
                .local_watershed
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                ("relax_local", LOCAL_BATCH)
            } else {
                ("relax", BATCH)
            };
            let mut done = Relaxation::default();
            loop {
                done.rounds += 1;
                done.dispatches += batch;
                let mut enc = self.encoder();
                enc.clear_buffer(&changed, 0, None);
                for (band, (_, _, ab, ba)) in bands.iter().zip(&state) {
                    let groups = groups_2d(w, band.hi - band.lo);
                    // An even number of steps: the state ends in `a`.
                    for _ in 0..batch / 2 {
                        self.dispatch(&mut enc, &WATERSHED, step, ab, groups);
                        self.dispatch(&mut enc, &WATERSHED, step, ba, groups);
                    }
                }
                // Each band's edge rows into its neighbours' halos, for the next round.
                for k in 1..bands.len() {
                    let (up, down) = (&bands[k - 1], &bands[k]);
                    let (ua, da) = (&state[k - 1].0, &state[k].0);
                    let up_last = (up.y1 - 1 - up.lo) as u64;
                    let down_first = (down.y0 - down.lo) as u64;
                    enc.copy_buffer_to_buffer(ua, up_last * row_bytes, da, 0, row_bytes);
                    let up_halo = (up.hi - 1 - up.lo) as u64;
                    enc.copy_buffer_to_buffer(
                        da,
                        down_first * row_bytes,
                        ua,
                        up_halo * row_bytes,
                        row_bytes,
                    );
                }
                let flag = self.submit_and_read(enc, &[(&changed, 1)])?;
                if flag[0][0] == 0 {
                    break;
                }
            }
            // Only the labels come back, in the first words of `b`.
            let mut enc = self.encoder();
            for (band, (_, _, ab, _)) in bands.iter().zip(&state) {
                let groups = groups_2d(w, band.hi - band.lo);
                self.dispatch(&mut enc, &WATERSHED, "extract", ab, groups);
            }
            let reads: Vec<(&wgpu::Buffer, usize)> = bands
                .iter()
                .zip(&state)
                .map(|(band, (_, b, _, _))| (b, (band.hi - band.lo) * w))
                .collect();
            let parts = self.submit_and_read(enc, &reads)?;
            let mut labels = Vec::with_capacity(w * h);
            for (band, part) in bands.iter().zip(&parts) {
                labels.extend_from_slice(&part[(band.y0 - band.lo) * w..(band.y1 - band.lo) * w]);
            }
            Ok((labels, done))
        })?;
        let (labels, done) = out;
        let img = Image::from_vec(w, h, labels).map_err(|e| self.device_error(K, e))?;
        Ok((Labels::new(img, count), done))
    }
}

/// How much relaxing a watershed took.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relaxation {
    /// Batches of relaxation dispatches, each ended by reading back whether anything
    /// changed (the last one changes nothing).
    pub rounds: usize,
    /// Relaxation steps dispatched (per band of rows when the image is banded).
    pub dispatches: usize,
}

/// One band of rows of the watershed: it owns rows `y0..y1` and holds `lo..hi`, one halo
/// row above and below where the image has one.
struct Band {
    y0: usize,
    y1: usize,
    lo: usize,
    hi: usize,
}

impl Gpu {
    /// The image as one band when its state fits one storage binding, else bands of rows
    /// whose state, halos included, does.
    ///
    /// Why the bands give the labels of one pass: every pixel's key is recomputed from its
    /// neighbours' (`relax`), and the iteration stops at a state where no key changes. The
    /// (cost, steps) part of a key is a monotone function of the neighbours' (a shortest
    /// path), so it falls to the same values in any order of updates, with halos that lag a
    /// round behind included; the rest of a key (the lifting key, the marker) is then fixed
    /// pixel by pixel along the neighbours that give the least (cost, steps), which are
    /// strictly cheaper or nearer the plateau's entry, so it is unique too. A round ends with
    /// the halos refreshed, and the host stops after a round in which no band changed: that
    /// state is a fixed point of the whole image, the same one a single band reaches.
    fn watershed_bands(&self, w: usize, h: usize) -> Result<Vec<Band>, Error> {
        let row_bytes = (w * S * 4) as u64;
        let max_rows = (self.max_binding / row_bytes) as usize;
        if max_rows >= h {
            return Ok(vec![Band {
                y0: 0,
                y1: h,
                lo: 0,
                hi: h,
            }]);
        }
        if max_rows < 3 {
            return Err(self.too_large(
                "watershed",
                w,
                h,
                format!(
                    "one band of a row and its two halos needs {} bytes per buffer, the \
                     device binds at most {}",
                    3 * row_bytes,
                    self.max_binding
                ),
            ));
        }
        let step = max_rows - 2;
        Ok((0..h)
            .step_by(step)
            .map(|y0| {
                let y1 = (y0 + step).min(h);
                Band {
                    y0,
                    y1,
                    lo: y0.saturating_sub(1),
                    hi: (y1 + 1).min(h),
                }
            })
            .collect())
    }
}
