//! Parity of Neighbors with cp-measure (CellProfiler's MeasureObjectNeighbors as a library) on
//! real label images.
//!
//! Reference values: `testdata/reference/measure/neighbors.json`, written by
//! `testdata/reference/measure/make_neighbors_refs.py` ("Within a specified distance" at d = 5
//! and d = 2, and "Adjacent"; object numbers by CellProfiler's definition, see the script). The
//! label images are read from `$IPSCOPE_DATA` (default `../shared/data`); the test prints a
//! message and passes when they are absent.
//!
//! Every object must agree: counts and object numbers exactly, distances, angles and percents
//! within 1e-9 absolute (the reference stores 12 significant digits).

use crate::common;
use common::*;

use ipscope_core::ops::measure::{measure_neighbors, NeighborMethod, Neighbors};
use ipscope_io::{read_image, ReadOptions};
use serde_json::Value;

type Get = fn(&Neighbors) -> f64;

const FEATURES: [(&str, Get, bool); 7] = [
    ("NumberOfNeighbors", |n| n.number_of_neighbors as f64, true),
    (
        "FirstClosestObjectNumber",
        |n| n.first_closest_object_number as f64,
        true,
    ),
    (
        "SecondClosestObjectNumber",
        |n| n.second_closest_object_number as f64,
        true,
    ),
    ("PercentTouching", |n| n.percent_touching, false),
    ("FirstClosestDistance", |n| n.first_closest_distance, false),
    (
        "SecondClosestDistance",
        |n| n.second_closest_distance,
        false,
    ),
    (
        "AngleBetweenNeighbors",
        |n| n.angle_between_neighbors,
        false,
    ),
];

#[test]
fn neighbors_match_cp_measure() {
    let data = data_dir();
    if !data.join("dsb2018_fluo_subset").is_dir() {
        eprintln!(
            "skipping neighbors parity: {} not found (set IPSCOPE_DATA)",
            data.display()
        );
        return;
    }
    let path = repo().join("testdata/reference/measure/neighbors.json");
    let text = std::fs::read_to_string(&path).expect("reference json");
    let r: Value = serde_json::from_str(&text).expect("parse reference");
    let opts = ReadOptions::default();
    let methods = [
        (NeighborMethod::Within(5), "5"),
        (NeighborMethod::Within(2), "2"),
        (NeighborMethod::Adjacent, "Adjacent"),
    ];
    let (mut objects, mut compared, mut worst) = (0usize, 0usize, 0f64);
    let mut off = Vec::new();
    for field in r["fields"].as_array().expect("fields") {
        let name = field["labels"].as_str().expect("labels path");
        let labels = labels_of(read_image(&data.join(name), 0, &opts).expect("label image"));
        let cols = field["columns"].as_object().expect("columns");
        let ids: Vec<usize> = cols["label"]
            .as_array()
            .expect("label column")
            .iter()
            .map(|v| v.as_u64().expect("label") as usize)
            .collect();
        objects += ids.len();
        for (method, scale) in methods {
            let m = measure_neighbors(&labels, method);
            for (feature, get, exact) in FEATURES {
                let col = format!("{feature}_{scale}");
                let want = cols[&col].as_array().expect("feature column");
                for (k, &id) in ids.iter().enumerate() {
                    let got = get(&m[id - 1]);
                    let w = want[k].as_f64().unwrap_or(f64::NAN);
                    compared += 1;
                    let ok = if exact {
                        got == w
                    } else if w.is_nan() {
                        got.is_nan()
                    } else {
                        let dev = (got - w).abs();
                        worst = worst.max(dev);
                        dev <= 1e-9
                    };
                    if !ok {
                        off.push(format!("{name} label {id} {col}: {got} vs {w}"));
                    }
                }
            }
        }
    }
    println!(
        "neighbors: {objects} objects, {compared} values compared, largest deviation {worst:.2e}, {} off",
        off.len()
    );
    assert!(objects > 900, "only {objects} reference objects");
    assert!(
        off.is_empty(),
        "{} values differ:\n{}",
        off.len(),
        off.join("\n")
    );
}
