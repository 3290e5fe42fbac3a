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

#[test]
fn ledoit_wolf_matches_scikit_learn() {
    let profiles = load("similarity_profiles.csv");
    let x = rows(&profiles);
    let m = nalgebra::DMatrix::from_fn(x.len(), x[0].len(), |i, j| x[i][j]);
    let (cov, shrink) = ipscope_stats::rescue::ledoit_wolf(&m);
    let json = reference_json();
    let want_s = json["ledoit_wolf_shrinkage"].as_f64().unwrap();
    assert!(
        (shrink - want_s).abs() < 1e-9 * want_s,
        "{shrink} vs {want_s}"
    );
    let want = json["ledoit_wolf_covariance"].as_array().unwrap();
    for (i, row) in want.iter().enumerate() {
        for (j, v) in row.as_array().unwrap().iter().enumerate() {
            let v = v.as_f64().unwrap();
            assert!(
                (cov[(i, j)] - v).abs() < 1e-9 * v.abs().max(1.0),
                "cov[{i},{j}] {} vs sklearn {v}",
                cov[(i, j)]
            );
        }
    }
}

/// A generated disease-model plate of well profiles with known effects (see `generated`).
mod disease_plate {
    use ipscope_stats::profile::{MetaColumn, MetaValues, Profiles};

    pub const DOSES: [f64; 8] = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0];

    /// (name, rescue top %, rescue EC50, TC50 or ∞)
    pub const COMPOUNDS: [(&str, f64, f64, f64); 4] = [
        ("Rescuer", 100.0, 1.0, f64::INFINITY),
        ("Partial", 45.0, 0.3, 5.0),
        ("Inert", 0.0, 1.0, f64::INFINITY),
        ("Toxic", 0.0, 1.0, 1.0),
    ];

    struct Lcg(u64);
    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// Disease and control vehicle wells (8 each) and, in the disease line, 4 compounds × 8
    /// doses × 2 replicates. Readout `Nuclei_Readout`: disease 0, control 10, SD 0.5;
    /// `Cells_Second`: disease 0, control −5, SD 1; `Cells_Noise`: no phenotype;
    /// `Cells_Constant`: 3 everywhere; `Cytoplasm_Missing`: all NaN. A compound moves the
    /// wells toward control by top · d / (d + EC50); viable count 200 / (1 + (d / TC50)²).
    pub fn generated() -> Profiles {
        let mut rng = Lcg(12);
        let (mut line, mut cmpd, mut conc) = (vec![], vec![], vec![]);
        let mut cols: Vec<Vec<f64>> = vec![vec![]; 5];
        let mut count = vec![];
        let mut push = |l: &str, c: &str, d: f64, frac: f64, viab: f64, rng: &mut Lcg| {
            line.push(Some(l.to_string()));
            cmpd.push(Some(c.to_string()));
            conc.push(d);
            let base = if l == "control" { 1.0 } else { frac };
            cols[0].push(10.0 * base + 0.5 * rng.normal());
            cols[1].push(-5.0 * base + rng.normal());
            cols[2].push(rng.normal());
            cols[3].push(3.0);
            cols[4].push(f64::NAN);
            count.push((200.0 * viab + 5.0 * rng.normal()).round().max(0.0));
        };
        for _ in 0..8 {
            push("disease", "DMSO", 0.0, 0.0, 1.0, &mut rng);
            push("control", "DMSO", 0.0, 1.0, 1.0, &mut rng);
        }
        for (name, top, ec50, tc50) in COMPOUNDS {
            for d in DOSES {
                for _ in 0..2 {
                    let frac = top / 100.0 * d / (d + ec50);
                    let viab = 1.0 / (1.0 + (d / tc50).powi(2));
                    push("disease", name, d, frac, viab, &mut rng);
                }
            }
        }
        Profiles {
            meta: vec![
                MetaColumn {
                    name: "Metadata_CellLine".into(),
                    values: MetaValues::Text(line),
                },
                MetaColumn {
                    name: "Metadata_Compound".into(),
                    values: MetaValues::Text(cmpd),
                },
                MetaColumn {
                    name: "Metadata_Concentration".into(),
                    values: MetaValues::Number(conc),
                },
                MetaColumn {
                    name: "Metadata_Object_Count".into(),
                    values: MetaValues::Number(count),
                },
            ],
            features: [
                "Nuclei_Readout",
                "Cells_Second",
                "Cells_Noise",
                "Cells_Constant",
                "Cytoplasm_Missing",
            ]
            .map(String::from)
            .to_vec(),
            values: cols,
        }
    }
}

#[test]
fn rescue_recovers_known_effects() {
    use ipscope_stats::rescue::{score, RescueOptions, ON_TARGET};
    let p = disease_plate::generated();
    for whiten in [false, true] {
        let opts = RescueOptions {
            whiten,
            ..Default::default()
        };
        let r = score(&p, &opts).unwrap();
        let status: Vec<(&str, &str, usize)> = r
            .phenotype
            .iter()
            .map(|row| (row.feature.as_str(), row.status.as_str(), row.rank))
            .collect();
        assert_eq!(status[0], ("Nuclei_Readout", "ok", 1), "{status:?}");
        assert_eq!(status[1], ("Cells_Second", "ok", 2), "{status:?}");
        assert_eq!(status[3].1, "constant");
        assert_eq!(status[4].1, "too few values");
        // expected Z′ of the readout: 1 − 3 (0.5 + 0.5) / 10 = 0.7
        assert!(
            (r.phenotype[0].z_prime - 0.7).abs() < 0.15,
            "{:?}",
            r.phenotype[0]
        );
        assert_eq!(r.wells.readouts, vec!["Nuclei_Readout".to_string()]);

        let get = |c: &str, readout: &str| {
            r.compounds
                .iter()
                .find(|row| row.compound == c && row.readout == readout)
                .unwrap()
        };
        for row in &r.compounds {
            println!(
                "whiten {whiten} {} {}: EC50 {:?} max rescue {:.1} TC50 {:.3} cytotoxic {} \
                 hit {} rank {}",
                row.compound,
                row.readout,
                row.rescue_fit.ec50_value(),
                row.max_rescue,
                row.tc50,
                row.cytotoxic,
                row.hit,
                row.rank
            );
        }
        for readout in ["Nuclei_Readout", ON_TARGET] {
            let res = get("Rescuer", readout);
            assert!(
                res.hit && res.rank == 1 && !res.cytotoxic,
                "{readout}: {res:?}"
            );
            let ec50 = res.rescue_fit.ec50_value().unwrap();
            assert!(
                (ec50 / 1.0 - 1.0).abs() < 0.25,
                "{readout}: Rescuer EC50 {ec50}"
            );
            assert!((res.max_rescue - 97.0).abs() < 10.0, "{}", res.max_rescue);
            assert!(res.replicate_agreement > 0.9);

            let par = get("Partial", readout);
            assert!(!par.hit && par.cytotoxic, "{readout}: {par:?}");
            assert!(
                (par.tc50 / 5.0 - 1.0).abs() < 0.25,
                "Partial TC50 {}",
                par.tc50
            );
            assert!((par.max_rescue - 45.0).abs() < 12.0, "{}", par.max_rescue);

            let inert = get("Inert", readout);
            assert!(!inert.hit && !inert.cytotoxic, "{readout}: {inert:?}");
            assert!(inert.max_rescue.abs() < 15.0);
            assert!(inert.tc50.is_nan());

            let tox = get("Toxic", readout);
            assert!(!tox.hit && tox.cytotoxic, "{readout}: {tox:?}");
            assert!(
                (tox.tc50 / 1.0 - 1.0).abs() < 0.25,
                "Toxic TC50 {}",
                tox.tc50
            );
        }
        // the treated disease wells of the rescuer at top dose sit on the control side
        let cmpd = p.meta_text("Metadata_Compound").unwrap();
        let top: Vec<f64> = (0..cmpd.len())
            .filter(|&i| {
                cmpd[i] == "Rescuer"
                    && p.meta_column("Metadata_Concentration").unwrap().text(i) == "30"
            })
            .map(|i| r.wells.on_target[i])
            .collect();
        assert!(top.iter().all(|v| (v - 1.0).abs() < 0.2), "{top:?}");
        if whiten {
            assert!(r.wells.shrinkage > 0.0 && r.wells.shrinkage < 1.0);
        }
    }
}

#[test]
fn rescue_bad_input_is_named() {
    use ipscope_stats::rescue::{score, RescueOptions};
    let p = disease_plate::generated();
    // one genotype only
    let opts = RescueOptions {
        control: "corrected".into(),
        ..Default::default()
    };
    let err = score(&p, &opts).unwrap_err().to_string();
    assert!(err.contains("no wells of line `corrected`"), "{err}");
    // no vehicle wells
    let opts = RescueOptions {
        vehicle: "water".into(),
        ..Default::default()
    };
    let err = score(&p, &opts).unwrap_err().to_string();
    assert!(err.contains("no vehicle wells"), "{err}");
    // a readout with no phenotype: named, not a division by zero
    let opts = RescueOptions {
        readouts: vec!["Cells_Constant".into()],
        ..Default::default()
    };
    let err = score(&p, &opts).unwrap_err().to_string();
    assert!(err.contains("readout `Cells_Constant`: constant"), "{err}");
    // nothing differs at all
    let mut flat = p.clone();
    flat.features.truncate(1);
    flat.values.truncate(1);
    flat.values[0].iter_mut().for_each(|v| *v = 1.0);
    let err = score(&flat, &RescueOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no phenotype to rescue"), "{err}");
}
