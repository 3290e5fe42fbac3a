//! Parity of the Frangi and Meijering ridge filters (ops/ridge.rs) with scikit-image.
//!
//! Inputs and outputs come from `testdata/reference/assays/ridge_filters_ref.py`
//! (`skimage.filters.frangi` / `meijering` with `black_ridges=False`; version in the JSON);
//! tolerance as for Sato: within 1e-4 of the case's largest response (float32 filtering).

use crate::common;
use crate::common::f32_image;

use ipscope_core::ops::ridge::{frangi, meijering, FrangiParams, MeijeringParams, RidgeFilter};
use ipscope_image::Image;

/// Worst |got − want| over the image and the reference's largest response.
fn compare(got: &Image<f32>, want: &Image<f32>) -> (f32, f32) {
    assert_eq!((got.width(), got.height()), (want.width(), want.height()));
    let peak = want.as_slice().iter().fold(0f32, |a, &b| a.max(b));
    let worst = got
        .as_slice()
        .iter()
        .zip(want.as_slice())
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    (worst, peak)
}

#[test]
fn frangi_and_meijering_match_skimage_within_tolerance() {
    let refs = common::reference_json("assays", "ridge_filters.json");
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for (k, case) in cases.iter().enumerate() {
        let img = f32_image(&case["image"]);
        let sigmas: Vec<f32> = case["sigmas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let got = frangi(
            img.view(),
            &FrangiParams {
                sigmas: sigmas.clone(),
                ..FrangiParams::default()
            },
        );
        let (worst, peak) = compare(&got, &f32_image(&case["frangi"]));
        eprintln!("case {k} frangi: worst {worst:.2e}, peak {peak:.3}");
        assert!(peak > 0.1, "case {k}: frangi reference is flat");
        assert!(
            worst <= 1e-4 * peak,
            "case {k} frangi: worst |diff| {worst} vs peak {peak}"
        );
        // The response is not trivially zero where the reference has structure.
        assert!(got.as_slice().iter().filter(|&&v| v > 0.5 * peak).count() > 10);

        let got = meijering(
            img.view(),
            &MeijeringParams {
                sigmas: sigmas.clone(),
                ..MeijeringParams::default()
            },
        );
        let (worst, peak) = compare(&got, &f32_image(&case["meijering"]));
        eprintln!("case {k} meijering: worst {worst:.2e}, peak {peak:.3}");
        assert!(peak > 0.1, "case {k}: meijering reference is flat");
        assert!(
            worst <= 1e-4 * peak,
            "case {k} meijering: worst |diff| {worst} vs peak {peak}"
        );

        // The selector gives the same images.
        assert_eq!(
            RidgeFilter::Meijering
                .apply(img.view(), &sigmas, true)
                .as_slice(),
            got.as_slice()
        );
    }
}
