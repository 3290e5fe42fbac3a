//! Grey erosion, dilation and opening with a (2r+1)² square (`rank.wgsl`): the running
//! extrema of `ipscope_core::ops::rank` along the rows, then down the columns. Only
//! comparisons, so the values are the CPU's (a zero's sign aside: `f32::min` may return
//! either zero of two, the kernel returns the first).

use ipscope_image::{Image, ImageView};

use crate::device::{groups_1d, groups_2d, Gpu};
use crate::kernels::RANK;
use crate::ops::{first_result, floats};
use crate::Error;

/// The operation of one pass: the minimum (erosion) or the maximum (dilation).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extremum {
    Min = 0,
    Max = 1,
}

/// The scratch buffers of the passes over one `w × h` image with radius `r`, shared by
/// all of them (each pass finishes before the next starts).
pub(crate) struct RankScratch {
    g: wgpu::Buffer,
    hs: wgpu::Buffer,
    tmp: wgpu::Buffer,
}

/// Words of one scratch buffer (a padded line for every line) of either direction.
fn scratch_words(w: usize, h: usize, r: usize) -> u64 {
    let (w, h, r) = (w as u64, h as u64, r as u64);
    ((w + 2 * r) * h).max((h + 2 * r) * w)
}

impl Gpu {
    /// Whether the passes over a `w × h` image with radius `r` fit one binding each.
    pub(crate) fn rank_fits(&self, w: usize, h: usize, r: usize) -> bool {
        scratch_words(w, h, r) * 4 <= self.max_binding
            && (w as u64) * (h as u64) * 4 <= self.max_binding
    }

    /// The scratch of the passes over a `w × h` image with radius `r`; `tmp`: a free image
    /// of `w × h` words to use between the directions (a new one when `None`).
    fn rank_scratch(&self, w: usize, h: usize, r: usize, tmp: Option<wgpu::Buffer>) -> RankScratch {
        let words = scratch_words(w, h, r) as usize;
        RankScratch {
            g: self.zeroed(words),
            hs: self.zeroed(words),
            tmp: tmp.unwrap_or_else(|| self.zeroed(w * h)),
        }
    }

    /// Records one direction's pass: `n` pixels a line, `lines` lines, element `t` of line
    /// `l` at `l * line_stride + t * step`, from `src` into `dst`.
    #[allow(clippy::too_many_arguments)]
    fn encode_rank_pass(
        &self,
        enc: &mut wgpu::CommandEncoder,
        s: &RankScratch,
        (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
        (n, lines, step, line_stride): (usize, usize, usize, usize),
        r: usize,
        op: Extremum,
    ) {
        let m = n + 2 * r;
        let params = self.uniform([
            n as u32,
            lines as u32,
            step as u32,
            line_stride as u32,
            r as u32,
            op as u32,
            m as u32,
            0,
        ]);
        let group = self.bind(&RANK, &[&params, src, &s.g, &s.hs, dst]);
        let blocks = m.div_ceil(2 * r + 1);
        self.dispatch(enc, &RANK, "blocks", &group, groups_2d(lines, blocks));
        self.dispatch(enc, &RANK, "combine", &group, groups_2d(lines, n));
    }

    /// Records the extremum of the `w × h` image in `src` over the (2r+1)² square into
    /// `dst` (rows, then columns; `s.tmp` between).
    pub(crate) fn encode_rank(
        &self,
        enc: &mut wgpu::CommandEncoder,
        s: &RankScratch,
        (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
        (w, h): (usize, usize),
        r: usize,
        op: Extremum,
    ) {
        self.encode_rank_pass(enc, s, (src, &s.tmp), (w, h, 1, w), r, op);
        self.encode_rank_pass(enc, s, (&s.tmp, dst), (h, w, w, 1), r, op);
    }

    /// Records the grey opening (erosion, then dilation) of the `w × h` image in `src` with
    /// the (2r+1)² square; the result's buffer (call inside `scoped`). `tmp`: a free image of
    /// `w × h` words to work in (a new one when `None`).
    pub(crate) fn encode_opening(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        (w, h): (usize, usize),
        r: usize,
        tmp: Option<wgpu::Buffer>,
    ) -> wgpu::Buffer {
        let s = self.rank_scratch(w, h, r, tmp);
        // One image for the erosion and the opening: the dilation's row pass reads the
        // erosion into `s.tmp` before its column pass overwrites it.
        let out = self.zeroed(w * h);
        self.encode_rank(enc, &s, (src, &out), (w, h), r, Extremum::Min);
        self.encode_rank(enc, &s, (&out, &out), (w, h), r, Extremum::Max);
        out
    }

    /// Records `dst[i] -= bg[i]` where `bg[i]` is finite, for the first `n` pixels.
    pub(crate) fn encode_subtract(
        &self,
        enc: &mut wgpu::CommandEncoder,
        bg: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        n: usize,
    ) {
        let groups = groups_1d(n, 256);
        let row = groups.0 as usize * 256;
        let params = self.uniform([n as u32, row as u32, 0, 0, 0, 0, 0, 0]);
        let unused = (self.zeroed(1), self.zeroed(1));
        let group = self.bind(&RANK, &[&params, bg, &unused.0, &unused.1, dst]);
        self.dispatch(enc, &RANK, "subtract", &group, groups);
    }

    /// `ipscope_core::ops::rank::open` on the GPU: the grey opening with the (2r+1)²
    /// square, the CPU's values (see the module docs). A radius beyond the image is the
    /// image's size (the window already covers it). An image whose passes do not fit one
    /// binding is processed in bands of rows with a halo of 2r rows (the erosion's r and
    /// the dilation's), so the result is the whole image's.
    pub fn grey_opening(&self, src: ImageView<f32>, r: usize) -> Result<Image<f32>, Error> {
        const K: &str = "rank";
        let (w, h) = (src.width(), src.height());
        if src.is_empty() || r == 0 {
            return Ok(src.to_image());
        }
        if w as u64 > u64::from(u32::MAX) / 4 || h as u64 > u64::from(u32::MAX) / 4 {
            return Err(self.too_large(K, w, h, "more pixels than u32 indices".into()));
        }
        let r = r.min(w.max(h));
        if self.rank_fits(w, h, r) {
            return self.in_bands(K, src, h, 0, |data, rows| {
                self.opening_tile(data, w, rows, r)
            });
        }
        // Rows per band with its halos: both directions' scratch within one binding.
        let words = self.max_binding / 4;
        let by_rows = words / (w as u64 + 2 * r as u64);
        let by_columns = (words / w as u64).saturating_sub(2 * r as u64);
        let rows = by_rows.min(by_columns) as usize;
        if rows < 4 * r + 1 {
            return Err(self.too_large(
                K,
                w,
                h,
                format!(
                    "one band of {} rows needs {} bytes per buffer, the device binds at most {}",
                    4 * r + 1,
                    scratch_words(w, 4 * r + 1, r) * 4,
                    self.max_binding
                ),
            ));
        }
        // Halos of 2r rows: the erosion's r, then the dilation's.
        self.in_bands(K, src, rows - 4 * r, 2 * r, |data, rows| {
            self.opening_tile(data, w, rows, r)
        })
    }

    fn opening_tile(&self, data: &[f32], w: usize, h: usize, r: usize) -> Result<Vec<f32>, Error> {
        self.scoped("rank", || {
            let src = self.storage(data);
            let mut enc = self.encoder();
            let dst = self.encode_opening(&mut enc, &src, (w, h), r, None);
            let out = self.submit_and_read(enc, &[(&dst, w * h)])?;
            Ok(floats(first_result(out)))
        })
    }
}
