//! `ops::illumination` against SciPy and centrosome (CellProfiler's library) on the same
//! fields: `testdata/reference/segmentation/make_illumination_refs.py` → `illumination.json`.
//!
//! Tolerances: the average is summed in the same order as the script (bit-exact); the median
//! works on integers (exact); the Gaussian and the polynomial fit sum in another order than
//! SciPy / LAPACK (1e-12 relative / 1e-10 absolute); functions stored as f32 (1e-6 relative).

use crate::common;
use crate::common::{dims, u16_image};

use ipscope_core::ops::illumination::{
    correct, illumination_function, median_disk, smooth_average, IllumIntensity, IllumRescale,
    IllumSmoothing, IlluminationParams, IlluminationSum,
};
use ipscope_image::Image;
use serde_json::Value;

fn refs() -> Value {
    let path = common::repo().join("testdata/reference/segmentation/illumination.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("illumination.json is JSON")
}

fn f64_image(v: &Value) -> Image<f64> {
    assert_eq!(v["dtype"], "f64le-b64");
    let (w, h) = dims(v);
    let data = common::b64(v["data"].as_str().unwrap())
        .chunks(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Image::from_vec(w, h, data).unwrap()
}

/// Largest |a − b| / (abs + rel·|b|) over the pixels; ≤ 1 passes.
fn worst(a: &[f64], b: &[f64], abs: f64, rel: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (abs + rel * y.abs()))
        .fold(0.0, f64::max)
}

fn mean_of_fields(r: &Value) -> Image<f64> {
    let fields: Vec<Image<u16>> = r["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(u16_image)
        .collect();
    let mut sum = IlluminationSum::new(fields[0].width(), fields[0].height());
    for f in &fields {
        sum.add(f.view()).unwrap();
    }
    assert_eq!(sum.count(), 3);
    sum.mean()
}

#[test]
fn average_is_bit_identical_and_median_exact() {
    let r = refs();
    let mean = mean_of_fields(&r);
    assert_eq!(mean, f64_image(&r["mean"]));
    let size = r["size"].as_f64().unwrap();
    // CellProfiler's radius rule: max(1, int(size / 2.35 + 0.5)).
    let q = mean.map(|v| (v * 65535.0) as u16);
    let radius = ((size / 2.35 + 0.5) as usize).max(1);
    assert_eq!(median_disk(q.view(), radius), u16_image(&r["median_u16"]));
    let p = IlluminationParams {
        method: IllumSmoothing::Median,
        size: Some(size),
        rescale: IllumRescale::None,
        ..IlluminationParams::default()
    };
    let want = u16_image(&r["median_u16"]).map(|v| f64::from(v) / 65535.0);
    assert_eq!(smooth_average(mean.view(), &p), want);
    let auto = IlluminationParams { size: None, ..p };
    let want = u16_image(&r["median_auto_u16"]).map(|v| f64::from(v) / 65535.0);
    assert_eq!(smooth_average(mean.view(), &auto), want);
}

#[test]
fn background_average_is_bit_identical() {
    let r = refs();
    let fields: Vec<Image<u16>> = r["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(u16_image)
        .collect();
    let p = IlluminationParams {
        intensity: IllumIntensity::Background,
        block_size: 16,
        ..IlluminationParams::default()
    };
    let mut sum = IlluminationSum::new(fields[0].width(), fields[0].height());
    for f in &fields {
        sum.add_field(f.view(), &p).unwrap();
    }
    assert_eq!(sum.mean(), f64_image(&r["background_block16"]));
}

#[test]
fn gaussian_and_polynomial_match_centrosome() {
    let r = refs();
    let mean = mean_of_fields(&r);
    let size = Some(r["size"].as_f64().unwrap());
    for (method, key, abs, rel) in [
        (IllumSmoothing::Gaussian, "gaussian", 0.0, 1e-12),
        (IllumSmoothing::Polynomial, "polynomial", 1e-10, 0.0),
    ] {
        let p = IlluminationParams {
            method,
            size,
            rescale: IllumRescale::None,
            ..IlluminationParams::default()
        };
        let got = smooth_average(mean.view(), &p);
        let want = f64_image(&r[key]);
        let e = worst(got.as_slice(), want.as_slice(), abs, rel);
        assert!(e <= 1.0, "{key}: worst error {e} × tolerance");
    }
}

#[test]
fn rescaled_functions_and_correction_match_cellprofiler() {
    let r = refs();
    let mean = mean_of_fields(&r);
    let size = Some(r["size"].as_f64().unwrap());
    for (method, rescale, key) in [
        (
            IllumSmoothing::Median,
            IllumRescale::RobustMinimum,
            "illum_median_rescale_yes",
        ),
        (
            IllumSmoothing::Gaussian,
            IllumRescale::Median,
            "illum_gaussian_rescale_median",
        ),
        (
            IllumSmoothing::Polynomial,
            IllumRescale::RobustMinimum,
            "illum_polynomial_rescale_yes",
        ),
    ] {
        let p = IlluminationParams {
            method,
            size,
            rescale,
            ..IlluminationParams::default()
        };
        let got: Vec<f64> = illumination_function(mean.view(), &p)
            .as_slice()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let want = f64_image(&r[key]);
        let e = worst(&got, want.as_slice(), 0.0, 1e-6);
        assert!(e <= 1.0, "{key}: worst error {e} × tolerance");
    }
    let p = IlluminationParams {
        method: IllumSmoothing::Median,
        size,
        ..IlluminationParams::default()
    };
    let illum = illumination_function(mean.view(), &p);
    let field0 = u16_image(&r["fields"][0]);
    let got: Vec<f64> = correct(field0.view(), illum.view())
        .unwrap()
        .as_slice()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let want = f64_image(&r["corrected_field0_median"]);
    let e = worst(&got, want.as_slice(), 1e-7, 1e-6);
    assert!(e <= 1.0, "corrected field: worst error {e} × tolerance");
}
