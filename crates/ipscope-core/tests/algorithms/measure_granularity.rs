//! Parity of Granularity and RadialDistribution with cp-measure (CellProfiler's
//! MeasureGranularity and MeasureObjectIntensityDistribution as a library) on real label images.
//!
//! Reference values: `testdata/reference/measure/granularity_radial.json`, written by
//! `testdata/reference/measure/make_granularity_radial_refs.py` (CellProfiler's default settings:
//! subsampling 0.25/0.25, element radius 10, 16 steps; 4 scaled radial bins). The images are read
//! from `$IPSCOPE_DATA` (default `../shared/data`); the test prints a message and passes when
//! they are absent.
//!
//! Tolerance: 1e-6 absolute + 1e-6 relative on every value (granularity in percent, fractions
//! and CVs unitless); an object agrees when all its values of a family do, and each family must
//! agree on at least 99.5 % of the objects.

use crate::common;
use common::*;

use std::collections::BTreeMap;

use ipscope_core::ops::measure::{
    measure_granularity, measure_radial_distribution, GranularityParams,
};
use ipscope_image::with_dyn_image;
use ipscope_io::{read_image, ReadOptions};
use serde_json::Value;

#[test]
fn granularity_and_radial_distribution_match_cp_measure() {
    let data = data_dir();
    if !data.join("dsb2018_fluo_subset").is_dir() {
        eprintln!(
            "skipping granularity/radial parity: {} not found (set IPSCOPE_DATA)",
            data.display()
        );
        return;
    }
    let path = repo().join("testdata/reference/measure/granularity_radial.json");
    let text = std::fs::read_to_string(&path).expect("reference json");
    let r: Value = serde_json::from_str(&text).expect("parse reference");
    let opts = ReadOptions::default();
    let mut objects = 0usize;
    // family -> (objects off, worst deviation)
    let mut stats: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for field in r["fields"].as_array().expect("fields") {
        let image = read_image(&data.join(field["image"].as_str().unwrap()), 0, &opts).unwrap();
        let labels =
            labels_of(read_image(&data.join(field["labels"].as_str().unwrap()), 0, &opts).unwrap());
        let cols = field["columns"].as_object().unwrap();
        let ids: Vec<usize> = cols["label"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (gran, radial) = with_dyn_image!(&image, img => (
            measure_granularity(&labels, img.view(), &GranularityParams::default()),
            measure_radial_distribution(&labels, img.view(), 4),
        ));
        let want = |name: &str, k: usize| cols[name].as_array().unwrap()[k].as_f64();
        for (k, &id) in ids.iter().enumerate() {
            objects += 1;
            let mut check = |family: &'static str, pairs: Vec<(f64, Option<f64>)>| {
                let e = stats.entry(family).or_insert((0, 0.0));
                let mut ok = true;
                for (got, want) in pairs {
                    if !close(got, want) {
                        ok = false;
                    }
                    if let Some(w) = want {
                        e.1 = e.1.max((got - w).abs());
                    }
                }
                if !ok {
                    e.0 += 1;
                }
            };
            let g = &gran.objects[id - 1];
            check(
                "Granularity",
                (0..16)
                    .map(|n| (g[n], want(&format!("Granularity_{}", n + 1), k)))
                    .collect(),
            );
            let rd = &radial[id - 1];
            for (family, values) in [
                ("FracAtD", &rd.frac_at_d),
                ("MeanFrac", &rd.mean_frac),
                ("RadialCV", &rd.radial_cv),
            ] {
                check(
                    family,
                    (0..4)
                        .map(|b| (values[b], want(&format!("{family}_{}of4", b + 1), k)))
                        .collect(),
                );
            }
        }
    }
    assert!(objects > 900, "only {objects} objects compared");
    for (family, (off, worst)) in &stats {
        let share = 1.0 - *off as f64 / objects as f64;
        eprintln!(
            "{family}: {} of {objects} objects agree ({:.2} %), largest deviation {worst:.3e}",
            objects - off,
            100.0 * share
        );
        assert!(
            share >= 0.995,
            "{family}: only {:.2} % of objects agree",
            100.0 * share
        );
    }
}

/// The image spectrum (`Granularity_<n>_<channel>` of the Image table) equals CellProfiler's
/// MeasureGranularity image measurement computed on cp-measure's own subsampled,
/// background-corrected image and reconstructions
/// (`testdata/reference/measure/image_granularity.json`, see its script): 16 values of each
/// of the 14 images within 1e-6 absolute + 1e-6 relative.
#[test]
fn image_granularity_matches_cellprofiler() {
    let data = data_dir();
    if !data.join("dsb2018_fluo_subset").is_dir() {
        eprintln!(
            "skipping image granularity parity: {} not found (set IPSCOPE_DATA)",
            data.display()
        );
        return;
    }
    let path = repo().join("testdata/reference/measure/image_granularity.json");
    let text = std::fs::read_to_string(&path).expect("reference json");
    let r: Value = serde_json::from_str(&text).expect("parse reference");
    let opts = ReadOptions::default();
    let (mut images, mut worst) = (0usize, 0f64);
    for field in r["fields"].as_array().expect("fields") {
        let name = field["image"].as_str().unwrap();
        let image = read_image(&data.join(name), 0, &opts).unwrap();
        // The image spectrum does not depend on the objects: one object covering nothing.
        let labels = ipscope_image::Labels::new(
            ipscope_image::Image::new(image.width(), image.height(), 0u32),
            0,
        );
        let gran = with_dyn_image!(&image, img =>
            measure_granularity(&labels, img.view(), &GranularityParams::default()));
        let want = field["granularity"].as_array().unwrap();
        assert_eq!(gran.image.len(), want.len(), "{name}");
        for (n, (got, w)) in gran.image.iter().zip(want).enumerate() {
            let w = w.as_f64();
            assert!(
                close(*got, w),
                "{name} Granularity_{}: {got} vs {w:?}",
                n + 1
            );
            if let Some(w) = w {
                worst = worst.max((got - w).abs());
            }
        }
        images += 1;
    }
    assert_eq!(images, 14);
    eprintln!("image granularity: {images} images agree, largest deviation {worst:.3e}");
}
