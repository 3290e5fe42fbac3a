//! Marker gates and heterogeneity against numpy / scikit-image / SciPy
//! (`testdata/reference/colonies/make_marker_refs.py`).

use ipscope_core::assays::markers::{
    histogram_entropy, resolve_gate, summarize, Gate, ENTROPY_BINS,
};

fn refs() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/reference/colonies/marker_refs.json"
    );
    let text = std::fs::read_to_string(path).expect("marker_refs.json");
    serde_json::from_str(&text).expect("json")
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn close(name: &str, what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1e-12),
        "{name} {what}: ipscope {got}, reference {want}"
    );
}

#[test]
fn gates_and_summaries_match_numpy_skimage_scipy() {
    let r = refs();
    for case in r["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let v = floats(&case["values"]);
        let ctl = floats(&case["controls"]);
        let otsu = resolve_gate(&Gate::Otsu, &v, &ctl).unwrap().unwrap();
        close(name, "otsu", otsu, case["otsu"].as_f64().unwrap(), 1e-6);
        let otsu_log = resolve_gate(&Gate::OtsuLog, &v, &ctl).unwrap().unwrap();
        close(
            name,
            "otsu_log",
            otsu_log,
            case["otsu_log"].as_f64().unwrap(),
            1e-5,
        );
        let p99 = resolve_gate(&Gate::Controls { percentile: 99.0 }, &v, &ctl)
            .unwrap()
            .unwrap();
        close(
            name,
            "p99",
            p99,
            case["controls_p99"].as_f64().unwrap(),
            1e-12,
        );
        let s = summarize(&v, Some(p99));
        close(
            name,
            "% positive",
            s.percent_positive,
            case["percent_positive_p99"].as_f64().unwrap(),
            1e-12,
        );
        close(name, "cv", s.cv, case["cv"].as_f64().unwrap(), 1e-10);
        close(name, "gini", s.gini, case["gini"].as_f64().unwrap(), 1e-9);
        close(
            name,
            "entropy",
            histogram_entropy(&v, ENTROPY_BINS),
            case["entropy"].as_f64().unwrap(),
            1e-10,
        );
    }
}
