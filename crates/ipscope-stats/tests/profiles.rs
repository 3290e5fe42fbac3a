//! Profiles and retrieval against pycytominer 1.2.0 and copairs 0.5.5: the outputs of
//! `testdata/reference/profiles/make_reference.py` on the inputs it generated (and on the
//! public BBBC021 profiles when `$IPSCOPE_DATA` has them).

use std::path::{Path, PathBuf};

use ipscope_stats::input::{self, read_any};
use ipscope_stats::profile::{
    aggregate, feature_select, normalize, Aggregation, NormMethod, Profiles, SelectOp,
};
use ipscope_stats::similarity::{
    average_precision, mean_average_precision, nn_accuracy, reference_index, vehicle_rule, ApScore,
    PairRule, Similarity,
};

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/reference/profiles")
}

fn load(name: &str) -> Profiles {
    let batch = read_any(&reference_dir().join(name)).unwrap();
    Profiles::from_batch(&batch, None).unwrap()
}

fn reference_json() -> serde_json::Value {
    let text = std::fs::read_to_string(reference_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Same metadata text, same feature names and order, every value within `rel` relative
/// (absolute for values below 1), NaN where pycytominer has NaN.
fn assert_profiles_eq(got: &Profiles, want: &Profiles, rel: f64, what: &str) {
    assert_eq!(got.features, want.features, "{what}: feature columns");
    assert_eq!(got.n_rows(), want.n_rows(), "{what}: rows");
    for m in &want.meta {
        assert_eq!(
            got.meta_text(&m.name).unwrap(),
            want.meta_text(&m.name).unwrap(),
            "{what}: metadata {}",
            m.name
        );
    }
    let mut compared = 0;
    for (f, name) in want.features.iter().enumerate() {
        for (r, (&g, &w)) in got.values[f].iter().zip(&want.values[f]).enumerate() {
            if w.is_nan() {
                assert!(
                    g.is_nan(),
                    "{what}: {name} row {r}: {g} where pycytominer has NaN"
                );
                continue;
            }
            let tol = rel * w.abs().max(1.0);
            assert!(
                (g - w).abs() <= tol,
                "{what}: {name} row {r}: {g} vs pycytominer {w}"
            );
            compared += 1;
        }
    }
    assert!(compared > 50, "{what}: only {compared} values compared");
}

const STRATA: [&str; 4] = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_CellLine",
    "Metadata_Compound",
];

fn disease_vehicle(p: &Profiles) -> Vec<bool> {
    let line = p.meta_text("Metadata_CellLine").unwrap();
    let cmpd = p.meta_text("Metadata_Compound").unwrap();
    line.iter()
        .zip(&cmpd)
        .map(|(l, c)| l == "disease" && c == "DMSO")
        .collect()
}

#[test]
fn aggregate_matches_pycytominer() {
    let objects = load("objects.csv");
    for (how, file) in [
        (Aggregation::Median, "aggregate_median.csv"),
        (Aggregation::Mean, "aggregate_mean.csv"),
    ] {
        let got = aggregate(&objects, &STRATA, how).unwrap();
        assert_profiles_eq(&got, &load(file), 1e-9, file);
    }
}

#[test]
fn normalize_per_plate_matches_pycytominer() {
    let wells = aggregate(&load("objects.csv"), &STRATA, Aggregation::Median).unwrap();
    let reference = disease_vehicle(&wells);
    for (method, file) in [
        (NormMethod::Standardize, "normalize_standardize.csv"),
        (NormMethod::Robustize, "normalize_robustize.csv"),
        (NormMethod::MadRobustize, "normalize_mad_robustize.csv"),
    ] {
        let got = normalize(&wells, method, &reference, Some("Metadata_Plate")).unwrap();
        assert_profiles_eq(&got, &load(file), 1e-6, file);
    }
}

#[test]
fn feature_select_matches_pycytominer() {
    let wells = aggregate(&load("objects.csv"), &STRATA, Aggregation::Median).unwrap();
    let reference = disease_vehicle(&wells);
    let normalized = normalize(
        &wells,
        NormMethod::MadRobustize,
        &reference,
        Some("Metadata_Plate"),
    )
    .unwrap();
    let json = reference_json();
    let ops: Vec<SelectOp> = json["feature_select_ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| SelectOp::by_name(o.as_str().unwrap()).unwrap())
        .collect();
    let got = feature_select(&normalized, &ops).unwrap();
    assert!(!got.dropped.is_empty());
    assert_profiles_eq(
        &got.profiles,
        &load("feature_select.csv"),
        1e-6,
        "feature_select",
    );

    // variance_threshold alone on the object table
    let objects = load("objects.csv");
    let sel = feature_select(
        &objects,
        &[SelectOp::by_name("variance_threshold").unwrap()],
    )
    .unwrap();
    let want: Vec<String> = json["feature_select_objects_variance_kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|c| ipscope_stats::profile::is_cp_feature(c, false))
        .collect();
    assert_eq!(sel.profiles.features, want);
}

#[test]
fn normalize_without_reference_rows_is_named_error() {
    let wells = aggregate(&load("objects.csv"), &STRATA, Aggregation::Median).unwrap();
    let plates = wells.meta_text("Metadata_Plate").unwrap();
    let reference: Vec<bool> = plates.iter().map(|p| p == "P1").collect();
    let err = normalize(
        &wells,
        NormMethod::MadRobustize,
        &reference,
        Some("Metadata_Plate"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("Metadata_Plate = P2"), "{err}");
}

/// Feature rows of a profile table.
fn rows(p: &Profiles) -> Vec<Vec<f64>> {
    (0..p.n_rows())
        .map(|r| p.values.iter().map(|c| c[r]).collect())
        .collect()
}

fn check_ap(got: &[ApScore], want_file: &str, keep: &[usize]) {
    let want = read_any(&reference_dir().join(want_file)).unwrap();
    let ap = input::numeric(&want, "average_precision").unwrap();
    let npos = input::numeric(&want, "n_pos_pairs").unwrap();
    let ntot = input::numeric(&want, "n_total_pairs").unwrap();
    assert_eq!(keep.len(), ap.len(), "{want_file}: rows");
    for (k, &i) in keep.iter().enumerate() {
        let g = got[i];
        assert_eq!(g.n_pos_pairs as f64, npos[k], "{want_file} row {k}");
        assert_eq!(g.n_total_pairs as f64, ntot[k], "{want_file} row {k}");
        if ap[k].is_nan() {
            assert!(g.average_precision.is_nan());
        } else {
            assert!(
                (g.average_precision - ap[k]).abs() <= 1e-6 * ap[k].abs(),
                "{want_file} row {k}: AP {} vs copairs {}",
                g.average_precision,
                ap[k]
            );
        }
    }
}

/// mAP equal to copairs'; p-values within 4 binomial standard errors of copairs' (both are
/// Monte-Carlo estimates with 10 000 permutations), FDR-corrected ones likewise.
fn check_map(
    scores: &[ApScore],
    groups: &[String],
    want_file: &str,
    group_col: &str,
    null_size: usize,
) {
    let want = read_any(&reference_dir().join(want_file)).unwrap();
    let names: Vec<String> = input::text(&want, group_col)
        .unwrap()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let map = input::numeric(&want, "mean_average_precision").unwrap();
    let p = input::numeric(&want, "p_value").unwrap();
    let q = input::numeric(&want, "corrected_p_value").unwrap();
    let got = mean_average_precision(scores, groups, null_size, 7).unwrap();
    assert_eq!(got.len(), names.len(), "{want_file}: groups");
    for (k, g) in got.iter().enumerate() {
        assert_eq!(g.group, names[k]);
        assert!(
            (g.mean_average_precision - map[k]).abs() <= 1e-6 * map[k],
            "{want_file} {}: mAP {} vs copairs {}",
            g.group,
            g.mean_average_precision,
            map[k]
        );
        for (what, a, b) in [("p", g.p_value, p[k]), ("FDR q", g.corrected_p_value, q[k])] {
            let se = (b * (1.0 - b) / null_size as f64).sqrt();
            let tol = 4.0 * se + 2.0 / null_size as f64;
            assert!(
                (a - b).abs() <= tol,
                "{want_file} {}: {what} {a} vs copairs {b} (tolerance {tol})",
                g.group
            );
        }
    }
}

#[test]
fn replicate_and_vehicle_map_match_copairs() {
    let profiles = load("similarity_profiles.csv");
    let all_rows = rows(&profiles);
    let cmpd = profiles.meta_text("Metadata_Compound").unwrap();
    let null_size = reference_json()["null_size"].as_u64().unwrap() as usize;

    // replicate retrieval among the compounds
    let keep: Vec<usize> = (0..cmpd.len()).filter(|&i| cmpd[i] != "DMSO").collect();
    let sub_rows: Vec<Vec<f64>> = keep.iter().map(|&i| all_rows[i].clone()).collect();
    let sub_cmpd: Vec<String> = keep.iter().map(|&i| cmpd[i].clone()).collect();
    let rule = PairRule {
        pos_sameby: vec!["Metadata_Compound".into()],
        neg_diffby: vec!["Metadata_Compound".into()],
        ..Default::default()
    };
    let labels = [("Metadata_Compound", sub_cmpd.as_slice())];
    let ap = average_precision(&sub_rows, &labels, &rule, Similarity::Cosine).unwrap();
    let identity: Vec<usize> = (0..keep.len()).collect();
    check_ap(&ap, "ap_replicates.csv", &identity);
    check_map(
        &ap,
        &sub_cmpd,
        "map_replicates.csv",
        "Metadata_Compound",
        null_size,
    );

    // separation from vehicle
    let refi = reference_index(&cmpd, "DMSO");
    let labels = [
        ("Metadata_Compound", cmpd.as_slice()),
        ("Metadata_Reference_Index", refi.as_slice()),
    ];
    let rule = vehicle_rule("Metadata_Compound", "Metadata_Reference_Index");
    let ap = average_precision(&all_rows, &labels, &rule, Similarity::Cosine).unwrap();
    check_ap(&ap, "ap_vehicle.csv", &keep);
    let kept: Vec<ApScore> = keep.iter().map(|&i| ap[i]).collect();
    check_map(
        &kept,
        &sub_cmpd,
        "map_vehicle.csv",
        "Metadata_Compound",
        null_size,
    );
}

#[test]
fn no_positive_pairs_is_named_error() {
    let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let names = vec!["a".to_string(), "b".to_string()];
    let labels = [("Metadata_Compound", names.as_slice())];
    let rule = PairRule {
        pos_sameby: vec!["Metadata_Compound".into()],
        neg_diffby: vec!["Metadata_Compound".into()],
        ..Default::default()
    };
    let err = average_precision(&rows, &labels, &rule, Similarity::Cosine).unwrap_err();
    assert!(err.to_string().contains("no positive pairs"), "{err}");
}

#[test]
fn bbbc021_moa_map_matches_copairs() {
    // $IPSCOPE_DATA (relative paths from the repository root), default ../shared/data
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("IPSCOPE_DATA")
        .map(|d| repo.join(d))
        .unwrap_or_else(|| repo.join("../shared/data"));
    let path = dir.join("bbbc021_platemap_moa_profiles/BBBC021_feature_selected_mad_robustize.csv");
    if !path.exists() {
        println!(
            "{} absent (set IPSCOPE_DATA): BBBC021 mAP check skipped",
            path.display()
        );
        return;
    }
    let batch = read_any(&path).unwrap();
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !n.starts_with("Metadata_"))
        .collect();
    let all = Profiles::from_batch(&batch, Some(&names)).unwrap();
    let moa_all = all.meta_text("Metadata_moa").unwrap();
    let keep: Vec<usize> = (0..moa_all.len())
        .filter(|&i| moa_all[i] != "DMSO")
        .collect();
    let p = all.take(&keep);
    let x = rows(&p);
    let moa = p.meta_text("Metadata_moa").unwrap();
    let cmpd = p.meta_text("Metadata_Compound").unwrap();
    let labels = [
        ("Metadata_moa", moa.as_slice()),
        ("Metadata_Compound", cmpd.as_slice()),
    ];
    let rule = PairRule {
        pos_sameby: vec!["Metadata_moa".into()],
        pos_diffby: vec!["Metadata_Compound".into()],
        neg_diffby: vec!["Metadata_moa".into()],
        ..Default::default()
    };
    let ap = average_precision(&x, &labels, &rule, Similarity::Cosine).unwrap();
    let identity: Vec<usize> = (0..x.len()).collect();
    check_ap(&ap, "bbbc021_ap_moa.csv", &identity);
    let null_size = reference_json()["null_size"].as_u64().unwrap() as usize;
    check_map(&ap, &moa, "bbbc021_map_moa.csv", "Metadata_moa", null_size);

    let (hit, n) = nn_accuracy(&x, &moa, &cmpd, Similarity::Cosine);
    let acc = hit as f64 / n as f64;
    println!(
        "BBBC021 (ipscope): {n} treated wells, 1-NN MOA accuracy not-same-compound {acc:.4} \
         ({hit}/{n})"
    );
    let want = reference_json()["bbbc021_nsc_1nn_accuracy_wells"]
        .as_f64()
        .unwrap();
    assert!((acc - want).abs() < 1e-12, "{acc} vs NumPy {want}");
}
