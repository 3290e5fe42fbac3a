//! Parity of core's ops with SciPy / scikit-image.
//!
//! The inputs and the peers' outputs come from `testdata/reference/core/make_core_refs.py`
//! (versions in that folder's README); this test only reads the committed JSON.
//! Tolerances: labels and peaks exact (after raster relabelling where numbering differs),
//! Otsu thresholds bit-exact, Gaussian and EDT within 1e-4 absolute, measurements within
//! 1e-6 relative.

use crate::common;
use crate::common::{dims, f32_image, u16_image};

use ipscope_core::ops::distance::distance_transform_edt;
use ipscope_core::ops::filter::gaussian_blur;
use ipscope_core::ops::label::{label, relabel_sequential, Connectivity};
use ipscope_core::ops::measure::{measure_intensity, measure_shape};
use ipscope_core::ops::morphology::fill_holes;
use ipscope_core::ops::peaks::peak_local_max;
use ipscope_core::ops::threshold::otsu;
use ipscope_core::ops::watershed::watershed;
use ipscope_core::{segment_nuclei, DeclumpMethod, NucleiParams, ThresholdMethod};
use ipscope_image::{Image, Labels};
use serde_json::Value;

fn ints(v: &Value) -> Vec<u64> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn bool_image(v: &Value) -> Image<bool> {
    assert_eq!(v["dtype"], "bool");
    let (w, h) = dims(v);
    Image::from_vec(w, h, ints(v).into_iter().map(|x| x != 0).collect()).unwrap()
}

fn label_image(v: &Value) -> Labels {
    assert_eq!(v["dtype"], "u32");
    let (w, h) = dims(v);
    Labels::from_image(
        Image::from_vec(w, h, ints(v).into_iter().map(|x| x as u32).collect()).unwrap(),
    )
}

fn assert_close(what: &str, got: &Image<f32>, want: &Image<f32>, tol: f32) {
    assert_eq!(
        (got.width(), got.height()),
        (want.width(), want.height()),
        "{what}"
    );
    let mut worst = 0f32;
    for (i, (&g, &w)) in got.as_slice().iter().zip(want.as_slice()).enumerate() {
        let d = (g - w).abs();
        assert!(d <= tol, "{what}: pixel {i}: got {g}, want {w}");
        worst = worst.max(d);
    }
    eprintln!("{what}: max abs diff {worst:e}");
}

fn rel_close(what: &str, got: f64, want: f64) {
    let scale = want.abs().max(1e-12);
    assert!(
        (got - want).abs() / scale <= 1e-6,
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn gaussian_matches_scipy_gaussian_filter() {
    let r = common::reference_json("core", "gaussian.json");
    for case in r["cases"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let sigma = case["sigma"].as_f64().unwrap() as f32;
        let input = f32_image(&r["inputs"][name]);
        let got = gaussian_blur(input.view(), sigma);
        assert_close(
            &format!("gaussian {name} σ={sigma}"),
            &got,
            &f32_image(&case["output"]),
            1e-4,
        );
    }
}

#[test]
fn otsu_matches_skimage_bit_for_bit() {
    let r = common::reference_json("core", "otsu.json");
    let blobs = f32_image(&r["inputs"]["blobs"]);
    for case in r["cases"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let img = if name == "blobs_s1" {
            let g = common::reference_json("core", "gaussian.json");
            assert_eq!(g["inputs"]["blobs"], r["inputs"]["blobs"]);
            gaussian_blur(blobs.view(), 1.0)
        } else {
            f32_image(&r["inputs"][name])
        };
        let nbins = case["nbins"].as_u64().unwrap() as usize;
        let want = f32::from_bits(case["threshold_bits"].as_u64().unwrap() as u32);
        let got = otsu(img.view(), nbins).expect("threshold");
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "otsu {name} nbins={nbins}: got {got}, want {want}"
        );
    }
}

#[test]
fn fill_holes_label_and_edt_match_scipy_and_skimage() {
    let r = common::reference_json("core", "binary.json");
    let input = |name: &str| bool_image(&r["inputs"][name]);
    for case in r["fill_holes"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        assert_eq!(
            fill_holes(input(name).view()),
            bool_image(&case["output"]),
            "fill_holes {name}"
        );
    }
    for case in r["label"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let conn = match case["connectivity"].as_u64().unwrap() {
            1 => Connectivity::Four,
            _ => Connectivity::Eight,
        };
        let want = label_image(&case["output"]);
        let got = label(input(name).view(), conn);
        // skimage numbers in raster order of first pixel too: no relabelling needed.
        assert_eq!(got, want, "label {name} {conn:?}");
    }
    for case in r["edt"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let got = distance_transform_edt(input(name).view());
        assert_close(
            &format!("edt {name}"),
            &got,
            &f32_image(&case["output"]),
            1e-4,
        );
    }
}

#[test]
fn peak_local_max_matches_skimage_including_order() {
    let r = common::reference_json("core", "peaks.json");
    for case in r["cases"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let img = f32_image(&r["inputs"][name]);
        let md = case["min_distance"].as_u64().unwrap() as usize;
        let thr = case["threshold_abs"].as_f64().unwrap() as f32;
        let labels = case["labels"]
            .as_str()
            .map(|l| label_image(&r["labels"][l]));
        let got = peak_local_max(img.view(), md, thr, labels.as_ref());
        let want: Vec<(usize, usize)> = case["peaks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "peaks {name} md={md} thr={thr} labels={:?}",
            case["labels"]
        );
    }
}

#[test]
fn watershed_matches_skimage_pixel_for_pixel() {
    let r = common::reference_json("core", "watershed.json");
    for (k, case) in r["cases"].as_array().unwrap().iter().enumerate() {
        let elev = f32_image(&case["elevation"]);
        let markers = label_image(&case["markers"]);
        let mask = (!case["mask"].is_null()).then(|| bool_image(&case["mask"]));
        let got = watershed(elev.view(), &markers, mask.as_ref().map(|m| m.view()));
        let want = label_image(&case["output"]);
        assert_eq!(got.image(), want.image(), "watershed case {k}");
    }
}

#[test]
fn measurements_match_regionprops() {
    let r = common::reference_json("core", "measure.json");
    let labels = label_image(&r["labels"]);
    let intensity = u16_image(&r["intensity_u16"]);
    let shapes = measure_shape(&labels);
    let inten = measure_intensity(&labels, intensity.view());
    let objects = r["objects"].as_array().unwrap();
    assert_eq!(shapes.len(), objects.len());
    for (o, (s, m)) in objects.iter().zip(shapes.iter().zip(&inten)) {
        let l = o["label"].as_u64().unwrap();
        assert_eq!(u64::from(s.label), l);
        assert_eq!(s.area, o["area"].as_u64().unwrap(), "area {l}");
        let bbox: Vec<usize> = o["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            bbox,
            vec![s.bbox_min_y, s.bbox_min_x, s.bbox_max_y, s.bbox_max_x],
            "bbox {l}"
        );
        let f = |k: &str| o[k].as_f64().unwrap();
        rel_close("center_x", s.center_x, f("center_x"));
        rel_close("center_y", s.center_y, f("center_y"));
        rel_close("integrated", m.integrated, f("integrated"));
        rel_close("mean", m.mean, f("mean"));
        rel_close("std", m.std, f("std"));
        rel_close("min", m.min, f("min"));
        rel_close("max", m.max, f("max"));
    }
}

#[test]
fn nuclei_pipeline_matches_the_same_steps_in_skimage() {
    let r = common::reference_json("core", "nuclei.json");
    for (k, case) in r["cases"].as_array().unwrap().iter().enumerate() {
        let img = u16_image(&case["input"]);
        let params = NucleiParams {
            min_seed_distance: Some(case["min_seed_distance"].as_u64().unwrap() as usize),
            declump_method: DeclumpMethod::Shape,
            // make_core_refs.py filters areas for diameters 8..80 px
            min_diameter: 8.0,
            max_diameter: 80.0,
            // The steps of make_core_refs.py: Otsu on the smoothed image, no background
            // subtraction, no per-object threshold.
            threshold_method: ThresholdMethod::Otsu,
            background_radius: 0.0,
            object_contrast: 0.0,
            ..NucleiParams::default()
        };
        let res = segment_nuclei(img.view(), &params);
        let t = f32::from_bits(case["threshold_bits"].as_u64().unwrap() as u32);
        assert_eq!(res.threshold, f64::from(t), "threshold case {k}");
        let want = relabel_sequential(&label_image(&case["labels"]));
        assert_eq!(res.labels, want, "labels case {k}");
    }
}
