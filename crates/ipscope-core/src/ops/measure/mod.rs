//! Per-object measurements, one pass over the pixels for all objects.
//!
//! [`measure_shape`] gives what `skimage.measure.regionprops` calls `area`, `centroid` and
//! `bbox` (CellProfiler's `AreaShape_Area`, `Location_Center_X/Y`,
//! `AreaShape_BoundingBoxMinimum/Maximum_X/Y`; the maximum is exclusive in both).
//! [`measure_intensity`] gives CellProfiler's `MeasureObjectIntensity` columns
//! `IntegratedIntensity`, `MeanIntensity`, `StdIntensity` (population standard deviation,
//! `numpy.std`), `MinIntensity`, `MaxIntensity`, on CellProfiler's scale: every pixel is
//! divided by the type's [`Pixel::MAX`] (255 for u8, 65535 for u16, 1 for f32).
//!
//! The full CellProfiler sets live in submodules: [`shape`] (AreaShape, scikit-image
//! `regionprops` definitions) and [`intensity`] (MeasureObjectIntensity). Each visits every
//! object's bounding box once; none scans the whole image per object.

pub mod correlation;
pub mod granularity;
mod hull;
pub mod intensity;
pub mod neighbors;
pub mod radial;
pub mod shape;
pub mod texture;
pub mod zernike;

pub use correlation::{measure_colocalization, Colocalization, COLOCALIZATION_THRESHOLD};
pub use granularity::{measure_granularity, Granularity, GranularityParams};
pub use intensity::{
    measure_intensity_features, measure_intensity_features_in, IntensityFeatures, ObjectRuns,
};
pub use neighbors::{measure_neighbors, NeighborMethod, Neighbors, DEFAULT_NEIGHBOR_DISTANCE};
pub use radial::{measure_radial_distribution, RadialDistribution, DEFAULT_RADIAL_BINS};
pub use shape::{measure_shape_features, ShapeFeatures};
pub use texture::{measure_texture, Texture, DEFAULT_TEXTURE_SCALE, HARALICK_FEATURES};
pub use zernike::{measure_zernike, zernike_indexes};

use ipscope_image::{ImageView, Labels, Pixel};

/// Area, centre and bounding box of one object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectShape {
    /// The object's label.
    pub label: u32,
    /// Pixel count; 0 for a label absent from the image.
    pub area: u64,
    /// Mean column (CellProfiler `Location_Center_X`); NaN when absent.
    pub center_x: f64,
    /// Mean row (CellProfiler `Location_Center_Y`); NaN when absent.
    pub center_y: f64,
    /// First column.
    pub bbox_min_x: usize,
    /// First row.
    pub bbox_min_y: usize,
    /// One past the last column.
    pub bbox_max_x: usize,
    /// One past the last row.
    pub bbox_max_y: usize,
}

/// Shape of every object `1..=count` (absent labels get area 0, NaN centre, empty box).
///
/// Labels above `count` are ignored.
pub fn measure_shape(labels: &Labels) -> Vec<ObjectShape> {
    let n = labels.count() as usize;
    let mut area = vec![0u64; n + 1];
    let mut sum_r = vec![0u64; n + 1];
    let mut sum_c = vec![0u64; n + 1];
    let mut bbox = vec![(usize::MAX, usize::MAX, 0usize, 0usize); n + 1];
    let img = labels.image();
    for r in 0..labels.height() {
        for (c, &l) in img.row(r).iter().enumerate() {
            let l = l as usize;
            if l == 0 || l > n {
                continue;
            }
            area[l] += 1;
            sum_r[l] += r as u64;
            sum_c[l] += c as u64;
            let b = &mut bbox[l];
            b.0 = b.0.min(r);
            b.1 = b.1.min(c);
            b.2 = b.2.max(r + 1);
            b.3 = b.3.max(c + 1);
        }
    }
    (1..=n)
        .map(|l| {
            let a = area[l];
            let (r0, c0, r1, c1) = if a == 0 { (0, 0, 0, 0) } else { bbox[l] };
            ObjectShape {
                label: l as u32,
                area: a,
                center_x: sum_c[l] as f64 / a as f64,
                center_y: sum_r[l] as f64 / a as f64,
                bbox_min_x: c0,
                bbox_min_y: r0,
                bbox_max_x: c1,
                bbox_max_y: r1,
            }
        })
        .collect()
}

/// Intensity statistics of one object on CellProfiler's 0..1 scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectIntensity {
    /// Sum of the scaled pixel values (`IntegratedIntensity`); 0 when absent.
    pub integrated: f64,
    /// Mean (`MeanIntensity`); NaN when absent.
    pub mean: f64,
    /// Population standard deviation (`StdIntensity`); NaN when absent.
    pub std: f64,
    /// Minimum (`MinIntensity`); NaN when absent.
    pub min: f64,
    /// Maximum (`MaxIntensity`); NaN when absent.
    pub max: f64,
}

/// Intensity statistics of `image` in every object `1..=count`, index `i` = label `i + 1`.
///
/// Uses Welford's running variance so one pass suffices and the standard deviation does not
/// suffer from cancellation. Labels above `count` are ignored.
///
/// # Panics
/// If `image` does not have the size of `labels`.
pub fn measure_intensity<T: Pixel>(labels: &Labels, image: ImageView<T>) -> Vec<ObjectIntensity> {
    assert!(
        image.width() == labels.width() && image.height() == labels.height(),
        "measure_intensity: image is {}x{}, labels are {}x{}",
        image.width(),
        image.height(),
        labels.width(),
        labels.height()
    );
    let n = labels.count() as usize;
    let mut count = vec![0u64; n + 1];
    let mut sum = vec![0f64; n + 1];
    let mut mean = vec![0f64; n + 1];
    let mut m2 = vec![0f64; n + 1];
    let mut lo = vec![f64::INFINITY; n + 1];
    let mut hi = vec![f64::NEG_INFINITY; n + 1];
    let scale = T::MAX;
    let lab = labels.image();
    for r in 0..labels.height() {
        for (&l, &p) in lab.row(r).iter().zip(image.row(r)) {
            let l = l as usize;
            if l == 0 || l > n {
                continue;
            }
            let v = p.to_f64() / scale;
            count[l] += 1;
            sum[l] += v;
            let k = count[l] as f64;
            let d = v - mean[l];
            mean[l] += d / k;
            m2[l] += d * (v - mean[l]);
            lo[l] = lo[l].min(v);
            hi[l] = hi[l].max(v);
        }
    }
    (1..=n)
        .map(|l| {
            if count[l] == 0 {
                return ObjectIntensity {
                    integrated: 0.0,
                    mean: f64::NAN,
                    std: f64::NAN,
                    min: f64::NAN,
                    max: f64::NAN,
                };
            }
            let k = count[l] as f64;
            ObjectIntensity {
                integrated: sum[l],
                mean: sum[l] / k,
                std: (m2[l] / k).max(0.0).sqrt(),
                min: lo[l],
                max: hi[l],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn shape_of_small_objects() {
        let img = Image::from_vec(4, 3, vec![1, 1, 0, 0, 1, 0, 0, 3, 0, 0, 0, 3]).unwrap();
        let s = measure_shape(&Labels::from_image(img));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].area, 3);
        assert!((s[0].center_x - 1.0 / 3.0).abs() < 1e-12);
        assert!((s[0].center_y - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((s[0].bbox_min_x, s[0].bbox_max_x), (0, 2));
        assert_eq!((s[0].bbox_min_y, s[0].bbox_max_y), (0, 2));
        assert_eq!(s[1].area, 0);
        assert!(s[1].center_x.is_nan());
        assert_eq!(
            (s[2].label, s[2].area, s[2].center_x, s[2].center_y),
            (3, 2, 3.0, 1.5)
        );
    }

    #[test]
    fn intensity_is_scaled_like_cellprofiler() {
        let lab = Image::from_vec(3, 1, vec![1u32, 1, 0]).unwrap();
        let px = Image::from_vec(3, 1, vec![0u16, 65535, 999]).unwrap();
        let m = measure_intensity(&Labels::new(lab, 2), px.view());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].integrated, 1.0);
        assert_eq!(m[0].mean, 0.5);
        assert!((m[0].std - 0.5).abs() < 1e-15);
        assert_eq!((m[0].min, m[0].max), (0.0, 1.0));
        assert_eq!(m[1].integrated, 0.0);
        assert!(m[1].mean.is_nan());
        let px8 = Image::from_vec(3, 1, vec![51u8, 51, 0]).unwrap();
        let lab = Labels::from_image(Image::from_vec(3, 1, vec![1u32, 1, 0]).unwrap());
        let m8 = measure_intensity(&lab, px8.view());
        assert!((m8[0].mean - 0.2).abs() < 1e-15);
        assert_eq!(m8[0].std, 0.0);
    }
}
