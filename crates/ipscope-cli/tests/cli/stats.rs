//! End-to-end tests of `ipscope qc`, `normalize`, `curve` and `report`, and of the Curves / Qc
//! tables and report.html that `ipscope run` writes for a plate with a dose layout.
//!
//! Reference values: drc's ryegrass fit (Ritz et al. 2015) and the NumPy/SciPy outputs of
//! testdata/reference/stats/make_reference.py. The report is rendered in headless Chromium
//! when a `chromium` binary is found (skipped with a message otherwise).

use crate::common;
use common::*;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use ipscope_table::arrow_array::Array;
use ipscope_table::{column_f64, column_str, read_table};
use serde_json::Value;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ipscope failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn reference() -> Value {
    let text = std::fs::read_to_string(repo().join("testdata/reference/stats/reference.json"))
        .expect("reference.json");
    serde_json::from_str(&text).expect("reference JSON")
}

fn drc_csv(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"));
    let path = dir.join("drc_doseresponse/csv").join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} not found (set IPSCOPE_DATA to the shared data folder)",
            path.display()
        );
        None
    }
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    let err = ((got - want) / want).abs();
    assert!(
        err <= rel,
        "{what}: got {got}, want {want} (relative error {err:e})"
    );
}

#[test]
fn curve_reproduces_drc_ryegrass() {
    let Some(csv) = drc_csv("ryegrass.csv") else {
        return;
    };
    let out = ok(&ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "conc",
        "--response",
        "rootl",
        "--model",
        "ll4",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let f = &v[0];
    assert_eq!(f["status"], "ok");
    assert_eq!(f["model"], "LL.4");
    let par = |k: &str| f["params"][k].as_f64().unwrap();
    close(par("b"), 2.98222, 1e-4, "b");
    close(par("c"), 0.48141, 1e-4, "c");
    close(par("d"), 7.79296, 1e-4, "d");
    close(par("e"), 3.05795, 1e-4, "e");
    close(f["residual_se"].as_f64().unwrap(), 0.5196, 1e-3, "RSE");
    assert_eq!(f["df"], 20);
    close(f["ed10"]["estimate"].as_f64().unwrap(), 1.464, 1e-3, "ED10");
    close(f["ec50"]["estimate"].as_f64().unwrap(), 3.058, 1e-3, "ED50");
    close(f["ed90"]["estimate"].as_f64().unwrap(), 6.389, 1e-3, "ED90");
    close(
        f["hill_slope"].as_f64().unwrap(),
        -2.98222,
        1e-4,
        "HillSlope",
    );
}

#[test]
fn curve_per_group_with_relative_potency_and_table_output() {
    let Some(csv) = drc_csv("S.alba.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("curves.parquet");
    let out = ok(&ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "Dose",
        "--response",
        "DryMatter",
        "--group",
        "Herbicide",
        "--reference",
        "Glyphosate",
        "--json",
        "-o",
        p(&table),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = reference();
    for f in v.as_array().unwrap() {
        let g = f["group"].as_str().unwrap();
        let want = &r["curves"][format!("S.alba_{g}_LL.4")];
        close(
            f["ec50"]["estimate"].as_f64().unwrap(),
            want["ed50"]["estimate"].as_f64().unwrap(),
            1e-4,
            g,
        );
    }
    // drc's EDcomp(fit, c(50, 50)) on the joint fit, from SciPy's joint least-squares fit.
    let joint = &r["relative_potency"]["S.alba_LL.4_reference_Glyphosate"];
    let want = &joint["ratios"]["Bentazone"];
    let bent = &v[0];
    assert_eq!(bent["group"], "Bentazone");
    let rp = &bent["relative_potency"];
    assert_eq!(rp["reference"], "Glyphosate");
    assert_eq!(rp["df"], joint["df"]);
    for key in ["ratio", "se", "lower", "upper", "p_value"] {
        close(
            rp[key].as_f64().unwrap(),
            want[key].as_f64().unwrap(),
            1e-4,
            key,
        );
    }
    assert!(v[1]["relative_potency"].is_null(), "the reference itself");
    // The pooled residual variance is what the joint fit adds: combining the two separate
    // fits' EC50 SEs gives a different SE.
    let se_of = |g: &str| {
        let c = &r["curves"][format!("S.alba_{g}_LL.4")]["ed50"];
        c["se"].as_f64().unwrap() / c["estimate"].as_f64().unwrap()
    };
    let separate = rp["ratio"].as_f64().unwrap() * se_of("Bentazone").hypot(se_of("Glyphosate"));
    let joint_se = rp["se"].as_f64().unwrap();
    assert!(
        ((separate - joint_se) / joint_se).abs() > 0.01,
        "joint SE {joint_se} vs separate {separate}"
    );
    let (_, batches) = read_table(&table).unwrap();
    let t = &batches[0];
    assert_eq!(column_str(t, "Herbicide").unwrap().value(1), "Glyphosate");
    assert!(column_f64(t, "EC50").unwrap().value(0) > 0.0);
    close(
        column_f64(t, "RelativePotency").unwrap().value(0),
        want["ratio"].as_f64().unwrap(),
        1e-4,
        "RelativePotency column",
    );
    close(
        column_f64(t, "RelativePotency_CI_High").unwrap().value(0),
        want["upper"].as_f64().unwrap(),
        1e-4,
        "RelativePotency_CI_High column",
    );
    let refs = column_str(t, "RelativePotency_Reference").unwrap();
    assert_eq!(refs.value(0), "Glyphosate");
    assert!(refs.is_null(1));
    assert!(column_f64(t, "RelativePotency").unwrap().is_null(1));

    // Default reference: the first group (drc's EDcomp default order, Bentazone/Glyphosate).
    let out = ok(&ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "Dose",
        "--response",
        "DryMatter",
        "--group",
        "Herbicide",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let want = &r["relative_potency"]["S.alba_LL.4_reference_Bentazone"]["ratios"]["Glyphosate"];
    let rp = &v[1]["relative_potency"];
    assert_eq!(rp["reference"], "Bentazone");
    for key in ["ratio", "se", "lower", "upper"] {
        close(
            rp[key].as_f64().unwrap(),
            want[key].as_f64().unwrap(),
            1e-4,
            key,
        );
    }
    let o = ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "Dose",
        "--response",
        "DryMatter",
        "--group",
        "Herbicide",
        "--reference",
        "Atrazine",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Atrazine"));
}

/// drc's S.alba example model (common lower and upper limits, `pmodels =
/// data.frame(Herbicide, 1, 1, Herbicide)`) against SciPy's joint least-squares fit.
#[test]
fn curve_with_shared_limits_matches_scipy_joint_fit() {
    let Some(csv) = drc_csv("S.alba.csv") else {
        return;
    };
    let out = ok(&ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "Dose",
        "--response",
        "DryMatter",
        "--group",
        "Herbicide",
        "--shared",
        "c,d",
        "--reference",
        "Glyphosate",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = reference();
    let want = &r["relative_potency"]["S.alba_LL.4_shared_cd_reference_Glyphosate"];
    for f in v.as_array().unwrap() {
        let g = f["group"].as_str().unwrap();
        let w = &want["params"][g];
        close(
            f["params"]["b"].as_f64().unwrap(),
            w["b"].as_f64().unwrap(),
            1e-4,
            "b",
        );
        close(
            f["params"]["e"].as_f64().unwrap(),
            w["e"].as_f64().unwrap(),
            1e-4,
            "e",
        );
        close(
            f["se"]["e"].as_f64().unwrap(),
            w["se_e"].as_f64().unwrap(),
            1e-3,
            "SE e",
        );
        close(
            f["params"]["c"].as_f64().unwrap(),
            want["shared"]["c"].as_f64().unwrap(),
            1e-4,
            "c",
        );
        close(
            f["params"]["d"].as_f64().unwrap(),
            want["shared"]["d"].as_f64().unwrap(),
            1e-4,
            "d",
        );
        close(
            f["se"]["d"].as_f64().unwrap(),
            want["shared"]["se_d"].as_f64().unwrap(),
            1e-3,
            "SE d",
        );
        assert_eq!(f["df"], want["df"]);
        close(
            f["residual_se"].as_f64().unwrap(),
            want["residual_se"].as_f64().unwrap(),
            1e-6,
            "residual SE",
        );
    }
    let rp = &v[0]["relative_potency"];
    let w = &want["ratios"]["Bentazone"];
    for key in ["ratio", "se", "lower", "upper", "p_value"] {
        close(
            rp[key].as_f64().unwrap(),
            w[key].as_f64().unwrap(),
            1e-3,
            key,
        );
    }
    let o = ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "Dose",
        "--response",
        "DryMatter",
        "--group",
        "Herbicide",
        "--shared",
        "c",
        "--model",
        "ll3",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("fixed in LL.3"));
}

#[test]
fn qc_json_matches_numpy_reference() {
    let csv = repo().join("testdata/reference/stats/plate_qc.csv");
    let out = ok(&ipscope(&[
        "qc",
        p(&csv),
        "--value",
        "Value",
        "--control-col",
        "Metadata_Role",
        "--neg",
        "negative",
        "--pos",
        "positive",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = reference();
    assert_eq!(v[0]["group"], "all");
    for key in [
        "z_prime",
        "robust_z_prime",
        "ssmd",
        "signal_window",
        "cv_negative",
    ] {
        close(
            v[0][key].as_f64().unwrap(),
            r["plate_qc"][key].as_f64().unwrap(),
            1e-10,
            key,
        );
    }
}

#[test]
fn normalize_writes_b_scores_matching_numpy() {
    let csv = repo().join("testdata/reference/stats/plate_qc.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("norm.parquet");
    let text = ok(&ipscope(&[
        "normalize",
        p(&csv),
        "--value",
        "Value",
        "--control-col",
        "Metadata_Role",
        "--neg",
        "negative",
        "--pos",
        "positive",
        "-o",
        p(&out),
    ]));
    assert!(text.contains("row trend"), "{text}");
    let (_, batches) = read_table(&out).unwrap();
    let b = column_f64(&batches[0], "Value_BScore").unwrap();
    let npi = column_f64(&batches[0], "Value_NPI").unwrap();
    let r = reference();
    let want_b = r["normalize"]["b_score"].as_array().unwrap();
    let want_npi = r["normalize"]["npi"].as_array().unwrap();
    for i in 0..96 {
        assert!(
            (b.value(i) - want_b[i].as_f64().unwrap()).abs() < 1e-9,
            "B-score {i}"
        );
        assert!(
            (npi.value(i) - want_npi[i].as_f64().unwrap()).abs() < 1e-9,
            "NPI {i}"
        );
    }
}

#[test]
fn normalize_activation_mode_writes_npa_matching_numpy() {
    let csv = repo().join("testdata/reference/stats/plate_qc.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("npa.parquet");
    ok(&ipscope(&[
        "normalize",
        p(&csv),
        "--value",
        "Value",
        "--control-col",
        "Metadata_Role",
        "--neg",
        "negative",
        "--pos",
        "positive",
        "--mode",
        "activation",
        "-o",
        p(&out),
    ]));
    let (schema, batches) = read_table(&out).unwrap();
    assert!(schema.field_with_name("Value_NPI").is_err());
    let npa = column_f64(&batches[0], "Value_NPA").unwrap();
    let want = reference()["normalize"]["npa"].clone();
    for i in 0..96 {
        assert!(
            (npa.value(i) - want[i].as_f64().unwrap()).abs() < 1e-9,
            "NPA {i}"
        );
    }
}

/// cellHTS2's NPI on two real KcViab plates (B01 negative, B02 positive control): its fraction
/// (mean pos − x) / (mean pos − mean neg) is 1 − NPI / 100 of ipscope's percent inhibition.
#[test]
fn normalize_npi_is_the_complement_of_cellhts2_npi_on_kcviab() {
    let dir_data = std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
        .join("cellhts2_kcviab_hts/KcViab");
    if !dir_data.is_dir() {
        eprintln!(
            "skipping: {} not found (set IPSCOPE_DATA to the shared data folder)",
            dir_data.display()
        );
        return;
    }
    let r = reference();
    let want = r["cellhts2_kcviab_npi"]["npi"].as_array().unwrap();
    let mut csv = String::from("Metadata_Plate,Metadata_Well,Metadata_Role,Value\n");
    for plate in r["cellhts2_kcviab_npi"]["plates"].as_array().unwrap() {
        let name = plate.as_str().unwrap();
        let text = std::fs::read_to_string(dir_data.join(format!("{name}.txt"))).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let role = match f[1] {
                "B01" => "neg",
                "B02" => "pos",
                "A01" | "A02" => "other",
                _ => "sample",
            };
            csv.push_str(&format!("{name},{},{role},{}\n", f[1], f[2].trim()));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("kcviab.csv");
    std::fs::write(&input, csv).unwrap();
    let out = dir.path().join("kcviab.parquet");
    ok(&ipscope(&[
        "normalize",
        p(&input),
        "--value",
        "Value",
        "--control-col",
        "Metadata_Role",
        "--neg",
        "neg",
        "--pos",
        "pos",
        "--by",
        "Metadata_Plate",
        "-o",
        p(&out),
    ]));
    let (_, batches) = read_table(&out).unwrap();
    let npi = column_f64(&batches[0], "Value_NPI").unwrap();
    assert_eq!(npi.len(), want.len());
    for (i, w) in want.iter().enumerate() {
        let cellhts2 = w.as_f64().unwrap();
        assert!(
            (npi.value(i) - 100.0 * (1.0 - cellhts2)).abs() < 1e-9,
            "row {i}: NPI {} vs cellHTS2 {cellhts2}",
            npi.value(i)
        );
    }
}

#[test]
fn bad_input_gives_named_errors_or_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "dose,resp,grp,role\n0,1,a,neg\n-1,2,a,neg\n1,NaN,b,x\n2,3,b,x\n3,4,b,x\nfoo,1,c,x\n",
    )
    .unwrap();
    // Missing column: an error that names it.
    let o = ipscope(&["curve", p(&csv), "--dose", "nope", "--response", "resp"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
    // Non-numeric dose column: an error that names it.
    let o = ipscope(&["curve", p(&csv), "--dose", "grp", "--response", "resp"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("grp"));
    // Unknown model.
    let o = ipscope(&[
        "curve",
        p(&csv),
        "--dose",
        "resp",
        "--response",
        "resp",
        "--model",
        "ll9",
    ]);
    assert!(!o.status.success());
    // Negative doses, NaN responses, too few points: per-group statuses, no panic.
    let csv2 = dir.path().join("groups.csv");
    std::fs::write(
        &csv2,
        "dose,resp,grp\n0,1,a\n-1,2,a\n1,3,a\n2,4,a\n3,5,a\n4,6,a\n1,NaN,b\n2,3,b\n3,4,b\n",
    )
    .unwrap();
    let out = ok(&ipscope(&[
        "curve",
        p(&csv2),
        "--dose",
        "dose",
        "--response",
        "resp",
        "--group",
        "grp",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["status"], "invalid_input");
    assert_eq!(v[1]["status"], "too_few_points");
    assert_eq!(v[1]["n_dropped"], 1);
    assert!(v[1]["ec50"].is_null());
    // Controls absent from the table.
    let o = ipscope(&[
        "qc",
        p(&csv),
        "--value",
        "resp",
        "--control-col",
        "role",
        "--neg",
        "DMSO",
        "--pos",
        "BMP4",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no control wells"));
}

/// One demo plate run for the tests below (1 site per well to keep it quick).
fn demo_run() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let plate = dir.path().join("plate");
        let out = dir.path().join("out");
        ok(&ipscope(&[
            "demo",
            p(&plate),
            "--sites",
            "1",
            "--run",
            p(&out),
            "--quiet",
        ]));
        (dir, plate, out)
    })
}

#[test]
fn run_writes_curves_qc_and_report_recovering_demo_ec50() {
    let (_, plate, out) = demo_run();
    for f in ["Curves.parquet", "Qc.parquet", "report.html"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("Curves.parquet") && manifest.contains("report.html"));
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(plate.join("truth/demo.json")).unwrap())
            .unwrap();
    let (_, batches) = read_table(&out.join("Curves.parquet")).unwrap();
    let c = &batches[0];
    let compound = column_str(c, "Metadata_Compound").unwrap();
    let readout = column_str(c, "Readout").unwrap();
    let status = column_str(c, "Status").unwrap();
    let ec50 = column_f64(c, "EC50").unwrap();
    let mut checked = 0;
    for t in truth["compounds"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let want = t["ec50"].as_f64().unwrap();
        let row = (0..c.num_rows())
            .find(|&i| {
                compound.value(i) == name
                    && readout.value(i) == "Median_Nuclei_Intensity_MeanIntensity_OCT4"
            })
            .expect("curve row");
        assert_eq!(status.value(row), "ok");
        let got = ec50.value(row);
        eprintln!("{name}: EC50 {got} (truth {want})");
        // Measured (1 site): 0.69 vs 1.0 and 0.082 vs 0.1 (the median intensity of a mixed
        // OCT4+/OCT4- population moves faster than the OCT4+ fraction the truth describes).
        assert!(
            got > want / 3.0 && got < want * 3.0,
            "{name}: {got} vs {want}"
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
    // Relative potency: within a plate and readout, the first compound is the reference of
    // the others, and the ratio is EC50(reference) / EC50(compound).
    let refs = column_str(c, "RelativePotency_Reference").unwrap();
    let potency = column_f64(c, "RelativePotency").unwrap();
    let oct4: Vec<usize> = (0..c.num_rows())
        .filter(|&i| readout.value(i) == "Median_Nuclei_Intensity_MeanIntensity_OCT4")
        .collect();
    assert_eq!(oct4.len(), 2);
    let (first, second) = (oct4[0], oct4[1]);
    assert!(refs.is_null(first) && potency.is_null(first));
    assert_eq!(refs.value(second), compound.value(first));
    close(
        potency.value(second),
        ec50.value(first) / ec50.value(second),
        1e-9,
        "demo relative potency",
    );
    let (_, qc) = read_table(&out.join("Qc.parquet")).unwrap();
    let readouts = column_str(&qc[0], "Readout").unwrap();
    let z = column_f64(&qc[0], "ZPrime").unwrap();
    let i = (0..qc[0].num_rows())
        .find(|&i| readouts.value(i) == "Median_Nuclei_Intensity_MeanIntensity_OCT4")
        .unwrap();
    assert!(z.value(i) > 0.5, "Z' on OCT4 {}", z.value(i));
}

/// The run's own report embeds outline thumbnails of its first fields, and they decode in the
/// browser; a run directory with a Colonies table and image-QC columns in its Image table
/// (synthetic, as the colony and QC assays write them) gets the colony and flagged-field
/// sections, which render without console errors.
#[test]
fn report_sections_render_in_headless_chromium() {
    let (dir, _, out) = demo_run();
    let report = out.join("report.html");
    let text = std::fs::read_to_string(&report).unwrap();
    let thumbs = text.matches("<img class=\"overlay\"").count();
    assert!(
        (1..=4).contains(&thumbs),
        "{thumbs} overlays in the run's report"
    );
    assert!(text.contains("src=\"data:image/png;base64,"));
    // The curve table shows each compound's potency against its plate's reference compound.
    let curves = table(&out.join("Curves.parquet"));
    let reference = strs(&curves, "RelativePotency_Reference")
        .into_iter()
        .find(|r| !r.is_empty())
        .expect("a compound with a reference");
    assert!(text.contains("<th>relative potency (95 % CI)</th>"));
    assert!(
        text.contains(&format!(") vs {reference}</td>")),
        "no potency against {reference} in the curve table"
    );
    // `ipscope report OUT` rebuilds the same thumbnails from the manifest and Image table.
    let again = dir.path().join("report-again.html");
    ok(&ipscope(&["report", p(out), "-o", p(&again)]));
    let again = std::fs::read_to_string(&again).unwrap();
    let imgs = |t: &str| -> Vec<String> {
        t.match_indices("<img class=\"overlay\"")
            .map(|(i, _)| t[i..i + t[i..].find('>').unwrap()].to_string())
            .collect()
    };
    assert_eq!(imgs(&text), imgs(&again));

    // A run directory with the demo's Wells and manifest plus synthetic Colonies and Image.
    let synth = dir.path().join("synthetic");
    std::fs::create_dir_all(&synth).unwrap();
    for f in ["Wells.parquet", "manifest.json"] {
        std::fs::copy(out.join(f), synth.join(f)).unwrap();
    }
    let wells = strs(&table(&out.join("Wells.parquet")), "Metadata_Well");
    let grades = ["undifferentiated", "differentiating", "too_small"];
    let (mut cw, mut cg) = (Vec::new(), Vec::new());
    for (i, w) in wells.iter().enumerate() {
        // Well i has i % 5 + 1 colonies; its dominant grade cycles with the row.
        for k in 0..(i % 5 + 1) {
            cw.push(w.clone());
            cg.push(grades[if k == 0 { 2 } else { (i / 12) % 3 }].to_string());
        }
    }
    let mut b = ipscope_table::TableBuilder::new();
    b.u32("ImageNumber", (1..=cw.len() as u32).collect())
        .u32("ObjectNumber", vec![1; cw.len()])
        .str("Metadata_Plate", vec!["DEMO01".into(); cw.len()])
        .str("Metadata_Well", cw.clone())
        .str("Colony_Grade", cg);
    let colonies = b.finish().unwrap();
    let mut b = ipscope_table::TableBuilder::new();
    let n = wells.len();
    b.u32("ImageNumber", (1..=n as u32).collect())
        .str("Metadata_Plate", vec!["DEMO01".into(); n])
        .str("Metadata_Well", wells.clone())
        .u32("Metadata_Site", vec![1; n])
        .str("Status", vec!["ok".into(); n])
        .f64(
            "ImageQuality_PercentMaximal",
            (0..n)
                .map(|i| if i % 17 == 3 { 4.5 } else { 0.1 })
                .collect(),
        )
        .bool(
            "ImageQuality_Flagged",
            (0..n).map(|i| i % 17 == 3).collect(),
        )
        .str(
            "ImageQuality_Reason",
            (0..n)
                .map(|i| {
                    if i % 17 == 3 {
                        "saturated 4.5% > 1%".to_string()
                    } else {
                        String::new()
                    }
                })
                .collect(),
        );
    let image = b.finish().unwrap();
    for (name, batch) in [("Colonies", colonies), ("Image", image)] {
        ipscope_table::write_table(
            &synth.join(format!("{name}.parquet")),
            batch.schema(),
            &[batch],
            ipscope_table::Format::Parquet,
        )
        .unwrap();
    }
    let html = dir.path().join("report-synthetic.html");
    ok(&ipscope(&["report", p(&synth), "-o", p(&html)]));
    let text = std::fs::read_to_string(&html).unwrap();
    let flagged = (0..n).filter(|i| i % 17 == 3).count();
    assert!(text.contains(&format!("{} graded colonies in {n} wells", cw.len())));
    assert!(text.contains(&format!("{flagged} of {n} fields flagged by image QC")));

    let Some(chrome) = chromium_binary() else {
        eprintln!("skipping the Chromium check: no chromium binary on PATH (set IPSCOPE_CHROMIUM)");
        return;
    };
    let dom = chromium_dom(&chrome, &report);
    assert!(
        dom.contains(&format!("data-overlays=\"{thumbs}\"")),
        "overlay thumbnails did not all decode"
    );
    let dom = chromium_dom(&chrome, &html);
    for id in [
        "id=\"colony-summary\"",
        "id=\"colony-table\"",
        "id=\"field-qc\"",
    ] {
        assert!(dom.contains(id), "{id} missing from the rendered report");
    }
    // One colony map cell and one QC map cell per well.
    assert_eq!(dom.matches("class=\"mapwell\"").count(), 2 * n);
    assert!(dom.contains("class=\"stacked\""));
    assert!(!dom.contains("no colony data in this run"));
}

/// A real run with colonies (`--colonies nuclei`) and image QC: the report's colony section
/// counts the run's Colonies table, its QC map covers the Image table's wells, and the page
/// renders without console errors.
#[test]
fn run_with_colonies_reports_grades_and_image_qc() {
    let root = tempfile::tempdir().unwrap();
    let plate = small_plate(root.path());
    let out = root.path().join("out");
    let mut args = small_run_args(&plate, &out);
    args.extend(["--colonies", "nuclei"]);
    ok(&ipscope(&args));
    let colonies = table(&out.join("Colonies.parquet"));
    let wells = strs(&colonies, "Metadata_Well");
    let grades = strs(&colonies, "Classify_Grade");
    let mut distinct = wells.clone();
    distinct.sort();
    distinct.dedup();
    assert!(!wells.is_empty(), "the demo plate has colonies");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains(&format!(
            "{} graded colonies in {} wells (column <code>Classify_Grade</code>)",
            wells.len(),
            distinct.len()
        )),
        "colony summary"
    );
    for g in ["undifferentiated", "differentiating", "too_small"] {
        let k = grades.iter().filter(|x| x.as_str() == g).count();
        if k > 0 {
            assert!(html.contains(&format!("{g} {k} (")), "{g} {k}");
        }
    }
    let image = table(&out.join("Image.parquet"));
    let mut image_wells = strs(&image, "Metadata_Well");
    image_wells.sort();
    image_wells.dedup();
    assert_eq!(
        html.matches("class=\"mapwell\"").count(),
        distinct.len() + image_wells.len()
    );
    assert!(
        html.contains(&format!("({} fields checked)", image.num_rows()))
            || html.contains("fields flagged by image QC;")
    );
    let Some(chrome) = chromium_binary() else {
        eprintln!("skipping the Chromium check: no chromium binary on PATH (set IPSCOPE_CHROMIUM)");
        return;
    };
    let dom = chromium_dom(&chrome, &out.join("report.html"));
    assert!(dom.contains("id=\"colony-table\""));
}

#[test]
fn report_renders_in_headless_chromium() {
    let (dir, _, out) = demo_run();
    let html = dir.path().join("report-cli.html");
    ok(&ipscope(&["report", p(out), "-o", p(&html)]));
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched from the network.
    for needle in ["http://", "https://", "src=\"//"] {
        let hits: Vec<&str> = text
            .match_indices(needle)
            .map(|(i, _)| &text[i..(i + 40).min(text.len())])
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(hits.is_empty(), "network reference in report: {hits:?}");
    }
    let Some(chrome) = chromium_binary() else {
        eprintln!("skipping the Chromium check: no chromium binary on PATH (set IPSCOPE_CHROMIUM)");
        return;
    };
    let dom = chromium_dom(&chrome, &html);
    for id in [
        "id=\"provenance\"",
        "id=\"qc\"",
        "id=\"qc-table\"",
        "id=\"heatmaps\"",
        "id=\"curves\"",
        "id=\"curve-table\"",
        "id=\"colonies\"",
        "id=\"overlays\"",
        "id=\"flags\"",
        "id=\"excluded\"",
    ] {
        assert!(dom.contains(id), "{id} missing from the rendered report");
    }
    let wells = dom.matches("class=\"well\"").count();
    assert!(
        wells >= 2 * 96 && wells.is_multiple_of(96),
        "{wells} heatmap wells"
    );
    assert!(
        dom.matches("class=\"curve\"").count() >= 4,
        "dose-response charts"
    );
    assert!(dom.contains("class=\"ci\""), "confidence bands");
    assert!(dom.contains("no colony data in this run"));
    assert!(dom.contains("DEMO01"));
    // The run's image QC (Metadata_QCFlag / Metadata_QCReason, ImageQuality_*) is read.
    assert!(dom.contains("id=\"field-qc\""));
    assert!(
        !dom.contains("no image QC columns"),
        "the demo run's Image table has QC columns"
    );
}
