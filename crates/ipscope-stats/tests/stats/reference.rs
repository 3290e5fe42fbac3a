//! ipscope-stats against reference values: drc's published ryegrass fit, and the NumPy/SciPy
//! outputs of testdata/reference/stats/make_reference.py (committed as reference.json).

use std::path::{Path, PathBuf};

use ipscope_stats::curve::{fit, Model, Status};
use ipscope_stats::input::{numeric, read_any, text};
use ipscope_stats::normalize::{normalize, NormalizeOptions};
use ipscope_stats::qc::plate_qc;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"));
    if dir.join("drc_doseresponse/csv").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: drc data sets not found under {} (set IPSCOPE_DATA)",
            dir.display()
        );
        None
    }
}

fn reference() -> Value {
    let path = repo().join("testdata/reference/stats/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    let err = ((got - want) / want).abs();
    assert!(
        err <= rel,
        "{what}: got {got}, want {want} (relative error {err:e} > {rel:e})"
    );
}

fn drc_csv(name: &str) -> Option<ipscope_table::RecordBatch> {
    let dir = data_dir()?;
    Some(read_any(&dir.join("drc_doseresponse/csv").join(name)).unwrap())
}

#[test]
fn ryegrass_ll4_matches_drc() {
    let Some(t) = drc_csv("ryegrass.csv") else {
        return;
    };
    let x = numeric(&t, "conc").unwrap();
    let y = numeric(&t, "rootl").unwrap();
    let f = fit(&x, &y, Model::Ll4);
    assert_eq!(f.status, Status::Ok, "{}", f.reason);
    let p = f.params.unwrap();
    // drc summary (Ritz et al. 2015, PLoS ONE 10:e0146021).
    close(p.b, 2.98222, 1e-4, "b");
    close(p.c, 0.48141, 1e-4, "c");
    close(p.d, 7.79296, 1e-4, "d");
    close(p.e, 3.05795, 1e-4, "e");
    close(f.residual_se.unwrap(), 0.5196, 1e-3, "residual SE");
    assert_eq!(f.df, 20);
    close(f.ed10.unwrap().estimate, 1.464, 1e-3, "ED10");
    close(f.ec50.unwrap().estimate, 3.058, 1e-3, "ED50");
    close(f.ed90.unwrap().estimate, 6.389, 1e-3, "ED90");
    assert!((f.hill_slope.unwrap() + p.b).abs() < 1e-12);
    close(f.log_ec50.unwrap(), 3.05795f64.log10(), 1e-4, "LogEC50");
}

fn check_against_scipy(key: &str, x: &[f64], y: &[f64], model: Model) {
    let r = &reference()["curves"][key];
    let f = fit(x, y, model);
    assert!(f.status.has_ec50(), "{key}: {:?} {}", f.status, f.reason);
    let p = f.params.unwrap();
    for (name, got) in [("b", p.b), ("c", p.c), ("d", p.d), ("e", p.e)] {
        if let Some(want) = r["params"][name].as_f64() {
            close(got, want, 1e-4, &format!("{key} {name}"));
        }
    }
    let se = [("b", f.se.b), ("c", f.se.c), ("d", f.se.d), ("e", f.se.e)];
    for (name, got) in se {
        if let Some(want) = r["se"][name].as_f64() {
            close(got.unwrap(), want, 1e-3, &format!("{key} SE {name}"));
        }
    }
    close(
        f.rss.unwrap(),
        r["rss"].as_f64().unwrap(),
        1e-6,
        &format!("{key} RSS"),
    );
    assert_eq!(f.df as u64, r["df"].as_u64().unwrap());
    let ec = f.ec50.unwrap();
    close(
        ec.estimate,
        r["ed50"]["estimate"].as_f64().unwrap(),
        1e-4,
        "ED50",
    );
    close(
        ec.se.unwrap(),
        r["ed50"]["se"].as_f64().unwrap(),
        1e-3,
        "ED50 SE",
    );
    close(
        ec.lower.unwrap(),
        r["ed50"]["lower"].as_f64().unwrap(),
        1e-3,
        "ED50 lower",
    );
    close(
        f.ed10.unwrap().estimate,
        r["ed10"]["estimate"].as_f64().unwrap(),
        1e-4,
        "ED10",
    );
    close(
        f.ed90.unwrap().estimate,
        r["ed90"]["estimate"].as_f64().unwrap(),
        1e-4,
        "ED90",
    );
}

#[test]
fn ryegrass_models_match_scipy() {
    let Some(t) = drc_csv("ryegrass.csv") else {
        return;
    };
    let x = numeric(&t, "conc").unwrap();
    let y = numeric(&t, "rootl").unwrap();
    check_against_scipy("ryegrass_LL.4", &x, &y, Model::Ll4);
    check_against_scipy("ryegrass_LL.3", &x, &y, Model::Ll3);
    check_against_scipy("ryegrass_W1.4", &x, &y, Model::W14);
}

#[test]
fn s_alba_per_herbicide_matches_scipy() {
    let Some(t) = drc_csv("S.alba.csv") else {
        return;
    };
    let dose = numeric(&t, "Dose").unwrap();
    let dry = numeric(&t, "DryMatter").unwrap();
    let herb = text(&t, "Herbicide").unwrap();
    for h in ["Glyphosate", "Bentazone"] {
        let (x, y): (Vec<f64>, Vec<f64>) = (0..dose.len())
            .filter(|&i| herb[i].as_deref() == Some(h))
            .map(|i| (dose[i], dry[i]))
            .unzip();
        check_against_scipy(&format!("S.alba_{h}_LL.4"), &x, &y, Model::Ll4);
    }
}

#[test]
fn plate_qc_and_normalisation_match_numpy() {
    let r = reference();
    let t = read_any(&repo().join("testdata/reference/stats/plate_qc.csv")).unwrap();
    let qc = plate_qc(&t, "Value", "Metadata_Role", "negative", "positive", None).unwrap();
    assert_eq!(qc.len(), 1);
    let q = &qc[0];
    assert_eq!(q.status, "ok");
    let want = &r["plate_qc"];
    let pairs = [
        ("z_prime", q.z_prime),
        ("robust_z_prime", q.robust_z_prime),
        ("ssmd", q.ssmd),
        ("signal_to_background", q.signal_to_background),
        ("signal_window", q.signal_window),
        ("cv_negative", q.cv_negative),
        ("cv_positive", q.cv_positive),
    ];
    for (name, got) in pairs {
        close(got.unwrap(), want[name].as_f64().unwrap(), 1e-10, name);
    }
    close(
        q.negative.mad.unwrap(),
        want["negative"]["mad"].as_f64().unwrap(),
        1e-10,
        "MAD",
    );

    let n = normalize(
        &t,
        &NormalizeOptions {
            value: "Value",
            control_col: "Metadata_Role",
            neg: "negative",
            pos: "positive",
            by: None,
            well_col: "Metadata_Well",
        },
    )
    .unwrap();
    let want = &r["normalize"];
    for (name, got) in [
        ("percent_of_control", &n.percent_of_control),
        ("npi", &n.npi),
        ("z_score", &n.z_score),
        ("robust_z", &n.robust_z),
        ("b_score", &n.b_score),
    ] {
        let w = want[name].as_array().unwrap();
        assert_eq!(w.len(), got.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(w).enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{name}[{i}]: {g} vs {w}"
            );
        }
    }
    // The script adds a row trend of 1.5 per row and brighter edge rows.
    let e = &n.edges[0];
    assert!(e.row_trend.unwrap() > 0.0);
    assert!(e.flags.iter().any(|f| f == "row trend"), "{:?}", e.flags);
}
