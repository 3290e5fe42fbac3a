//! Propagation (cells from nuclei) against CellProfiler's own implementation,
//! `centrosome.propagate.propagate` with λ = 0.05, on a 200×200 crop of ExampleHuman's cell
//! stain (`testdata/reference/segmentation/make_propagate_refs.py` → `propagate.json`).
//! Labels must agree on at least 99.5 % of the mask's pixels; the remaining pixels can
//! differ only where two paths cost the same up to float rounding (f32 image here, f64 in
//! centrosome; centrosome's queue breaks ties in its own order).

use crate::common;

use ipscope_core::assays::cells::propagate;
use ipscope_image::{Image, Labels};
use serde_json::Value;

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Decodes `[value, run, value, run, ...]` into `n` pixels.
fn unrle(v: &Value, n: usize) -> Vec<u32> {
    let pairs = ints(v);
    let mut out = Vec::with_capacity(n);
    for p in pairs.chunks(2) {
        out.extend(std::iter::repeat_n(p[0] as u32, p[1] as usize));
    }
    assert_eq!(out.len(), n, "run lengths do not add up to the image size");
    out
}

#[test]
fn propagation_matches_centrosome() {
    let path = common::repo().join("testdata/reference/segmentation/propagate.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (w, h) = (
        v["width"].as_u64().unwrap() as usize,
        v["height"].as_u64().unwrap() as usize,
    );
    let n = w * h;
    let pixels: Vec<f32> = ints(&v["image_u8"])
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    let img = Image::from_vec(w, h, pixels).unwrap();
    let seeds = Labels::from_image(Image::from_vec(w, h, unrle(&v["seeds_rle"], n)).unwrap());
    assert_eq!(u64::from(seeds.count()), v["n_seeds"].as_u64().unwrap());
    let mask_v = unrle(&v["mask_rle"], n);
    let mask = Image::from_vec(w, h, mask_v.iter().map(|&m| m != 0).collect()).unwrap();
    let expected = unrle(&v["labels_rle"], n);
    let lambda = v["lambda"].as_f64().unwrap();

    let got = propagate(&img, &seeds, &mask, lambda);
    let got = got.image().as_slice();
    let in_mask = mask_v.iter().filter(|&&m| m != 0).count();
    let mut agree = 0usize;
    for i in 0..n {
        if mask_v[i] == 0 {
            assert_eq!(got[i], 0, "pixel {i} outside the mask was labelled");
            assert_eq!(expected[i], 0);
        } else if got[i] == expected[i] {
            agree += 1;
        }
    }
    let share = agree as f64 / in_mask as f64;
    println!(
        "propagation vs centrosome: {agree} of {in_mask} mask pixels agree ({:.3} %)",
        100.0 * share
    );
    assert!(in_mask > 10_000, "too small a mask to judge: {in_mask}");
    assert!(
        share >= 0.995,
        "only {:.3} % of mask pixels agree",
        100.0 * share
    );
}
