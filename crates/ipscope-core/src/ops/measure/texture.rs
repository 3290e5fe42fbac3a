//! Haralick texture features per object, as CellProfiler's MeasureTexture (CellProfiler 3/4,
//! cp-measure `get_texture`) computes them.
//!
//! Definitions (checked against cp-measure 0.3, which calls `mahotas.features.haralick`):
//!
//! - Grey levels: the whole image is put on CellProfiler's 0..1 scale (divided by the type's
//!   [`Pixel::MAX`]) and converted like `skimage.util.img_as_ubyte`: `rint(v · 255)`
//!   (ties to even), values outside 0..1 clamped. 256 levels; no per-object stretching.
//! - Each object's bounding box is cut out with every pixel outside the object set to 0. Level 0
//!   is background: pairs with a 0 on either side are not counted (`ignore_zeros=True`), so a
//!   foreground pixel quantised to 0 drops out too.
//! - Co-occurrence at distance `scale` in 4 directions `(dy, dx)`: `00` = (0, 1) horizontal,
//!   `01` = (1, 1), `02` = (1, 0) vertical, `03` = (1, −1); both orders of each pair are counted
//!   (symmetric matrix), pairs leaving the box are not. `p` = counts / total.
//! - The 13 features are mahotas' (Haralick 1973 with his SumVariance typo corrected):
//!   DifferenceVariance is the variance of the vector `p_{x−y}` over its `L` entries, where
//!   `L` = the object's highest level + 1 (mahotas' matrix size); Correlation is 1 when either
//!   marginal has zero variance; InfoMeas1 divides by max(HX, HY) unless that is 0. Entropies
//!   use log₂.
//! - An object with no valid pair in some direction gets NaN for all 52 values (cp-measure's
//!   convention).
//!
//! Cost: one pass over each object's bounding box per direction, plus work proportional to the
//! number of distinct level pairs (at most 256²).

use super::measure_shape;
use ipscope_image::{ImageView, Labels, Pixel};

/// CellProfiler's names of the 13 Haralick features, in mahotas' order.
pub const HARALICK_FEATURES: [&str; 13] = [
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "InfoMeas1",
    "InfoMeas2",
];

/// CellProfiler's default texture scale (pixels).
pub const DEFAULT_TEXTURE_SCALE: usize = 3;

/// Grey levels (fixed, CellProfiler 3/4's default).
pub const TEXTURE_GRAY_LEVELS: usize = 256;

/// Direction steps `(dy, dx)` of the column suffixes `00`..`03`.
pub const TEXTURE_DIRECTIONS: [(isize, isize); 4] = [(0, 1), (1, 1), (1, 0), (1, -1)];

/// Haralick features of one object: `[direction][feature]`, features in
/// [`HARALICK_FEATURES`] order.
pub type Texture = [[f64; 13]; 4];

/// The image's grey level (0..=255) of one pixel, as `img_as_ubyte` of the 0..1 image.
#[inline]
fn level<T: Pixel>(p: T) -> u8 {
    let x = (p.to_f64() / T::MAX).clamp(0.0, 1.0);
    (x * 255.0).round_ties_even() as u8
}

/// Haralick features of `image` in every object `1..=count` at distance `scale` (index `i` =
/// label `i + 1`). Absent labels and objects without a valid pair in some direction get NaN.
///
/// # Panics
/// If `image` does not have the size of `labels`, or `scale` is 0.
pub fn measure_texture<T: Pixel>(
    labels: &Labels,
    image: ImageView<T>,
    scale: usize,
) -> Vec<Texture> {
    assert!(
        image.width() == labels.width() && image.height() == labels.height(),
        "measure_texture: image is {}x{}, labels are {}x{}",
        image.width(),
        image.height(),
        labels.width(),
        labels.height()
    );
    assert!(scale >= 1, "measure_texture: scale must be at least 1");
    let lab = labels.image();
    let mut crop: Vec<u8> = Vec::new();
    let mut glcm = Glcm::new();
    measure_shape(labels)
        .iter()
        .map(|s| {
            if s.area == 0 {
                return [[f64::NAN; 13]; 4];
            }
            let (r0, c0) = (s.bbox_min_y, s.bbox_min_x);
            let (h, w) = (s.bbox_max_y - r0, s.bbox_max_x - c0);
            crop.clear();
            crop.resize(h * w, 0);
            let mut top = 0u8;
            for r in 0..h {
                let lrow = &lab.row(r0 + r)[c0..c0 + w];
                let prow = &image.row(r0 + r)[c0..c0 + w];
                for (c, (&l, &p)) in lrow.iter().zip(prow).enumerate() {
                    if l == s.label {
                        let q = level(p);
                        crop[r * w + c] = q;
                        top = top.max(q);
                    }
                }
            }
            let mut out = [[f64::NAN; 13]; 4];
            for (d, &(dy, dx)) in TEXTURE_DIRECTIONS.iter().enumerate() {
                glcm.count(&crop, h, w, dy * scale as isize, dx * scale as isize);
                match glcm.features(top as usize + 1) {
                    Some(f) => out[d] = f,
                    None => return [[f64::NAN; 13]; 4],
                }
            }
            out
        })
        .collect()
}

/// A 256×256 co-occurrence matrix that remembers which cells are non-zero.
struct Glcm {
    counts: Vec<u64>,
    touched: Vec<u16>,
}

impl Glcm {
    fn new() -> Self {
        Glcm {
            counts: vec![0; 256 * 256],
            touched: Vec::new(),
        }
    }

    fn add(&mut self, a: u8, b: u8) {
        let k = (a as usize) << 8 | b as usize;
        if self.counts[k] == 0 {
            self.touched.push(k as u16);
        }
        self.counts[k] += 1;
    }

    /// Symmetric counts of non-zero pairs `(p, p + (dy, dx))` inside the `h × w` crop.
    fn count(&mut self, crop: &[u8], h: usize, w: usize, dy: isize, dx: isize) {
        for &k in &self.touched {
            self.counts[k as usize] = 0;
        }
        self.touched.clear();
        for r in 0..h {
            let r2 = r as isize + dy;
            if r2 < 0 || r2 >= h as isize {
                continue;
            }
            let r2 = r2 as usize;
            for c in 0..w {
                let c2 = c as isize + dx;
                if c2 < 0 || c2 >= w as isize {
                    continue;
                }
                let a = crop[r * w + c];
                let b = crop[r2 * w + c2 as usize];
                if a != 0 && b != 0 {
                    self.add(a, b);
                    self.add(b, a);
                }
            }
        }
        self.touched.sort_unstable();
    }

    /// mahotas' 13 features of the current matrix, `size` = matrix side (highest level + 1);
    /// None when no pair was counted.
    fn features(&self, size: usize) -> Option<[f64; 13]> {
        let total: u64 = self.touched.iter().map(|&k| self.counts[k as usize]).sum();
        if total == 0 {
            return None;
        }
        let t = total as f64;
        let mut px = vec![0f64; size];
        let mut py = vec![0f64; size];
        let mut plus = vec![0f64; 2 * size];
        let mut minus = vec![0f64; size];
        let (mut asm, mut sum_ij, mut idm, mut h) = (0f64, 0f64, 0f64, 0f64);
        for &k in &self.touched {
            let (i, j) = ((k >> 8) as usize, (k & 0xff) as usize);
            let p = self.counts[k as usize] as f64 / t;
            px[j] += p;
            py[i] += p;
            plus[i + j] += p;
            minus[i.abs_diff(j)] += p;
            asm += p * p;
            sum_ij += (i * j) as f64 * p;
            let d = i.abs_diff(j) as f64;
            idm += p / (1.0 + d * d);
            h -= p * p.log2();
        }
        let moments = |v: &[f64]| {
            let (mut m1, mut m2) = (0f64, 0f64);
            for (k, &p) in v.iter().enumerate() {
                m1 += k as f64 * p;
                m2 += (k * k) as f64 * p;
            }
            (m1, m2)
        };
        let (ux, x2) = moments(&px);
        let (uy, y2) = moments(&py);
        let vx = x2 - ux * ux;
        let vy = y2 - uy * uy;
        let (sx, sy) = (vx.sqrt(), vy.sqrt());
        let (_, contrast) = moments(&minus);
        let correlation = if sx == 0.0 || sy == 0.0 {
            1.0
        } else {
            (sum_ij - ux * uy) / sx / sy
        };
        let (sum_avg, s2) = moments(&plus);
        let sum_var = s2 - sum_avg * sum_avg;
        let entropy =
            |v: &[f64]| -> f64 { v.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.log2()).sum() };
        let sum_entropy = entropy(&plus);
        let mean_minus = minus.iter().sum::<f64>() / size as f64;
        let diff_var = minus
            .iter()
            .map(|&p| (p - mean_minus) * (p - mean_minus))
            .sum::<f64>()
            / size as f64;
        let diff_entropy = entropy(&minus);
        let hx = entropy(&px);
        let hy = entropy(&py);
        let mut hxy1 = 0f64;
        for &k in &self.touched {
            let (i, j) = ((k >> 8) as usize, (k & 0xff) as usize);
            let p = self.counts[k as usize] as f64 / t;
            hxy1 -= p * (px[i] * py[j]).log2();
        }
        // HXY2 = −Σᵢⱼ pₓ(i)p_y(j) log₂(pₓ(i)p_y(j)) = HX + HY for distributions.
        let hxy2 = hx + hy;
        let hmax = hx.max(hy);
        let info1 = if hmax == 0.0 {
            h - hxy1
        } else {
            (h - hxy1) / hmax
        };
        let info2 = (1.0 - (-2.0 * (hxy2 - h)).exp()).max(0.0).sqrt();
        Some([
            asm,
            contrast,
            correlation,
            vx,
            idm,
            sum_avg,
            sum_var,
            sum_entropy,
            h,
            diff_var,
            diff_entropy,
            info1,
            info2,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn uniform_object_is_homogeneous() {
        let lab = Image::from_vec(8, 8, vec![1u32; 64]).unwrap();
        let px = Image::from_vec(8, 8, vec![100u8; 64]).unwrap();
        let t = measure_texture(&Labels::from_image(lab), px.view(), 3);
        for dir in &t[0] {
            assert_eq!(dir[0], 1.0, "ASM");
            assert_eq!(dir[1], 0.0, "Contrast");
            assert_eq!(dir[2], 1.0, "Correlation");
            assert_eq!(dir[8], 0.0, "Entropy");
        }
    }

    #[test]
    fn object_narrower_than_scale_is_nan() {
        let mut v = vec![0u32; 64];
        for r in 0..8 {
            v[r * 8 + 3] = 1;
            v[r * 8 + 4] = 1;
        }
        let lab = Image::from_vec(8, 8, v).unwrap();
        let px = Image::from_vec(8, 8, vec![50u8; 64]).unwrap();
        let t = measure_texture(&Labels::from_image(lab), px.view(), 3);
        assert!(t[0].iter().flatten().all(|x| x.is_nan()));
    }
}
