//! CellProfiler's MeasureObjectIntensityDistribution (scaled bins): how an object's intensity
//! is spread from its centre to its edge.
//!
//! Per object: the distance of every pixel to the nearest pixel outside the object (exact
//! Euclidean distance transform; the image border is not an edge, as in `scipy`'s
//! `distance_transform_edt`), the centre = the first pixel in row-major order where that distance
//! is largest, the distance from the centre along 8-connected paths inside the object (steps of
//! 1 and √2, CellProfiler's `propagate` on a flat image; pixels not connected to the centre are
//! left out), and the normalised radius `r = d_centre / (d_centre + d_edge + 0.001)`, binned
//! into `floor(r * bins)`. For each bin `b`:
//!
//! - `FracAtD`: the bin's share of the object's summed intensity;
//! - `MeanFrac`: `FracAtD` divided by the bin's share of the pixels (+ machine epsilon);
//! - `RadialCV`: the coefficient of variation (population) of the mean intensity over the 8
//!   sectors around the centre (split by `row > centre`, `col > centre`,
//!   `|Δrow| > |Δcol|`), over the sectors that have pixels; 0 when none have.
//!
//! Cost: per object, a distance transform of its bounding box and a Dijkstra over its pixels.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ipscope_image::{ImageView, Labels, Pixel};

use super::measure_shape;

/// Radial distribution of one object; every vector has one value per bin (innermost first).
#[derive(Debug, Clone, PartialEq)]
pub struct RadialDistribution {
    /// `RadialDistribution_FracAtD_<ch>_<b>of<n>`.
    pub frac_at_d: Vec<f64>,
    /// `RadialDistribution_MeanFrac_<ch>_<b>of<n>`.
    pub mean_frac: Vec<f64>,
    /// `RadialDistribution_RadialCV_<ch>_<b>of<n>`.
    pub radial_cv: Vec<f64>,
}

/// CellProfiler's default number of bins.
pub const DEFAULT_RADIAL_BINS: usize = 4;

/// 1-D squared distance transform (Felzenszwalb & Huttenlocher) of `f` in place.
fn dt1(f: &mut [f64], v: &mut Vec<usize>, z: &mut Vec<f64>, out: &mut Vec<f64>) {
    let n = f.len();
    v.clear();
    z.clear();
    out.clear();
    let first = match f.iter().position(|x| x.is_finite()) {
        Some(i) => i,
        None => return,
    };
    v.push(first);
    z.push(f64::NEG_INFINITY);
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let p = v[v.len() - 1];
            let s = ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q - p) as f64);
            if s <= z[z.len() - 1] {
                v.pop();
                z.pop();
                if v.is_empty() {
                    v.push(q);
                    z.push(f64::NEG_INFINITY);
                    break;
                }
            } else {
                v.push(q);
                z.push(s);
                break;
            }
        }
    }
    let mut k = 0;
    for q in 0..n {
        while k + 1 < v.len() && z[k + 1] < q as f64 {
            k += 1;
        }
        let d = q as f64 - v[k] as f64;
        out.push(d * d + f[v[k]]);
    }
    f.copy_from_slice(out);
}

#[derive(PartialEq)]
struct Node(f64, usize);
impl Eq for Node {}
impl PartialOrd for Node {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Node {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on distance, then on index for a fixed order.
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// Radial distribution of `image` in every object `1..=count` (index `i` = label `i + 1`) with
/// `bins` scaled bins. Absent labels get NaN fractions and CV 0.
///
/// # Panics
/// If `image` does not have the size of `labels` or `bins` is 0.
pub fn measure_radial_distribution<T: Pixel>(
    labels: &Labels,
    image: ImageView<T>,
    bins: usize,
) -> Vec<RadialDistribution> {
    assert!(
        image.width() == labels.width() && image.height() == labels.height(),
        "measure_radial_distribution: image is {}x{}, labels are {}x{}",
        image.width(),
        image.height(),
        labels.width(),
        labels.height()
    );
    assert!(
        bins > 0,
        "measure_radial_distribution: bins must be positive"
    );
    let (w, h) = (labels.width(), labels.height());
    let lab = labels.image();
    let scale = T::MAX;
    let mut scratch = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    measure_shape(labels)
        .iter()
        .map(|s| {
            if s.area == 0 {
                return RadialDistribution {
                    frac_at_d: vec![f64::NAN; bins],
                    mean_frac: vec![f64::NAN; bins],
                    radial_cv: vec![0.0; bins],
                };
            }
            // Bounding box grown by one pixel (inside the image): the nearest outside pixel of
            // any object pixel lies in it.
            let r0 = s.bbox_min_y.saturating_sub(1);
            let c0 = s.bbox_min_x.saturating_sub(1);
            let r1 = (s.bbox_max_y + 1).min(h);
            let c1 = (s.bbox_max_x + 1).min(w);
            let (bw, bh) = (c1 - c0, r1 - r0);
            let inside: Vec<bool> = (r0..r1)
                .flat_map(|r| lab.row(r)[c0..c1].iter().map(|&l| l == s.label))
                .collect();
            // Squared distance to the nearest outside pixel: columns, then rows.
            let mut d: Vec<f64> = inside
                .iter()
                .map(|&i| if i { f64::INFINITY } else { 0.0 })
                .collect();
            let (col, v, z, out) = &mut scratch;
            for c in 0..bw {
                col.clear();
                col.extend((0..bh).map(|r| d[r * bw + c]));
                dt1(col, v, z, out);
                for r in 0..bh {
                    d[r * bw + c] = col[r];
                }
            }
            for r in 0..bh {
                dt1(&mut d[r * bw..(r + 1) * bw], v, z, out);
            }
            // Centre: first row-major maximum of the distance to the edge.
            let mut centre = usize::MAX;
            for p in 0..d.len() {
                if inside[p] && (centre == usize::MAX || d[p] > d[centre]) {
                    centre = p;
                }
            }
            // Distance from the centre along 8-connected paths inside the object.
            let mut dist = vec![f64::INFINITY; d.len()];
            let mut heap = BinaryHeap::new();
            dist[centre] = 0.0;
            heap.push(Node(0.0, centre));
            while let Some(Node(dp, p)) = heap.pop() {
                if dp > dist[p] {
                    continue;
                }
                let (pr, pc) = ((p / bw) as isize, (p % bw) as isize);
                for dr in -1isize..=1 {
                    for dc in -1isize..=1 {
                        if dr == 0 && dc == 0 {
                            continue;
                        }
                        let (qr, qc) = (pr + dr, pc + dc);
                        if qr < 0 || qc < 0 || qr >= bh as isize || qc >= bw as isize {
                            continue;
                        }
                        let q = qr as usize * bw + qc as usize;
                        if !inside[q] {
                            continue;
                        }
                        let step = if dr != 0 && dc != 0 {
                            std::f64::consts::SQRT_2
                        } else {
                            1.0
                        };
                        let nd = dp + step;
                        if nd < dist[q] {
                            dist[q] = nd;
                            heap.push(Node(nd, q));
                        }
                    }
                }
            }
            let (ci, cj) = ((centre / bw) as isize, (centre % bw) as isize);
            let mut sum = vec![0f64; bins];
            let mut cnt = vec![0u64; bins];
            let mut sector_sum = vec![[0f64; 8]; bins];
            let mut sector_cnt = vec![[0u64; 8]; bins];
            for p in 0..d.len() {
                if !inside[p] || !dist[p].is_finite() {
                    continue;
                }
                let edge = d[p].sqrt();
                let nd = dist[p] / (dist[p] + edge + 0.001);
                let b = ((nd * bins as f64) as usize).min(bins - 1);
                let (pi, pj) = ((p / bw) as isize, (p % bw) as isize);
                let value = image.get(r0 + pi as usize, c0 + pj as usize).to_f64() / scale;
                let sector = usize::from(pi > ci)
                    + 2 * usize::from(pj > cj)
                    + 4 * usize::from((pi - ci).abs() > (pj - cj).abs());
                sum[b] += value;
                cnt[b] += 1;
                sector_sum[b][sector] += value;
                sector_cnt[b][sector] += 1;
            }
            let total: f64 = sum.iter().sum();
            let total_cnt: u64 = cnt.iter().sum();
            let frac_at_d: Vec<f64> = sum.iter().map(|&x| x / total).collect();
            let mean_frac = frac_at_d
                .iter()
                .zip(&cnt)
                .map(|(&f, &c)| f / (c as f64 / total_cnt as f64 + f64::EPSILON))
                .collect();
            let radial_cv = (0..bins)
                .map(|b| {
                    let means: Vec<f64> = (0..8)
                        .filter(|&k| sector_cnt[b][k] > 0)
                        .map(|k| sector_sum[b][k] / sector_cnt[b][k] as f64)
                        .collect();
                    if means.is_empty() {
                        return 0.0;
                    }
                    let m = means.iter().sum::<f64>() / means.len() as f64;
                    let var =
                        means.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / means.len() as f64;
                    let sd = var.sqrt();
                    // numpy.ma leaves a masked quotient (mean 0) at the numerator's value.
                    if m == 0.0 {
                        sd
                    } else {
                        sd / m
                    }
                })
                .collect();
            RadialDistribution {
                frac_at_d,
                mean_frac,
                radial_cv,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn squared_distance_transform_is_exact() {
        let mut f = vec![
            0.0,
            f64::INFINITY,
            f64::INFINITY,
            f64::INFINITY,
            0.0,
            f64::INFINITY,
        ];
        let (mut v, mut z, mut o) = (Vec::new(), Vec::new(), Vec::new());
        dt1(&mut f, &mut v, &mut z, &mut o);
        assert_eq!(f, vec![0.0, 1.0, 4.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn uniform_disk_has_fractions_that_sum_to_one_and_flat_cv() {
        let lab = Image::from_fn(41, 41, |r, c| {
            let (dy, dx) = (r as f64 - 20.0, c as f64 - 20.0);
            u32::from(dy * dy + dx * dx <= 15.0 * 15.0)
        });
        let px = Image::new(41, 41, 200u8);
        let m = measure_radial_distribution(&Labels::from_image(lab), px.view(), 4);
        let f: f64 = m[0].frac_at_d.iter().sum();
        assert!((f - 1.0).abs() < 1e-12);
        // A uniform stain: each bin's share of intensity equals its share of pixels.
        assert!(m[0].mean_frac.iter().all(|&x| (x - 1.0).abs() < 1e-9));
        assert!(m[0].radial_cv.iter().all(|&x| x.abs() < 1e-12));
        // Rings grow outwards.
        assert!(m[0].frac_at_d[0] < m[0].frac_at_d[3]);
    }
}
