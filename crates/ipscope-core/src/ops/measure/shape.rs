//! CellProfiler's `MeasureObjectSizeShape` (AreaShape) for every object, one pass over each
//! object's bounding box.
//!
//! Definitions follow `skimage.measure.regionprops` 0.26, which CellProfiler 4 calls:
//! `perimeter` is Benkrid & Crookes' weighted count of the 4-connected inner border
//! (`skimage.measure.perimeter(image, 4)`), `area_convex` counts the pixel centres inside or on
//! the convex hull of the pixels' edge midpoints (`convex_hull_image`), the axes, eccentricity and
//! orientation come from the inertia tensor of the pixel centres, `euler_number` uses
//! 8-connectivity for the object (Gray's bit-quad count). CellProfiler's derived columns:
//! `FormFactor = 4π·Area/Perimeter²`, `Compactness = Perimeter²/(4π·Area)` (CellProfiler ≥ 4),
//! `Orientation` in degrees. Feret diameters follow CellProfiler (`centrosome.cpmorphology.
//! feret_diameter`) on the convex hull of the pixel centres.
//!
//! Moments are accumulated as exact integers relative to the bounding box, so centroids and
//! second moments carry no cancellation error.

use ipscope_image::Labels;
use rayon::prelude::*;

use super::hull;
use crate::ops::scan::next_other_bool;

/// AreaShape and Location of one object (CellProfiler `AreaShape_*`, `Location_Center_*`).
///
/// Lengths are in pixels, areas in pixels², angles in degrees. Every float is NaN (and every
/// count 0) for a label absent from the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeFeatures {
    /// The object's label (`ObjectNumber`).
    pub label: u32,
    /// Pixel count (`Area`).
    pub area: u64,
    /// Weighted border length, `skimage.measure.perimeter(image, 4)` (`Perimeter`).
    pub perimeter: f64,
    /// Pixels of the filled convex hull (`ConvexArea`).
    pub convex_area: u64,
    /// `Area / ConvexArea` (`Solidity`).
    pub solidity: f64,
    /// `Area / BoundingBoxArea` (`Extent`).
    pub extent: f64,
    /// Eccentricity of the ellipse with the same second moments (`Eccentricity`).
    pub eccentricity: f64,
    /// `4·sqrt(λ₁)` of the inertia tensor (`MajorAxisLength`).
    pub major_axis_length: f64,
    /// `4·sqrt(λ₂)` of the inertia tensor (`MinorAxisLength`).
    pub minor_axis_length: f64,
    /// Angle between the row axis and the major axis, degrees in [-90, 90] (`Orientation`).
    pub orientation: f64,
    /// `4π·Area/Perimeter²` (`FormFactor`).
    pub form_factor: f64,
    /// `Perimeter²/(4π·max(Area, 1))` (`Compactness`).
    pub compactness: f64,
    /// Objects minus holes, 8-connected object (`EulerNumber`).
    pub euler_number: i64,
    /// Diameter of the disk with the same area, `sqrt(4·Area/π)` (`EquivalentDiameter`).
    pub equivalent_diameter: f64,
    /// Bounding box area (`BoundingBoxArea`).
    pub bbox_area: u64,
    /// Largest distance between two hull vertices (`MaxFeretDiameter`).
    pub max_feret: f64,
    /// Smallest caliper width of the hull (`MinFeretDiameter`).
    pub min_feret: f64,
    /// Mean column (`Center_X`).
    pub center_x: f64,
    /// Mean row (`Center_Y`).
    pub center_y: f64,
    /// First column (`BoundingBoxMinimum_X`).
    pub bbox_min_x: usize,
    /// First row (`BoundingBoxMinimum_Y`).
    pub bbox_min_y: usize,
    /// One past the last column (`BoundingBoxMaximum_X`).
    pub bbox_max_x: usize,
    /// One past the last row (`BoundingBoxMaximum_Y`).
    pub bbox_max_y: usize,
}

impl ShapeFeatures {
    fn absent(label: u32) -> Self {
        let nan = f64::NAN;
        ShapeFeatures {
            label,
            area: 0,
            perimeter: nan,
            convex_area: 0,
            solidity: nan,
            extent: nan,
            eccentricity: nan,
            major_axis_length: nan,
            minor_axis_length: nan,
            orientation: nan,
            form_factor: nan,
            compactness: nan,
            euler_number: 0,
            equivalent_diameter: nan,
            bbox_area: 0,
            max_feret: nan,
            min_feret: nan,
            center_x: nan,
            center_y: nan,
            bbox_min_x: 0,
            bbox_min_y: 0,
            bbox_max_x: 0,
            bbox_max_y: 0,
        }
    }
}

/// The object's mask inside its bounding box, padded by one background pixel on every side.
#[derive(Default)]
pub(crate) struct LocalMask {
    pub(crate) w: usize,
    pub(crate) h: usize,
    /// `(h + 2) × (w + 2)`, row-major.
    pub(crate) m: Vec<bool>,
}

impl LocalMask {
    #[cfg(test)]
    pub(crate) fn new(labels: &Labels, label: u32, b: (usize, usize, usize, usize)) -> Self {
        let mut mask = LocalMask::default();
        mask.fill(labels, label, b);
        mask
    }

    /// This mask made that of `label` in the box `b` of `labels`, its buffer reused.
    pub(crate) fn fill(&mut self, labels: &Labels, label: u32, b: (usize, usize, usize, usize)) {
        let (r0, c0, r1, c1) = b;
        let (h, w) = (r1 - r0, c1 - c0);
        let pw = w + 2;
        let m = &mut self.m;
        m.clear();
        m.resize((h + 2) * pw, false);
        let img = labels.image();
        for r in 0..h {
            let row = &img.row(r0 + r)[c0..c1];
            let out = &mut m[(r + 1) * pw + 1..(r + 1) * pw + 1 + w];
            for (o, &l) in out.iter_mut().zip(row) {
                *o = l == label;
            }
        }
        (self.w, self.h) = (w, h);
    }

    /// A random object (ragged, with holes, its rows not all connected) of label 1 in an
    /// image of at most `max × max` pixels, its bounding box and its mask, for the tests.
    #[cfg(test)]
    pub(crate) fn random(
        rnd: &mut impl FnMut() -> u32,
        max: u32,
    ) -> (Self, (usize, usize, usize, usize)) {
        let (w, h) = (1 + (rnd() % max) as usize, 1 + (rnd() % max) as usize);
        let density = 1 + rnd() % 9;
        let mut img = ipscope_image::Image::from_fn(w, h, |_, _| u32::from(rnd() % 10 < density));
        // One pixel at least, so that the object exists.
        let (r, c) = ((rnd() as usize) % h, (rnd() as usize) % w);
        img.row_mut(r)[c] = 1;
        let labels = Labels::from_image(img);
        let b = labels.bounding_boxes()[1].unwrap_or_else(|| unreachable!());
        (LocalMask::new(&labels, 1, b), b)
    }

    /// The pixel at padded coordinates `(r, c)` (used by the tests' reference counts).
    #[cfg(test)]
    pub(crate) fn at(&self, r: usize, c: usize) -> bool {
        self.m[r * (self.w + 2) + c]
    }
}

/// AreaShape of every object `1..=count`, index `i` = label `i + 1`.
pub fn measure_shape_features(labels: &Labels) -> Vec<ShapeFeatures> {
    let boxes = labels.bounding_boxes();
    // Objects in parallel when the pool has idle workers; each object's figures as before.
    // Each task's mask and hull buffers are reused from object to object.
    (1..boxes.len())
        .into_par_iter()
        .with_min_len(super::intensity::OBJECTS_PER_TASK)
        .map_init(ShapeScratch::default, |s, l| match boxes[l] {
            None => ShapeFeatures::absent(l as u32),
            Some(b) => {
                s.mask.fill(labels, l as u32, b);
                object_shape(s, l as u32, b)
            }
        })
        .collect()
}

/// One task's buffers for [`measure_shape_features`].
#[derive(Default)]
struct ShapeScratch {
    mask: LocalMask,
    border: Vec<bool>,
    hull: hull::HullScratch,
}

/// The shape of the object in `s.mask` (label `label`, box `b`).
fn object_shape(
    s: &mut ShapeScratch,
    label: u32,
    b: (usize, usize, usize, usize),
) -> ShapeFeatures {
    let ShapeScratch {
        mask,
        border,
        hull: hs,
    } = s;
    let mask = &*mask;
    let (r0, c0, r1, c1) = b;
    let (h, w) = (mask.h, mask.w);
    // Exact integer moments in bbox coordinates.
    let (mut n, mut sr, mut sc, mut srr, mut scc, mut src) =
        (0i128, 0i128, 0i128, 0i128, 0i128, 0i128);
    // Row by row: the row's count, Σc and Σc² (closed forms over its runs), then the row's
    // share of each moment.
    let pw = w + 2;
    for r in 0..h {
        let row = &mask.m[(r + 1) * pw + 1..(r + 1) * pw + 1 + w];
        let (k, s1, s2) = row_moments(row);
        let ri = r as i128;
        n += k;
        sr += ri * k;
        sc += s1;
        srr += ri * ri * k;
        scc += s2;
        src += ri * s1;
    }
    let area = n as u64;
    let nf = n as f64;
    let center_y = r0 as f64 + sr as f64 / nf;
    let center_x = c0 as f64 + sc as f64 / nf;
    // n²·(second central moment / n): exact integers.
    let a_i = n * scc - sc * sc; // column variance · n²  (inertia tensor [0][0])
    let c_i = n * srr - sr * sr; // row variance · n²     (inertia tensor [1][1])
    let b_i = -(n * src - sr * sc); // -covariance · n²    (off-diagonal)
    let n2 = nf * nf;
    let (a, bb, c) = (a_i as f64 / n2, b_i as f64 / n2, c_i as f64 / n2);
    let mean = 0.5 * (a + c);
    let half = 0.5 * (a - c);
    let d = half.hypot(bb);
    let l1 = (mean + d).max(0.0);
    // λ₂ = det / λ₁ avoids cancellation for elongated objects; the determinant is exact.
    let det = match a_i
        .checked_mul(c_i)
        .and_then(|ac| b_i.checked_mul(b_i).map(|b2| ac - b2))
    {
        Some(det) => det as f64 / (n2 * n2),
        None => a * c - bb * bb,
    };
    let l2 = if l1 > 0.0 { (det / l1).max(0.0) } else { 0.0 };
    let eccentricity = if l1 == 0.0 {
        0.0
    } else {
        (1.0 - l2 / l1).max(0.0).sqrt()
    };
    let orientation = if a_i == c_i {
        if bb < 0.0 {
            std::f64::consts::FRAC_PI_4
        } else {
            -std::f64::consts::FRAC_PI_4
        }
    } else {
        0.5 * (-2.0 * bb).atan2(c - a)
    };

    let perimeter = perimeter4(mask, border);
    let euler_number = euler8(mask);
    let convex_area = hull::convex_area(mask, hs);
    let (min_feret, max_feret) = hull::feret(mask, hs);
    let bbox_area = (h * w) as u64;
    let pi = std::f64::consts::PI;
    ShapeFeatures {
        label,
        area,
        perimeter,
        convex_area,
        solidity: nf / convex_area as f64,
        extent: nf / bbox_area as f64,
        eccentricity,
        major_axis_length: 4.0 * l1.sqrt(),
        minor_axis_length: 4.0 * l2.sqrt(),
        orientation: orientation * (180.0 / pi),
        form_factor: 4.0 * pi * nf / (perimeter * perimeter),
        compactness: perimeter * perimeter / (4.0 * pi * nf).max(1.0),
        euler_number,
        equivalent_diameter: (4.0 * nf / pi).sqrt(),
        bbox_area,
        max_feret,
        min_feret,
        center_x,
        center_y,
        bbox_min_x: c0,
        bbox_min_y: r0,
        bbox_max_x: c1,
        bbox_max_y: r1,
    }
}

/// Count, Σc and Σc² of the set pixels `c` of `row`, over its runs with closed forms, in
/// i128 (exact for any row).
fn row_moments(row: &[bool]) -> (i128, i128, i128) {
    // Σc and Σc² over c < x.
    let s1_below = |x: i128| x * (x - 1) / 2;
    let s2_below = |x: i128| (x - 1) * x * (2 * x - 1) / 6;
    let (mut k, mut s1, mut s2) = (0i128, 0i128, 0i128);
    let mut c = 0;
    while c < row.len() {
        let a = next_other_bool(row, c, false);
        if a == row.len() {
            break;
        }
        let b = next_other_bool(row, a, true);
        let (ai, bi) = (a as i128, b as i128);
        k += bi - ai;
        s1 += s1_below(bi) - s1_below(ai);
        s2 += s2_below(bi) - s2_below(ai);
        c = b;
    }
    (k, s1, s2)
}

/// `skimage.measure.perimeter(image, neighborhood=4)`: border pixels (object pixels with a
/// 4-neighbour outside) weighted by the pattern of their border neighbours (Benkrid & Crookes).
fn perimeter4(mask: &LocalMask, border: &mut Vec<bool>) -> f64 {
    let (h, w) = (mask.h, mask.w);
    let pw = w + 2;
    let m = &mask.m;
    border.clear();
    border.resize((h + 2) * pw, false);
    for r in 1..=h {
        // Row r's pixels and their four neighbours, without branches.
        let i = r * pw + 1;
        let (up, down) = (&m[i - pw..i - pw + w], &m[i + pw..i + pw + w]);
        let (left, mid, right) = (&m[i - 1..i - 1 + w], &m[i..i + w], &m[i + 1..i + 1 + w]);
        for (c, b) in border[i..i + w].iter_mut().enumerate() {
            *b = mid[c] & !(left[c] & right[c] & up[c] & down[c]);
        }
    }
    let s2 = std::f64::consts::SQRT_2;
    let mut weights = [0.0f64; 50];
    for k in [5, 7, 15, 17, 25, 27] {
        weights[k] = 1.0;
    }
    weights[21] = s2;
    weights[33] = s2;
    weights[13] = (1.0 + s2) / 2.0;
    weights[23] = (1.0 + s2) / 2.0;
    // Histogram first, then the dot product in code order, as skimage does.
    let mut hist = [0u64; 50];
    for r in 1..=h {
        for c in 1..=w {
            let i = r * pw + c;
            if !border[i] {
                continue;
            }
            let edge = [i - 1, i + 1, i - pw, i + pw]
                .iter()
                .filter(|&&j| border[j])
                .count();
            let diag = [i - pw - 1, i - pw + 1, i + pw - 1, i + pw + 1]
                .iter()
                .filter(|&&j| border[j])
                .count();
            hist[1 + 2 * edge + 10 * diag] += 1;
        }
    }
    hist.iter()
        .zip(weights.iter())
        .map(|(&k, &w)| k as f64 * w)
        .sum()
}

/// Euler number of the object with 8-connectivity: `(Q1 − Q3 − 2·QD) / 4` over all 2×2
/// windows of the padded mask (Gray 1971; `skimage.measure.euler_number(image, 2)`).
fn euler8(mask: &LocalMask) -> i64 {
    // Each window's share by its pattern p0 | p1 << 1 | p2 << 2 | p3 << 3 (p0 p1 over p2 p3):
    // one pixel 1, three −1, two on a diagonal (0b1001, 0b0110) −2.
    const SHARE: [i8; 16] = [0, 1, 1, 0, 1, 0, -2, -1, 1, -2, 0, -1, 0, -1, -1, 0];
    let (h, w) = (mask.h, mask.w);
    let pw = w + 2;
    let mut sum = 0i64;
    for r in 0..=h {
        let (top, bottom) = (
            &mask.m[r * pw..(r + 1) * pw],
            &mask.m[(r + 1) * pw..(r + 2) * pw],
        );
        // The left column of the first window, then each window adds its right column.
        let mut left = u8::from(top[0]) | u8::from(bottom[0]) << 2;
        for (&t, &b) in top[1..].iter().zip(&bottom[1..]) {
            let right = u8::from(t) << 1 | u8::from(b) << 3;
            sum += i64::from(SHARE[usize::from(left | right)]);
            left = right >> 1;
        }
    }
    sum / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    /// The window-by-window count the table replaced.
    fn euler8_counted(mask: &LocalMask) -> i64 {
        let (h, w) = (mask.h, mask.w);
        let mut sum = 0i64;
        for r in 0..=h {
            for c in 0..=w {
                let p = [
                    mask.at(r, c),
                    mask.at(r, c + 1),
                    mask.at(r + 1, c),
                    mask.at(r + 1, c + 1),
                ];
                let k = p.iter().filter(|&&x| x).count();
                sum += match k {
                    1 => 1,
                    3 => -1,
                    2 if p[0] == p[3] => -2,
                    _ => 0,
                };
            }
        }
        sum / 4
    }

    #[test]
    fn row_moments_equal_the_pixel_sums() {
        let mut rnd = crate::testing::lcg32(23);
        for case in 0..3000 {
            let w = (rnd() % 80) as usize;
            let density = rnd() % 11;
            let row: Vec<bool> = (0..w).map(|_| rnd() % 10 < density).collect();
            let mut want = (0i128, 0i128, 0i128);
            for (c, _) in row.iter().enumerate().filter(|(_, &m)| m) {
                let c = c as i128;
                want = (want.0 + 1, want.1 + c, want.2 + c * c);
            }
            assert_eq!(row_moments(&row), want, "case {case}");
        }
        // A row so wide that the closed form's product (w − 1)·w·(2w − 1) passes 2^63.
        let w = 3_000_000i128;
        let row = vec![true; w as usize];
        let want = (w, w * (w - 1) / 2, (w - 1) * w * (2 * w - 1) / 6);
        assert!(6 * want.2 > i128::from(i64::MAX));
        assert_eq!(row_moments(&row), want);
    }

    #[test]
    fn euler_table_equals_the_count() {
        let mut rnd = crate::testing::lcg32(17);
        for case in 0..1000 {
            let (mask, _) = LocalMask::random(&mut rnd, 20);
            assert_eq!(euler8(&mask), euler8_counted(&mask), "case {case}");
        }
    }

    fn labels(w: usize, h: usize, f: impl Fn(usize, usize) -> bool) -> Labels {
        Labels::from_image(Image::from_fn(w, h, |r, c| u32::from(f(r, c))))
    }

    #[test]
    fn rectangle() {
        // 4 rows × 6 columns at (2, 3).
        let l = labels(12, 9, |r, c| (2..6).contains(&r) && (3..9).contains(&c));
        let s = measure_shape_features(&l)[0];
        assert_eq!(s.area, 24);
        assert_eq!(s.convex_area, 24);
        assert_eq!(s.bbox_area, 24);
        assert_eq!(s.euler_number, 1);
        assert_eq!((s.center_x, s.center_y), (5.5, 3.5));
        assert_eq!(s.extent, 1.0);
        assert_eq!(s.solidity, 1.0);
        // Columns vary more: the major axis is horizontal, 90° from the row axis.
        assert!((s.orientation.abs() - 90.0).abs() < 1e-9);
        // Variance of 0..6 is 35/12, so the major axis is 4·sqrt(35/12).
        assert!((s.major_axis_length - 4.0 * (35.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert!((s.minor_axis_length - 4.0 * (15.0f64 / 12.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn ring_has_euler_zero() {
        let l = labels(7, 7, |r, c| {
            (1..6).contains(&r) && (1..6).contains(&c) && !(r == 3 && c == 3)
        });
        let s = measure_shape_features(&l)[0];
        assert_eq!(s.euler_number, 0);
        assert_eq!(s.area, 24);
    }

    #[test]
    fn single_pixel() {
        let l = labels(3, 3, |r, c| r == 1 && c == 1);
        let s = measure_shape_features(&l)[0];
        assert_eq!((s.area, s.convex_area, s.euler_number), (1, 1, 1));
        assert_eq!(s.eccentricity, 0.0);
        assert_eq!(s.max_feret, 0.0);
    }
}
