//! Parity of the thresholds in `ops::threshold` with scikit-image (and CellProfiler's
//! robust background, as centrosome computes it).
//!
//! Inputs and the peers' outputs come from
//! `testdata/reference/segmentation/make_threshold_refs.py`; this test only reads the
//! committed JSON. Tolerances: multi-Otsu and triangle thresholds bit-exact (same
//! histogram, same bin centre); Li and robust background within 1e-12 relative (both run in
//! f64 on the same float64 pixels); local threshold images within 1e-6 absolute
//! (float32 Gaussian, as `reference.rs` for `gaussian_blur`).

use crate::common::f32_image;

use std::path::PathBuf;

use ipscope_core::ops::expand::expand_labels;
use ipscope_core::ops::threshold::{
    li, li_f64, local, multiotsu, robust_background_f64, triangle, RobustBackgroundParams,
};
use ipscope_image::{Image, Labels};
use serde_json::Value;

fn load() -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "testdata",
        "reference",
        "segmentation",
        "thresholds.json",
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("thresholds.json is JSON")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn multiotsu_is_bit_exact() {
    let refs = load();
    for case in refs["cases"].as_array().unwrap() {
        let img = f32_image(&case["image"]);
        let name = case["name"].as_str().unwrap();
        let t3 = multiotsu(img.view(), 3, 256).unwrap();
        assert_eq!(t3, f32s(&case["multiotsu3"]), "{name}: 3 classes");
        let t2 = multiotsu(img.view(), 2, 256).unwrap();
        assert_eq!(t2, f32s(&case["multiotsu2"]), "{name}: 2 classes");
    }
}

#[test]
fn triangle_is_bit_exact() {
    for case in load()["cases"].as_array().unwrap() {
        let img = f32_image(&case["image"]);
        let want = case["triangle"].as_f64().unwrap() as f32;
        assert_eq!(triangle(img.view(), 256), Some(want), "{}", case["name"]);
    }
}

fn pixels(img: &Image<f32>) -> Vec<f64> {
    img.as_slice().iter().map(|&v| f64::from(v)).collect()
}

#[test]
fn li_matches_in_f64() {
    for case in load()["cases"].as_array().unwrap() {
        let img = f32_image(&case["image"]);
        let want = case["li"].as_f64().unwrap();
        let got = li_f64(&pixels(&img)).unwrap();
        assert!(
            (got - want).abs() <= 1e-12 * want.abs(),
            "{}: {got} vs {want}",
            case["name"]
        );
        // The f32 entry point (sorted values, one pixel pass) gives the same bits.
        assert_eq!(li(img.view()), Some(got as f32), "{}", case["name"]);
    }
}

#[test]
fn robust_background_matches_centrosome() {
    for case in load()["cases"].as_array().unwrap() {
        let img = f32_image(&case["image"]);
        let got = robust_background_f64(&pixels(&img), &RobustBackgroundParams::default());
        match case["robust"].as_f64() {
            Some(want) => {
                let got = got.unwrap();
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs(),
                    "{}: {got} vs {want}",
                    case["name"]
                );
            }
            None => assert_eq!(got, None),
        }
    }
}

#[test]
fn local_threshold_matches_threshold_local() {
    let mut n = 0;
    for case in load()["cases"].as_array().unwrap() {
        let img = f32_image(&case["image"]);
        for l in case["local"].as_array().unwrap() {
            let bs = l["block_size"].as_u64().unwrap() as usize;
            let off = l["offset"].as_f64().unwrap() as f32;
            let want = f32_image(&l["threshold"]);
            let got = local(img.view(), bs, off).unwrap();
            for (i, (a, b)) in got.as_slice().iter().zip(want.as_slice()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6,
                    "{} bs {bs} px {i}: {a} vs {b}",
                    case["name"]
                );
            }
            n += 1;
        }
    }
    assert!(n >= 6);
    let img = Image::new(4, 4, 0.5f32);
    assert!(local(img.view(), 4, 0.0).is_none());
    assert!(local(img.view(), 0, 0.0).is_none());
}

#[test]
fn degenerate_inputs_have_no_threshold() {
    for (w, h) in [(0, 0), (1, 1), (5, 1)] {
        let img = Image::new(w, h, 0.25f32);
        assert_eq!(multiotsu(img.view(), 3, 256), None);
        assert_eq!(triangle(img.view(), 256), None);
        assert_eq!(li_f64(&pixels(&img)), None);
        assert_eq!(
            robust_background_f64(&pixels(&img), &RobustBackgroundParams::default()),
            None
        );
    }
    let nan = Image::new(3, 3, f32::NAN);
    assert_eq!(multiotsu(nan.view(), 3, 256), None);
    let two = Image::from_vec(2, 1, vec![0.0f32, 1.0]).unwrap();
    assert_eq!(multiotsu(two.view(), 3, 256), None);
    assert_eq!(
        multiotsu(two.view(), 2, 256),
        Some(vec![f32s(&serde_json::json!([0.001953125]))[0]])
    );
}

fn u32_image(v: &Value) -> Image<u32> {
    let (w, h) = (
        v["width"].as_u64().unwrap() as usize,
        v["height"].as_u64().unwrap() as usize,
    );
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    Image::from_vec(w, h, data).unwrap()
}

/// Squared distance from (r, c) to the nearest pixel of object `l` in `labels`.
fn nearest_d2(labels: &Image<u32>, l: u32, r: usize, c: usize) -> i64 {
    let mut best = i64::MAX;
    for rr in 0..labels.height() {
        for cc in 0..labels.width() {
            if labels.get(rr, cc) == l {
                let d = (rr as i64 - r as i64).pow(2) + (cc as i64 - c as i64).pow(2);
                best = best.min(d);
            }
        }
    }
    best
}

#[test]
fn expand_labels_matches_scikit_image_up_to_ties() {
    let refs = load();
    let e = &refs["expand_labels"];
    let lab = u32_image(&e["labels"]);
    let n = lab.as_slice().iter().copied().max().unwrap_or(0);
    let labels = Labels::new(lab.clone(), n);
    for case in e["cases"].as_array().unwrap() {
        let d = case["distance"].as_f64().unwrap();
        let want = u32_image(&case["expanded"]);
        let got = expand_labels(&labels, d);
        let mut ties = 0;
        for r in 0..lab.height() {
            for c in 0..lab.width() {
                let (a, b) = (got.image().get(r, c), want.get(r, c));
                if a != b {
                    // Only an exact tie between two objects may differ.
                    assert!(a != 0 && b != 0, "distance {d} at ({r}, {c}): {a} vs {b}");
                    assert_eq!(
                        nearest_d2(&lab, a, r, c),
                        nearest_d2(&lab, b, r, c),
                        "distance {d} at ({r}, {c})"
                    );
                    ties += 1;
                }
            }
        }
        println!("distance {d}: {ties} tie pixels differ");
    }
}
