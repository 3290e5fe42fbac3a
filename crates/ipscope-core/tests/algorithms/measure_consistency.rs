//! The full measurement sets agree with the foundation's `measure_shape`/`measure_intensity`
//! and obey their definitions' invariants on random label images. (Parity with scikit-image
//! and cp-measure on real images: `crates/ipscope-cli/tests/cli/measure.rs`.)

use ipscope_core::ops::measure::{
    measure_intensity, measure_intensity_features, measure_shape, measure_shape_features,
};
use ipscope_image::{Image, Labels};

/// Deterministic xorshift so the test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random overlapping ellipses painted in order (later ones win), some touching the border.
fn random_field(seed: u64, w: usize, h: usize, n: u32) -> (Labels, Image<u16>) {
    let mut rng = Rng(seed);
    let mut lab = Image::new(w, h, 0u32);
    for l in 1..=n {
        let (cr, cc) = (rng.below(h as u64) as f64, rng.below(w as u64) as f64);
        let (a, b) = (2.0 + rng.below(9) as f64, 2.0 + rng.below(9) as f64);
        let t = rng.below(180) as f64 * std::f64::consts::PI / 180.0;
        for r in 0..h {
            for c in 0..w {
                let (y, x) = (r as f64 - cr, c as f64 - cc);
                let u = x * t.cos() + y * t.sin();
                let v = -x * t.sin() + y * t.cos();
                if (u / a).powi(2) + (v / b).powi(2) <= 1.0 {
                    lab.set(r, c, l);
                }
            }
        }
    }
    let px = Image::from_fn(w, h, |_, _| rng.below(4096) as u16);
    (Labels::new(lab, n), px)
}

#[test]
fn full_sets_agree_with_the_basic_ones_and_their_invariants() {
    for seed in 1..=5u64 {
        let (labels, px) = random_field(seed * 7919, 97, 83, 40);
        let basic = measure_shape(&labels);
        let full = measure_shape_features(&labels);
        let bi = measure_intensity(&labels, px.view());
        let fi = measure_intensity_features(&labels, px.view());
        assert_eq!(basic.len(), full.len());
        for ((b, f), (x, y)) in basic.iter().zip(&full).zip(bi.iter().zip(&fi)) {
            assert_eq!((b.label, b.area), (f.label, f.area));
            if b.area == 0 {
                assert!(f.perimeter.is_nan() && y.mean.is_nan());
                continue;
            }
            assert!((b.center_x - f.center_x).abs() < 1e-9);
            assert!((b.center_y - f.center_y).abs() < 1e-9);
            assert_eq!(
                (b.bbox_min_x, b.bbox_min_y, b.bbox_max_x, b.bbox_max_y),
                (f.bbox_min_x, f.bbox_min_y, f.bbox_max_x, f.bbox_max_y)
            );
            assert!(f.convex_area >= f.area && f.solidity <= 1.0 && f.extent <= 1.0);
            assert!(f.bbox_area >= f.convex_area);
            assert!(f.min_feret <= f.max_feret + 1e-12);
            // Equal axes (a round object) may differ in the last bit.
            assert!(
                f.minor_axis_length <= f.major_axis_length * (1.0 + 1e-12),
                "minor {} > major {} (area {})",
                f.minor_axis_length,
                f.major_axis_length,
                f.area
            );
            assert!((0.0..=1.0).contains(&f.eccentricity));
            assert!((-90.0..=90.0).contains(&f.orientation));
            // Painting over can split an object, so the Euler number may exceed 1.
            assert!(f.perimeter > 0.0 && f.euler_number <= f.area as i64);
            assert!((x.integrated - y.integrated).abs() <= 1e-9 * x.integrated.max(1.0));
            assert!((x.mean - y.mean).abs() < 1e-12 && (x.std - y.std).abs() < 1e-9);
            assert_eq!((x.min, x.max), (y.min, y.max));
            assert!(y.min <= y.lower_quartile && y.lower_quartile <= y.median);
            assert!(y.median <= y.upper_quartile && y.upper_quartile <= y.max);
            assert!(y.min_edge >= y.min && y.max_edge <= y.max);
            assert!(y.integrated_edge <= y.integrated + 1e-12);
        }
    }
}

#[test]
fn measurements_are_deterministic() {
    let (labels, px) = random_field(42, 64, 64, 25);
    assert_eq!(
        format!("{:?}", measure_shape_features(&labels)),
        format!("{:?}", measure_shape_features(&labels))
    );
    assert_eq!(
        format!("{:?}", measure_intensity_features(&labels, px.view())),
        format!("{:?}", measure_intensity_features(&labels, px.view()))
    );
}
