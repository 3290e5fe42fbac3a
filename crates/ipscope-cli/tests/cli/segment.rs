//! Segmentation accuracy with the default configuration on the shared public data sets, and
//! the `segment` / `eval` / `config` commands end to end.
//!
//! The data sets are read from `$IPSCOPE_DATA` (default `../shared/data` beside the
//! repository); each test prints a message and passes when its data set is absent. The peer
//! figures come from `testdata/reference/segmentation/skimage_recipe.py`
//! (`recipe_scores.json`). Assertions are the figures ipscope reaches today, as regression
//! floors (rounded down by 0.005); where that is below the target of issue #4, the target
//! is named next to it and docs/segmentation.md says so. All images of every set are used
//! (about 2 s of CPU with the test profile).

use crate::common;
use common::*;

use std::path::{Path, PathBuf};

use ipscope::core::ops::eval::{match_labels, summarize, EvalSummary};
use ipscope::core::ops::label::{label, Connectivity};
use ipscope::core::{segment_cells, segment_nuclei, CellsParams, NucleiParams};
use ipscope::image::{with_dyn_image, DynImage, Image};
use ipscope::io::{read_image, ReadOptions};
use serde_json::Value;

fn recipe(name: &str) -> Value {
    let p = repo().join("testdata/reference/segmentation/recipe_scores.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["datasets"][name].clone()
}

fn truth_labels(path: &Path, binary: bool) -> Image<u32> {
    let img = read_image(path, 0, &ReadOptions::default()).unwrap();
    let l = match img {
        DynImage::U8(i) => i.map(u32::from),
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::F32(_) => panic!("float truth {}", path.display()),
    };
    if binary {
        label(l.map(|v| v != 0).view(), Connectivity::Four).into_image()
    } else {
        l
    }
}

/// Segments every (image, truth) pair with the default parameters and pools the scores.
fn score(pairs: &[(PathBuf, PathBuf)], binary: bool) -> EvalSummary {
    let params = NucleiParams::default();
    let matches: Vec<_> = pairs
        .iter()
        .map(|(img, truth)| {
            let im = read_image(img, 0, &ReadOptions::default()).unwrap();
            let pred = with_dyn_image!(&im, i => segment_nuclei(i.view(), &params));
            let t = truth_labels(truth, binary);
            match_labels(t.view(), pred.labels.view()).unwrap()
        })
        .collect();
    summarize(&matches)
}

fn sorted(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Prints ipscope's and the recipe's figures and checks the floors.
fn report(name: &str, s: &EvalSummary, f1_floor: f64, ap_floor: f64) {
    let r = recipe(name);
    println!(
        "{name}: ipscope F1 {:.3} P {:.3} R {:.3} AP {:.3} ({} / {} objects); recipe F1 {:.3} AP {:.3}",
        s.f1, s.precision, s.recall, s.ap_dsb, s.n_pred, s.n_true, r["f1"], r["ap_dsb"]
    );
    assert!(s.f1 >= f1_floor, "{name}: F1 {:.3} < {f1_floor}", s.f1);
    assert!(
        s.ap_dsb >= ap_floor,
        "{name}: AP {:.3} < {ap_floor}",
        s.ap_dsb
    );
}

macro_rules! need {
    ($p:expr) => {{
        let p = $p;
        if !p.exists() {
            println!("skipped: {} not found (set IPSCOPE_DATA)", p.display());
            return;
        }
        p
    }};
}

#[test]
fn dsb2018_fluo_subset_default_config() {
    let d = need!(data_dir().join("dsb2018_fluo_subset"));
    let pairs: Vec<_> = sorted(&d.join("images"), "png")
        .into_iter()
        .map(|p| {
            let t = d.join("labels").join(p.file_name().unwrap());
            (p, t)
        })
        .collect();
    assert_eq!(pairs.len(), 39);
    let s = score(&pairs, false);
    assert_eq!(s.n_true, 2573);
    report("dsb2018_fluo_subset", &s, F1_DSB, AP_DSB);
    // Target of issue #4 (reached): F1 >= 0.80.
    assert!(s.f1 >= 0.80, "F1 {:.3} < 0.80", s.f1);
}

#[test]
fn mobi_gowt1_default_config() {
    mobi("N2DH-GOWT1", F1_GOWT1, AP_GOWT1);
}

#[test]
fn mobi_hela_default_config() {
    mobi("N2DL-HeLa", F1_HELA, AP_HELA);
}

fn mobi(set: &str, f1: f64, ap: f64) {
    let d = need!(data_dir().join("mobi_nuclei_gt").join(set));
    let pairs: Vec<_> = sorted(&d.join("img"), "tif")
        .into_iter()
        .map(|p| {
            let n = p.file_name().unwrap().to_string_lossy()[1..].to_string();
            (p, d.join("gt").join(format!("man_seg{n}")))
        })
        .collect();
    let s = score(&pairs, false);
    report(&format!("mobi_{set}"), &s, f1, ap);
    // Target of issue #4 (reached on GOWT1 and HeLa): F1 >= the scikit-image recipe's + 0.05.
    let r = recipe(&format!("mobi_{set}"))["f1"].as_f64().unwrap();
    assert!(s.f1 >= r + 0.05, "F1 {:.3} < recipe {r:.3} + 0.05", s.f1);
}

#[test]
fn mobi_nih3t3_default_config() {
    let d = need!(data_dir().join("mobi_nuclei_gt/NIH3T3"));
    let pairs: Vec<_> = sorted(&d.join("img"), "png")
        .into_iter()
        .map(|p| {
            let n = p.file_name().unwrap().to_string_lossy()[4..].to_string();
            (p, d.join("gt").join(n))
        })
        .collect();
    assert_eq!(pairs.len(), 18);
    let s = score(&pairs, true);
    report("mobi_NIH3T3", &s, F1_NIH3T3, AP_NIH3T3);
    // Target of issue #4 (reached): F1 >= the scikit-image recipe's + 0.05.
    let r = recipe("mobi_NIH3T3")["f1"].as_f64().unwrap();
    assert!(s.f1 >= r + 0.05, "F1 {:.3} < recipe {r:.3} + 0.05", s.f1);
}

#[test]
fn stardist_sample_default_config() {
    let d = need!(data_dir().join("stardist_dsb2018_sample"));
    let s = score(&[(d.join("img2d.tif"), d.join("mask2d.tif"))], false);
    assert_eq!(s.n_true, 125);
    report("stardist_dsb2018_sample", &s, F1_STARDIST, AP_STARDIST);
    // Target of issue #4 (reached): F1 >= the scikit-image recipe's + 0.05.
    let r = recipe("stardist_dsb2018_sample")["f1"].as_f64().unwrap();
    assert!(s.f1 >= r + 0.05, "F1 {:.3} < recipe {r:.3} + 0.05", s.f1);
}

#[test]
fn cp_examplehuman_counts_and_areas() {
    let d = need!(data_dir().join("cp_examplehuman"));
    let img = read_image(
        &d.join("AS_09125_050116030001_D03f00d0.tif"),
        0,
        &ReadOptions::default(),
    )
    .unwrap();
    let r = with_dyn_image!(&img, i => segment_nuclei(i.view(), &NucleiParams::default()));
    let n = r.labels.count();
    let mut areas = vec![0u64; n as usize + 1];
    for &l in r.labels.image().as_slice() {
        areas[l as usize] += 1;
    }
    // CellProfiler's pipeline discards objects touching the border (ExampleHuman.cppipe);
    // the count is compared on the same rule, from the same default segmentation.
    let lab = r.labels.image();
    let (w, h) = (lab.width(), lab.height());
    let mut border = vec![false; n as usize + 1];
    for y in 0..h {
        for x in 0..w {
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                border[lab.get(y, x) as usize] = true;
            }
        }
    }
    let inner = (1..=n as usize)
        .filter(|&k| areas[k] > 0 && !border[k])
        .count() as u32;
    let mut a: Vec<u64> = areas[1..].to_vec();
    a.sort_unstable();
    let median = a.get(a.len() / 2).copied().unwrap_or(0);
    println!(
        "cp_examplehuman: ipscope {n} nuclei ({inner} not touching the border), median area {median} px; CellProfiler 289 (border objects discarded), 115 px"
    );
    let cells_img = read_image(
        &d.join("AS_09125_050116030001_D03f00d2.tif"),
        0,
        &ReadOptions::default(),
    )
    .unwrap();
    let cells = with_dyn_image!(&cells_img, i => segment_cells(i.view(), &r.labels, &CellsParams::default()))
        .unwrap();
    let mut ca = vec![0u64; n as usize + 1];
    for &l in cells.cells.image().as_slice() {
        ca[l as usize] += 1;
    }
    let mut ca: Vec<u64> = ca[1..].iter().copied().filter(|&a| a > 0).collect();
    ca.sort_unstable();
    let cmed = ca.get(ca.len() / 2).copied().unwrap_or(0);
    println!(
        "cp_examplehuman cells (propagation): ipscope {} cells, median area {cmed} px; CellProfiler 289, median 381 px",
        ca.len()
    );
    assert_eq!(ca.len() as u32, n, "one cell per nucleus");
    // Target of issue #4 (reached): within 3 % of CellProfiler's 289 (280..=298), objects
    // touching the border left out on both sides.
    assert!(
        (280..=298).contains(&inner),
        "{inner} nuclei off the border"
    );
    // Regression band of the count with border objects (measured 322).
    assert!((CP_COUNT_LO..=CP_COUNT_HI).contains(&n), "{n} nuclei");
}

#[test]
fn segment_eval_and_config_commands() {
    let d = need!(data_dir().join("stardist_dsb2018_sample"));
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred");
    let truth = tmp.path().join("truth");
    std::fs::create_dir_all(&truth).unwrap();
    std::fs::copy(d.join("mask2d.tif"), truth.join("img2d.tif")).unwrap();
    let overlay = tmp.path().join("ov");
    let img = d.join("img2d.tif");
    let out = ipscope(&[
        "segment",
        img.to_str().unwrap(),
        "--labels-dir",
        pred.to_str().unwrap(),
        "--overlay-dir",
        overlay.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(line["objects"].as_u64().unwrap() > 50);
    let labels = read_image(&pred.join("img2d.tif"), 0, &ReadOptions::default()).unwrap();
    assert!(
        matches!(labels, DynImage::U16(_)),
        "u16 labels when they fit"
    );
    assert!(overlay.join("img2d_overlay.png").exists());
    let out = ipscope(&[
        "eval",
        "--truth",
        truth.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_true"], 125);
    assert!(v["f1"].as_f64().unwrap() >= F1_STARDIST);
    // The printed default configuration is a valid configuration file.
    let out = ipscope(&["config", "--default"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("threshold_method") && text.contains("# "));
    let cfg = tmp.path().join("ipscope.toml");
    std::fs::write(&cfg, &text).unwrap();
    let out = ipscope(&[
        "segment",
        img.to_str().unwrap(),
        "--labels",
        tmp.path().join("one.tif").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Several inputs with --labels is refused with a message.
    let out = ipscope(&[
        "segment",
        img.to_str().unwrap(),
        img.to_str().unwrap(),
        "--labels",
        "x.tif",
    ]);
    assert!(!out.status.success());
}

// Measured floors (see the module docs): the default configuration's figures on
// 2026-11-26 minus 0.005 (F1 / AP: DSB2018 0.803 / 0.370, GOWT1 0.694 / 0.351, HeLa
// 0.841 / 0.551, NIH3T3 0.778 / 0.414, StarDist sample 0.802 / 0.366; cp_examplehuman 322
// nuclei, 294 off the border), after the hybrid declumping stopped seeding zero-dip basins
// and zero-height components (F1 before: 0.802, 0.694, 0.835, 0.777, 0.802). Issue #4's targets are
// asserted beside them: DSB2018 F1 >= 0.80 (above its floor here) and recipe + 0.05 for the
// other sets; the cp_examplehuman matched area (within 5 % of CellProfiler's) is asserted in
// crates/ipscope/tests/facade/cp_examplehuman.rs. The outline step of the default (grown out to 0.26
// of each nucleus's contrast, by at most one pixel) lowered the DSB2018 and StarDist floors
// (F1 0.824 -> 0.802 and 0.810 -> 0.802, AP 0.429 -> 0.368 and 0.416 -> 0.364: their human
// outlines are tighter than CellProfiler's) and raised the others; see docs/segmentation.md.
const F1_DSB: f64 = 0.798;
const AP_DSB: f64 = 0.365;
const F1_GOWT1: f64 = 0.689;
const AP_GOWT1: f64 = 0.346;
const F1_HELA: f64 = 0.836;
const AP_HELA: f64 = 0.546;
const F1_NIH3T3: f64 = 0.773;
const AP_NIH3T3: f64 = 0.409;
const F1_STARDIST: f64 = 0.797;
const AP_STARDIST: f64 = 0.361;
const CP_COUNT_LO: u32 = 317;
const CP_COUNT_HI: u32 = 327;
