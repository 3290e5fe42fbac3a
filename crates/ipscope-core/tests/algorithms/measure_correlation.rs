//! Parity of the per-object colocalisation (CellProfiler's MeasureColocalization) with
//! cp-measure on CellProfiler's real ExampleHuman images: DNA against PH3 and against the cell
//! stain, objects = the 256 tiles of a 32-pixel grid (rebuilt here exactly as in the script).
//!
//! Reference values: `testdata/reference/measure/correlation.json`, written by
//! `testdata/reference/measure/make_correlation_refs.py`. Images from `$IPSCOPE_DATA` (default
//! `../shared/data`); the test prints a message and passes when they are absent.
//!
//! Tolerance: 1e-7 absolute + 1e-7 relative (values stored with 10 significant digits); every
//! measure must agree on at least 99.5 % of the 512 object-pairs.

use crate::common;
use common::*;

use std::path::Path;

use ipscope_core::ops::measure::{measure_colocalization, Colocalization};
use ipscope_image::{with_dyn_image, DynImage, Image, Labels};
use ipscope_io::{read_image, ReadOptions};
use serde_json::Value;

fn read(path: &Path) -> DynImage {
    read_image(path, 0, &ReadOptions::default()).unwrap()
}

#[test]
fn colocalization_matches_cp_measure() {
    let data = data_dir();
    if !data.join("cp_examplehuman").is_dir() {
        eprintln!(
            "skipping colocalisation parity: {} not found (set IPSCOPE_DATA)",
            data.display()
        );
        return;
    }
    let path = repo().join("testdata/reference/measure/correlation.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tile = r["tile"].as_u64().unwrap() as usize;
    type Get = fn(&Colocalization) -> f64;
    let measures: [(&str, Get); 9] = [
        ("Correlation_Pearson", |c| c.correlation),
        ("Correlation_Slope", |c| c.slope),
        ("Correlation_Manders_1", |c| c.manders_1),
        ("Correlation_Manders_2", |c| c.manders_2),
        ("Correlation_Overlap", |c| c.overlap),
        ("Correlation_K_1", |c| c.k1),
        ("Correlation_K_2", |c| c.k2),
        ("Correlation_RWC_1", |c| c.rwc_1),
        ("Correlation_RWC_2", |c| c.rwc_2),
    ];
    let mut off = [0usize; 9];
    let mut worst = [0f64; 9];
    let mut n = 0usize;
    for pair in r["pairs"].as_array().unwrap() {
        let a = read(&data.join(pair["first"].as_str().unwrap()));
        let b = read(&data.join(pair["second"].as_str().unwrap()));
        let (w, h) = (a.width(), a.height());
        let per_row = w / tile;
        let labels = Labels::from_image(Image::from_fn(w, h, |r, c| {
            ((r / tile) * per_row + c / tile + 1) as u32
        }));
        let got = with_dyn_image!(&a, ia => with_dyn_image!(&b, ib =>
            measure_colocalization(&labels, ia.view(), ib.view())));
        let cols = &pair["columns"];
        for (k, c) in got.iter().enumerate() {
            n += 1;
            for (m, (name, get)) in measures.iter().enumerate() {
                let g = get(c);
                let ok = match cols[name][k].as_f64() {
                    None => g.is_nan(),
                    Some(w) => {
                        worst[m] = worst[m].max((g - w).abs() / w.abs().max(1.0));
                        (g - w).abs() <= 1e-7 + 1e-7 * w.abs()
                    }
                };
                if !ok {
                    off[m] += 1;
                }
            }
        }
    }
    assert_eq!(n, 512);
    for (m, (name, _)) in measures.iter().enumerate() {
        eprintln!(
            "{name}: {} of {n} agree, largest relative deviation {:.3e}",
            n - off[m],
            worst[m]
        );
        assert!(
            (n - off[m]) as f64 >= 0.995 * n as f64,
            "{name}: {} of {n} differ",
            off[m]
        );
    }
}
