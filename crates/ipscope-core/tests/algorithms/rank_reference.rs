//! Square-window grey erosion, dilation and opening (`ops::rank`, used for the top-hat
//! background of nuclei segmentation) against SciPy's `grey_erosion` / `grey_dilation` /
//! `grey_opening` with `mode='nearest'`
//! (`testdata/reference/segmentation/make_rank_refs.py` → `rank.json`). Exact equality: a
//! minimum or maximum only copies input values.

use crate::common;

use ipscope_core::ops::rank::{dilate, erode, open};
use ipscope_image::Image;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn rank_filters_equal_scipy() {
    let path = common::repo().join("testdata/reference/segmentation/rank.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (w, h) = (
        v["width"].as_u64().unwrap() as usize,
        v["height"].as_u64().unwrap() as usize,
    );
    let img = Image::from_vec(w, h, floats(&v["image"])).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let r = case["radius"].as_u64().unwrap() as usize;
        assert_eq!(
            erode(img.view(), r).as_slice(),
            &floats(&case["erosion"])[..],
            "erosion r={r}"
        );
        assert_eq!(
            dilate(img.view(), r).as_slice(),
            &floats(&case["dilation"])[..],
            "dilation r={r}"
        );
        assert_eq!(
            open(img.view(), r).as_slice(),
            &floats(&case["opening"])[..],
            "opening r={r}"
        );
    }
}
