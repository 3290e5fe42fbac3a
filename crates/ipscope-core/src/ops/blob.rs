//! Spot (blob) detection by the scale-normalised Laplacian of Gaussian, and spot
//! measurements per cell.
//!
//! [`blob_log`] follows `skimage.feature.blob_log(image, min_sigma, max_sigma, num_sigma,
//! threshold, overlap)` (scikit-image 0.26; Lindeberg 1998, "Feature detection with automatic
//! scale selection", IJCV 30(2)): a stack of `−σ² ∇²G_σ * image` over `num_sigma` linearly
//! spaced scales (SciPy's `gaussian_laplace`, mirror-reflected edges, kernel truncated at 4σ),
//! local maxima in 3×3×3 (row, col, scale) neighbourhoods above an absolute threshold, then
//! pruning of blobs whose disks (radius σ√2) overlap by more than `overlap` of the smaller
//! one (the smaller blob goes). The parity test (`tests/algorithms/skeleton_reference.rs`) compares
//! counts, positions and scales with skimage on noisy images of Gaussian spots.
//!
//! [`spots_per_object`] assigns spots to the objects (cells) containing their centres and
//! sums count, intensity and area per object.

use ipscope_image::{Image, ImageView, Labels};

use crate::ops::ridge::gaussian_derivative;

/// Parameters of [`blob_log`]; defaults are scikit-image's except `max_sigma` (puncta are
/// small: 1–5 px).
#[derive(Debug, Clone, PartialEq)]
pub struct BlobLogParams {
    pub min_sigma: f32,
    pub max_sigma: f32,
    pub num_sigma: usize,
    /// Absolute threshold on the scale-normalised response (image on a 0..1 scale).
    pub threshold: f32,
    /// Largest allowed overlap (fraction of the smaller disk) between two blobs.
    pub overlap: f64,
}

impl Default for BlobLogParams {
    fn default() -> Self {
        BlobLogParams {
            min_sigma: 1.0,
            max_sigma: 5.0,
            num_sigma: 5,
            threshold: 0.05,
            overlap: 0.5,
        }
    }
}

/// One detected spot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    pub row: usize,
    pub col: usize,
    /// Scale of the strongest response; the spot's radius is `sigma * √2`.
    pub sigma: f32,
}

impl Blob {
    pub fn radius(&self) -> f64 {
        f64::from(self.sigma) * std::f64::consts::SQRT_2
    }
}

/// `numpy.linspace(min, max, num)` cast to float32, as blob_log builds its scales.
fn sigma_list(p: &BlobLogParams) -> Vec<f32> {
    let n = p.num_sigma.max(1);
    if n == 1 {
        return vec![p.min_sigma];
    }
    let (a, b) = (f64::from(p.min_sigma), f64::from(p.max_sigma));
    let step = (b - a) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                b as f32
            } else {
                (a + i as f64 * step) as f32
            }
        })
        .collect()
}

/// Area fraction of the smaller disk covered by two disks at distance `d` (radii `r1`, `r2`),
/// as scikit-image's `_compute_disk_overlap`.
fn disk_overlap(d: f64, r1: f64, r2: f64) -> f64 {
    let a1 = ((d * d + r1 * r1 - r2 * r2) / (2.0 * d * r1))
        .clamp(-1.0, 1.0)
        .acos();
    let a2 = ((d * d + r2 * r2 - r1 * r1) / (2.0 * d * r2))
        .clamp(-1.0, 1.0)
        .acos();
    let (a, b, c, e) = (-d + r2 + r1, d - r2 + r1, d + r2 - r1, d + r2 + r1);
    let area = r1 * r1 * a1 + r2 * r2 * a2 - 0.5 * (a * b * c * e).abs().sqrt();
    area / (std::f64::consts::PI * r1.min(r2).powi(2))
}

/// scikit-image's `_blob_overlap` for 2-D blobs.
fn blob_overlap(b1: &Blob, s1: f64, b2: &Blob, s2: f64) -> f64 {
    if s1 == 0.0 && s2 == 0.0 {
        return 0.0;
    }
    let root2 = std::f64::consts::SQRT_2;
    let (max_s, r1, r2) = if s1 > s2 {
        (s1, 1.0, s2 / s1)
    } else {
        (s2, s1 / s2, 1.0)
    };
    let dr = (b2.row as f64 - b1.row as f64) / (max_s * root2);
    let dc = (b2.col as f64 - b1.col as f64) / (max_s * root2);
    let d = (dr * dr + dc * dc).sqrt();
    if d > r1 + r2 {
        return 0.0;
    }
    if d <= (r1 - r2).abs() {
        return 1.0;
    }
    disk_overlap(d, r1, r2)
}

/// Spots in an image on a 0..1 scale (see the module docs), in raster order.
pub fn blob_log(img: ImageView<f32>, params: &BlobLogParams) -> Vec<Blob> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Vec::new();
    }
    let src = img.to_image();
    let sigmas = sigma_list(params);
    let cube: Vec<Image<f32>> = sigmas
        .iter()
        .map(|&s| {
            let sd = f64::from(s);
            let drr = gaussian_derivative(&src, sd, 4.0, 2, 0);
            let dcc = gaussian_derivative(&src, sd, 4.0, 0, 2);
            let s2 = s * s;
            Image::from_fn(w, h, |r, c| -(drr.get(r, c) + dcc.get(r, c)) * s2)
        })
        .collect();
    let k = cube.len();
    let mut found: Vec<(Blob, f64)> = Vec::new();
    for r in 0..h {
        for c in 0..w {
            for (si, layer) in cube.iter().enumerate() {
                let v = layer.get(r, c);
                if v.is_nan() || v <= params.threshold {
                    continue;
                }
                // Maximum filter with 'nearest' edges = max over the neighbours that exist.
                let mut is_max = true;
                let lo = si.saturating_sub(1);
                'n: for other in &cube[lo..(si + 2).min(k)] {
                    for rr in r.saturating_sub(1)..(r + 2).min(h) {
                        for cc in c.saturating_sub(1)..(c + 2).min(w) {
                            if other.get(rr, cc) > v {
                                is_max = false;
                                break 'n;
                            }
                        }
                    }
                }
                if is_max {
                    let b = Blob {
                        row: r,
                        col: c,
                        sigma: sigmas[si],
                    };
                    found.push((b, f64::from(sigmas[si])));
                }
            }
        }
    }
    // Prune overlapping pairs: the smaller blob goes.
    if found.len() > 1 {
        let max_s = found.iter().map(|f| f.1).fold(0.0, f64::max);
        let reach = 2.0 * max_s * std::f64::consts::SQRT_2;
        for i in 0..found.len() {
            for j in i + 1..found.len() {
                let (a, b) = (found[i].0, found[j].0);
                let d = ((a.row as f64 - b.row as f64).powi(2)
                    + (a.col as f64 - b.col as f64).powi(2))
                .sqrt();
                if d > reach {
                    continue;
                }
                let (sa, sb) = (found[i].1, found[j].1);
                if blob_overlap(&a, sa, &b, sb) > params.overlap {
                    if sa > sb {
                        found[j].1 = 0.0;
                    } else {
                        found[i].1 = 0.0;
                    }
                }
            }
        }
    }
    found
        .into_iter()
        .filter(|f| f.1 > 0.0)
        .map(|f| f.0)
        .collect()
}

/// Spot totals of one object.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ObjectSpots {
    pub count: u32,
    /// Sum of the spots' integrated intensities (pixels within the spot radius).
    pub total_intensity: f64,
    /// Mean intensity over all the object's spot pixels; NaN without spots.
    pub mean_intensity: f64,
    /// Spot pixels (disks of radius σ√2, clipped to the object).
    pub area: u64,
}

/// Per object `1..=labels.count()`: the spots whose centre lies in it, their summed
/// intensity and area (each spot's disk clipped to the object). Index 0 holds the spots in
/// no object.
pub fn spots_per_object(blobs: &[Blob], labels: &Labels, img: ImageView<f32>) -> Vec<ObjectSpots> {
    let n = labels.count() as usize;
    let (w, h) = (labels.width(), labels.height());
    let mut out = vec![ObjectSpots::default(); n + 1];
    for b in blobs {
        if b.row >= h || b.col >= w || img.width() != w || img.height() != h {
            continue;
        }
        let l = labels.image().get(b.row, b.col) as usize;
        if l > n {
            continue;
        }
        let rad = b.radius();
        let ri = rad.ceil() as usize;
        let mut sum = 0.0;
        let mut area = 0u64;
        for r in b.row.saturating_sub(ri)..(b.row + ri + 1).min(h) {
            for c in b.col.saturating_sub(ri)..(b.col + ri + 1).min(w) {
                let d2 = (r as f64 - b.row as f64).powi(2) + (c as f64 - b.col as f64).powi(2);
                if d2 <= rad * rad && labels.image().get(r, c) as usize == l {
                    sum += f64::from(img.get(r, c));
                    area += 1;
                }
            }
        }
        let o = &mut out[l];
        o.count += 1;
        o.total_intensity += sum;
        o.area += area;
    }
    for o in &mut out {
        o.mean_intensity = if o.area > 0 {
            o.total_intensity / o.area as f64
        } else {
            f64::NAN
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_gaussian_spot_is_found_at_its_centre_and_scale() {
        let s = 2.0f64;
        let img = Image::from_fn(31, 31, |r, c| {
            let d2 = ((r as f64 - 15.0).powi(2) + (c as f64 - 12.0).powi(2)) / (2.0 * s * s);
            (-d2).exp() as f32
        });
        let blobs = blob_log(img.view(), &BlobLogParams::default());
        assert_eq!(blobs.len(), 1, "{blobs:?}");
        assert_eq!((blobs[0].row, blobs[0].col), (15, 12));
        assert_eq!(blobs[0].sigma, 2.0);
        let empty = Image::new(8, 8, 0.0f32);
        assert!(blob_log(empty.view(), &BlobLogParams::default()).is_empty());
    }

    #[test]
    fn spots_go_to_the_object_holding_their_centre() {
        let mut lab = Image::new(20, 10, 0u32);
        for r in 0..10 {
            for c in 0..10 {
                lab.set(r, c, 1);
            }
        }
        let labels = Labels::new(lab, 1);
        let img = Image::new(20, 10, 0.5f32);
        let blobs = [
            Blob {
                row: 5,
                col: 5,
                sigma: 1.0,
            },
            Blob {
                row: 5,
                col: 15,
                sigma: 1.0,
            },
        ];
        let per = spots_per_object(&blobs, &labels, img.view());
        assert_eq!(per[1].count, 1);
        assert_eq!(per[0].count, 1);
        // Radius √2 disk: the centre and its 8 neighbours.
        assert_eq!(per[1].area, 9);
        assert!((per[1].mean_intensity - 0.5).abs() < 1e-12);
    }
}
