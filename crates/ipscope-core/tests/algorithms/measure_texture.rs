//! Parity of Texture (Haralick) and Zernike with cp-measure (CellProfiler's MeasureTexture and
//! MeasureObjectSizeShape's Zernike features as a library) on real label images.
//!
//! Reference values: `testdata/reference/measure/texture_zernike.json`, written by
//! `testdata/reference/measure/make_texture_zernike_refs.py` (texture at scale 3, 4 directions,
//! 256 grey levels; Zernike up to degree 9). The images are read from `$IPSCOPE_DATA` (default
//! `../shared/data`); the test prints a message and passes when they are absent.
//!
//! Tolerance: 1e-6 absolute + 1e-6 relative on every value (stored with 9 significant digits);
//! an object agrees when all its values of a family (one texture direction, or all 30 Zernike
//! features) do, and each family must agree on at least 99.5 % of the objects.

use crate::common;
use common::*;

use std::collections::BTreeMap;

use ipscope_core::ops::measure::{
    measure_texture, measure_zernike, zernike_indexes, HARALICK_FEATURES,
};
use ipscope_image::with_dyn_image;
use ipscope_io::{read_image, ReadOptions};
use serde_json::Value;

#[test]
fn texture_and_zernike_match_cp_measure() {
    let data = data_dir();
    if !data.join("dsb2018_fluo_subset").is_dir() {
        eprintln!(
            "skipping texture/zernike parity: {} not found (set IPSCOPE_DATA)",
            data.display()
        );
        return;
    }
    let path = repo().join("testdata/reference/measure/texture_zernike.json");
    let text = std::fs::read_to_string(&path).expect("reference json");
    let r: Value = serde_json::from_str(&text).expect("parse reference");
    let opts = ReadOptions::default();
    let zidx = zernike_indexes();
    let mut objects = 0usize;
    // family -> (objects off, worst deviation, first offender)
    let mut stats: BTreeMap<String, (usize, f64, String)> = BTreeMap::new();
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
        let texture = with_dyn_image!(&image, img => measure_texture(&labels, img.view(), 3));
        let zernike = measure_zernike(&labels);
        let want = |name: &str, k: usize| cols[name].as_array().unwrap()[k].as_f64();
        for (k, &id) in ids.iter().enumerate() {
            objects += 1;
            let mut check = |family: String, pairs: Vec<(&str, f64, Option<f64>)>| {
                let e = stats.entry(family).or_insert((0, 0.0, String::new()));
                let mut ok = true;
                for (name, got, want) in pairs {
                    if !close(got, want) {
                        if ok && e.2.is_empty() {
                            e.2 =
                                format!("{} label {id} {name}: {got} vs {want:?}", field["image"]);
                        }
                        ok = false;
                    }
                    if let Some(w) = want {
                        e.1 = e.1.max((got - w).abs() / w.abs().max(1.0));
                    }
                }
                if !ok {
                    e.0 += 1;
                }
            };
            let t = &texture[id - 1];
            for (d, dir) in t.iter().enumerate() {
                check(
                    format!("Texture_3_0{d}"),
                    HARALICK_FEATURES
                        .iter()
                        .enumerate()
                        .map(|(f, name)| (*name, dir[f], want(&format!("{name}_3_0{d}_256"), k)))
                        .collect(),
                );
            }
            let z = &zernike[id - 1];
            let names: Vec<String> = zidx
                .iter()
                .map(|(n, m)| format!("Zernike_{n}_{m}"))
                .collect();
            check(
                "Zernike".to_string(),
                names
                    .iter()
                    .enumerate()
                    .map(|(f, name)| (name.as_str(), z[f], want(name, k)))
                    .collect(),
            );
        }
    }
    assert!(objects > 900, "only {objects} objects compared");
    for (family, (off, worst, first)) in &stats {
        let share = 1.0 - *off as f64 / objects as f64;
        eprintln!(
            "{family}: {} of {objects} objects agree ({:.2} %), largest relative deviation {worst:.3e}{}",
            objects - off,
            100.0 * share,
            if first.is_empty() { String::new() } else { format!("; first miss: {first}") }
        );
        assert!(
            share >= 0.995,
            "{family}: only {:.2} % of objects agree",
            100.0 * share
        );
    }
}
