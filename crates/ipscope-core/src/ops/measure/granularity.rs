//! CellProfiler's MeasureGranularity: a granular spectrum (pattern spectrum) per image and per
//! object.
//!
//! The image is subsampled (bilinear, factor [`GranularityParams::subsample`]), a background
//! estimated by a grey opening with a disk of radius [`GranularityParams::element_radius`] on a
//! further subsampled copy is subtracted (negative values clipped to 0), and then, for
//! `n = 1..=spectrum_length`, the image is eroded once more with the 3x3 cross and reconstructed
//! by dilation under the background-corrected image (an opening by reconstruction of growing
//! size). `Granularity_n` is the drop of the mean between steps `n - 1` and `n`, in percent of
//! the starting mean:
//!
//! - per image: means over the subsampled image; the start is the mean of the
//!   background-corrected image;
//! - per object: every reconstruction is interpolated back to full size (bilinear) and averaged
//!   over the object's pixels; the start is the object's mean of the original (scaled) image,
//!   as CellProfiler's `ObjectRecord` does.
//!
//! Interpolation follows `scipy.ndimage.map_coordinates(order=1)` on the same sample grids as
//! CellProfiler 4 / cp-measure, so the values agree with them to rounding. Cost: two disk
//! filters on a 1/16-size image, then per step one erosion and one reconstruction on a 1/4-size
//! (per axis) image plus one bilinear look-up per object pixel.

use std::collections::VecDeque;

use ipscope_image::{ImageView, Labels, Pixel};

/// CellProfiler's MeasureGranularity settings; the defaults are CellProfiler's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GranularityParams {
    /// Subsampling factor for the spectrum (CellProfiler default 0.25); 1 or more keeps the size.
    pub subsample: f64,
    /// Further subsampling factor for the background estimate (default 0.25).
    pub background_subsample: f64,
    /// Radius of the background opening's disk, in subsampled pixels (default 10).
    pub element_radius: usize,
    /// Number of spectrum steps, i.e. columns `Granularity_1..=n` (default 16).
    pub spectrum_length: usize,
}

impl Default for GranularityParams {
    fn default() -> Self {
        GranularityParams {
            subsample: 0.25,
            background_subsample: 0.25,
            element_radius: 10,
            spectrum_length: 16,
        }
    }
}

/// Granular spectra of one image and its objects, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Granularity {
    /// `Granularity_1..=n` of the whole image.
    pub image: Vec<f64>,
    /// `objects[i][k]` is `Granularity_{k+1}` of label `i + 1`; NaN for absent labels.
    pub objects: Vec<Vec<f64>>,
}

/// A row-major grid of f64.
struct Grid {
    w: usize,
    h: usize,
    v: Vec<f64>,
}

impl Grid {
    fn at(&self, r: usize, c: usize) -> f64 {
        self.v[r * self.w + c]
    }

    /// `map_coordinates(order=1, mode="constant", cval=0)` at (`y`, `x`); both are ≥ 0.
    fn bilinear(&self, y: f64, x: f64) -> f64 {
        let (y0, x0) = (y.floor(), x.floor());
        let (fy, fx) = (y - y0, x - x0);
        let (r0, c0) = (y0 as usize, x0 as usize);
        let get = |r: usize, c: usize| {
            if r < self.h && c < self.w {
                self.at(r, c)
            } else {
                0.0
            }
        };
        (1.0 - fy) * ((1.0 - fx) * get(r0, c0) + fx * get(r0, c0 + 1))
            + fy * ((1.0 - fx) * get(r0 + 1, c0) + fx * get(r0 + 1, c0 + 1))
    }

    /// Samples `(i * sy, j * sx)` for `i < h`, `j < w` (the grid `numpy.mgrid` gives).
    fn resample(&self, h: usize, w: usize, sy: f64, sx: f64) -> Grid {
        let mut v = Vec::with_capacity(h * w);
        for i in 0..h {
            for j in 0..w {
                v.push(self.bilinear(i as f64 * sy, j as f64 * sx));
            }
        }
        Grid { w, h, v }
    }

    /// Grey erosion (`min`) or dilation (`max`) with the given offsets; pixels outside the grid
    /// are ignored, which is what scikit-image's `mode="reflect"` amounts to for symmetric
    /// footprints.
    fn filter(&self, offsets: &[(isize, isize)], max: bool) -> Grid {
        let mut v = Vec::with_capacity(self.v.len());
        for r in 0..self.h {
            for c in 0..self.w {
                let mut acc = self.at(r, c);
                for &(dr, dc) in offsets {
                    let (rr, cc) = (r as isize + dr, c as isize + dc);
                    if rr < 0 || cc < 0 || rr >= self.h as isize || cc >= self.w as isize {
                        continue;
                    }
                    let x = self.at(rr as usize, cc as usize);
                    acc = if max { acc.max(x) } else { acc.min(x) };
                }
                v.push(acc);
            }
        }
        Grid {
            w: self.w,
            h: self.h,
            v,
        }
    }

    fn mean(&self) -> f64 {
        self.v.iter().sum::<f64>() / self.v.len() as f64
    }
}

/// Offsets of scikit-image's `disk(radius)`: `dr² + dc² ≤ radius²`.
fn disk(radius: usize) -> Vec<(isize, isize)> {
    let r = radius as isize;
    let mut out = Vec::new();
    for dr in -r..=r {
        for dc in -r..=r {
            if dr * dr + dc * dc <= r * r {
                out.push((dr, dc));
            }
        }
    }
    out
}

/// Greyscale reconstruction by dilation of `seed` under `mask` with 4-connectivity
/// (`skimage.morphology.reconstruction(seed, mask, footprint=disk(1))`), by Vincent's hybrid
/// algorithm: two raster scans, then a FIFO propagation. The result does not depend on the
/// visiting order.
fn reconstruct(seed: &Grid, mask: &Grid) -> Grid {
    let (w, h) = (mask.w, mask.h);
    let m = &mask.v;
    let mut r: Vec<f64> = seed.v.iter().zip(m).map(|(&s, &k)| s.min(k)).collect();
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let mut v = r[p];
            if y > 0 {
                v = v.max(r[p - w]);
            }
            if x > 0 {
                v = v.max(r[p - 1]);
            }
            r[p] = v.min(m[p]);
        }
    }
    let mut queue = VecDeque::new();
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let p = y * w + x;
            let mut v = r[p];
            if y + 1 < h {
                v = v.max(r[p + w]);
            }
            if x + 1 < w {
                v = v.max(r[p + 1]);
            }
            r[p] = v.min(m[p]);
            let below = y + 1 < h && r[p + w] < r[p] && r[p + w] < m[p + w];
            let right = x + 1 < w && r[p + 1] < r[p] && r[p + 1] < m[p + 1];
            if below || right {
                queue.push_back(p);
            }
        }
    }
    while let Some(p) = queue.pop_front() {
        let (y, x) = (p / w, p % w);
        let visit = |q: usize, r: &mut [f64], queue: &mut VecDeque<usize>| {
            if r[q] < r[p] && r[q] != m[q] {
                r[q] = r[p].min(m[q]);
                queue.push_back(q);
            }
        };
        if y > 0 {
            visit(p - w, &mut r, &mut queue);
        }
        if y + 1 < h {
            visit(p + w, &mut r, &mut queue);
        }
        if x > 0 {
            visit(p - 1, &mut r, &mut queue);
        }
        if x + 1 < w {
            visit(p + 1, &mut r, &mut queue);
        }
    }
    Grid { w, h, v: r }
}

/// Size after subsampling by `f` (`int(n * f)`; unchanged when `f ≥ 1`).
fn scaled(n: usize, f: f64) -> usize {
    if f < 1.0 {
        (n as f64 * f) as usize
    } else {
        n
    }
}

/// Granular spectrum of `image` and of every object `1..=count` of `labels` (CellProfiler's
/// MeasureGranularity without an image mask). All values are NaN when subsampling leaves fewer
/// than 2 pixels along an axis.
///
/// # Panics
/// If `image` does not have the size of `labels`.
pub fn measure_granularity<T: Pixel>(
    labels: &Labels,
    image: ImageView<T>,
    params: &GranularityParams,
) -> Granularity {
    assert!(
        image.width() == labels.width() && image.height() == labels.height(),
        "measure_granularity: image is {}x{}, labels are {}x{}",
        image.width(),
        image.height(),
        labels.width(),
        labels.height()
    );
    let n = labels.count() as usize;
    let ng = params.spectrum_length;
    let (w, h) = (image.width(), image.height());
    let (nw, nh) = (scaled(w, params.subsample), scaled(h, params.subsample));
    if nw < 2 || nh < 2 || w < 2 || h < 2 {
        return Granularity {
            image: vec![f64::NAN; ng],
            objects: vec![vec![f64::NAN; ng]; n],
        };
    }
    let scale = T::MAX;
    let mut orig = Vec::with_capacity(w * h);
    for r in 0..h {
        orig.extend(image.row(r).iter().map(|p| p.to_f64() / scale));
    }
    let orig = Grid { w, h, v: orig };
    let pixels = if params.subsample < 1.0 {
        // CellProfiler divides the grid by the factor; do the same for identical coordinates.
        let mut v = Vec::with_capacity(nw * nh);
        for i in 0..nh {
            for j in 0..nw {
                v.push(orig.bilinear(i as f64 / params.subsample, j as f64 / params.subsample));
            }
        }
        Grid { w: nw, h: nh, v }
    } else {
        Grid {
            w,
            h,
            v: orig.v.clone(),
        }
    };

    // Background: opening with disk(radius) on a further subsampled copy, back to size.
    let bf = params.background_subsample;
    let foot = disk(params.element_radius);
    let back = if bf < 1.0 {
        let (bh_f, bw_f) = (nh as f64 * bf, nw as f64 * bf);
        let (bh, bw) = (bh_f.ceil() as usize, bw_f.ceil() as usize);
        let mut v = Vec::with_capacity(bh * bw);
        for i in 0..bh {
            for j in 0..bw {
                v.push(pixels.bilinear(i as f64 / bf, j as f64 / bf));
            }
        }
        let small = Grid { w: bw, h: bh, v };
        let opened = small.filter(&foot, false).filter(&foot, true);
        let sy = (bh_f - 1.0) / (nh as f64 - 1.0);
        let sx = (bw_f - 1.0) / (nw as f64 - 1.0);
        opened.resample(nh, nw, sy, sx)
    } else {
        pixels.filter(&foot, false).filter(&foot, true)
    };
    let pixels = Grid {
        w: nw,
        h: nh,
        v: pixels
            .v
            .iter()
            .zip(&back.v)
            .map(|(&p, &b)| (p - b).max(0.0))
            .collect(),
    };

    // Object pixels and their source coordinates in the subsampled grid.
    let sy = (nh as f64 - 1.0) / (h as f64 - 1.0);
    let sx = (nw as f64 - 1.0) / (w as f64 - 1.0);
    let lab = labels.image();
    let mut count = vec![0u64; n + 1];
    let mut sum = vec![0f64; n + 1];
    let mut pix: Vec<(u32, f64, f64)> = Vec::new();
    for r in 0..h {
        for (c, &l) in lab.row(r).iter().enumerate() {
            let l = l as usize;
            if l == 0 || l > n {
                continue;
            }
            count[l] += 1;
            sum[l] += orig.at(r, c);
            pix.push((l as u32, r as f64 * sy, c as f64 * sx));
        }
    }
    let mut current: Vec<f64> = (0..=n).map(|l| sum[l] / count[l] as f64).collect();
    let start: Vec<f64> = current.iter().map(|&m| m.max(f64::EPSILON)).collect();

    let cross = [(-1, 0), (1, 0), (0, -1), (0, 1)];
    let mut image_gs = Vec::with_capacity(ng);
    let mut objects = vec![Vec::with_capacity(ng); n];
    let start_image = pixels.mean();
    let mut current_image = start_image;
    let start_image = start_image.max(f64::EPSILON);
    let mut ero = Grid {
        w: nw,
        h: nh,
        v: pixels.v.clone(),
    };
    let (maxy, maxx) = (nh as f64 - 1.0, nw as f64 - 1.0);
    for _ in 0..ng {
        ero = ero.filter(&cross, false);
        let rec = reconstruct(&ero, &pixels);
        let m = rec.mean();
        image_gs.push((current_image - m) * 100.0 / start_image);
        current_image = m;
        let mut acc = vec![0f64; n + 1];
        for &(l, y, x) in &pix {
            // cp-measure drops source points that rounding puts past the last sample (they
            // read as 0 but still count).
            if y <= maxy && x <= maxx {
                acc[l as usize] += rec.bilinear(y, x);
            }
        }
        for l in 1..=n {
            let m = acc[l] / count[l] as f64;
            objects[l - 1].push((current[l] - m) * 100.0 / start[l]);
            current[l] = m;
        }
    }
    Granularity {
        image: image_gs,
        objects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn reconstruction_fills_only_what_the_seed_touches() {
        let mask = Grid {
            w: 5,
            h: 1,
            v: vec![3.0, 5.0, 1.0, 4.0, 4.0],
        };
        let seed = Grid {
            w: 5,
            h: 1,
            v: vec![0.0, 2.0, 0.0, 0.0, 0.0],
        };
        let r = reconstruct(&seed, &mask);
        assert_eq!(r.v, vec![2.0, 2.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn flat_image_loses_everything_in_step_one_and_tiny_images_are_nan() {
        let lab = Image::from_fn(64, 48, |r, c| {
            u32::from(r > 10 && r < 30 && c > 5 && c < 40)
        });
        let px = Image::new(64, 48, 100u8);
        let labels = Labels::from_image(lab);
        let g = measure_granularity(&labels, px.view(), &GranularityParams::default());
        assert_eq!(g.image.len(), 16);
        // Background removal leaves (rounding-level) nothing; the spectrum stays finite.
        assert!(g.image.iter().all(|v| v.is_finite()));
        // The object's start is its mean before background removal (CellProfiler's
        // ObjectRecord), so a flat image loses all of it in the first step.
        assert!((g.objects[0][0] - 100.0).abs() < 1e-9);
        assert!(g.objects[0][1..].iter().all(|&v| v.abs() < 1e-12));
        let small = Labels::from_image(Image::new(6, 6, 1u32));
        let g = measure_granularity(&small, Image::new(6, 6, 1u8).view(), &Default::default());
        assert!(g.objects[0].iter().all(|v| v.is_nan()));
    }
}
