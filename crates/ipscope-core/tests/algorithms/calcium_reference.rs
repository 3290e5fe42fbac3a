//! Parity of ops::signal::find_peaks (the calcium assay's beat detector) with
//! `scipy.signal.find_peaks`.
//!
//! Traces and SciPy's peaks, prominences and bases come from
//! `testdata/reference/assays/calcium_find_peaks.py` (versions in the JSON and the folder's
//! README). Peak and base indices must be equal; prominences within 1e-9.

use std::path::PathBuf;

use ipscope_core::ops::signal::{find_peaks, PeakParams};
use serde_json::Value;

fn load() -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "testdata",
        "reference",
        "assays",
        "calcium_find_peaks.json",
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON: {e}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("index") as usize)
        .collect()
}

#[test]
fn find_peaks_matches_scipy() {
    let doc = load();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30);
    let mut peaks_checked = 0;
    for c in cases {
        let name = c["trace"].as_str().expect("trace name");
        let x = floats(&doc["traces"][name]);
        let params = PeakParams {
            height: c["height"].as_f64(),
            distance: c["distance"].as_f64(),
            prominence: c["prominence"].as_f64(),
        };
        let got = find_peaks(&x, &params);
        let want = indices(&c["peaks"]);
        let got_idx: Vec<usize> = got.iter().map(|p| p.index).collect();
        assert_eq!(got_idx, want, "{name} {params:?}");
        let prom = floats(&c["prominences"]);
        let lb = indices(&c["left_bases"]);
        let rb = indices(&c["right_bases"]);
        for (k, p) in got.iter().enumerate() {
            assert!(
                (p.prominence - prom[k]).abs() < 1e-9,
                "{name} {params:?} peak {}: prominence {} vs SciPy {}",
                p.index,
                p.prominence,
                prom[k]
            );
            assert_eq!((p.left_base, p.right_base), (lb[k], rb[k]), "{name} bases");
        }
        peaks_checked += got.len();
    }
    assert!(peaks_checked > 1000, "{peaks_checked}");
}
