//! The run's phenotypic-activity table (`ipscope_stats::disease::vehicle_activity`, written
//! as Similarity.parquet) against copairs 0.5.5: the outputs of
//! `testdata/reference/profiles/make_reference.py` (copairs' `average_precision` +
//! `mean_average_precision` with `assign_reference_index`, 10 000 permutations).
//!
//! mAP must equal copairs' within 1e-6. The p-values are Monte-Carlo estimates from different
//! random streams, so they agree within their error: for n permutations,
//! |p − p_ref| ≤ 4·sqrt(p_ref(1 − p_ref)/n) plus 2/n (the (1 + k)/(1 + n) floor of both).
//! The Benjamini–Hochberg step is deterministic: given copairs' own p-values, our q-values
//! equal copairs' `corrected_p_value` to rounding (1e-12 relative).

use std::path::{Path, PathBuf};

use ipscope_stats::disease::vehicle_activity;
use ipscope_stats::input::{self, read_any};
use ipscope_stats::profile::Profiles;
use ipscope_stats::similarity::benjamini_hochberg;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/reference/profiles")
}

fn null_size() -> usize {
    let text = std::fs::read_to_string(reference_dir().join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["null_size"].as_u64().unwrap() as usize
}

#[test]
fn vehicle_activity_matches_copairs() {
    let batch = read_any(&reference_dir().join("similarity_profiles.csv")).unwrap();
    let profiles = Profiles::from_batch(&batch, None).unwrap();
    let n = null_size();
    let got = vehicle_activity(&profiles, None, "Metadata_Compound", "DMSO", n, 7).unwrap();
    let want = read_any(&reference_dir().join("map_vehicle.csv")).unwrap();
    let names: Vec<String> = input::text(&want, "Metadata_Compound")
        .unwrap()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let map = input::numeric(&want, "mean_average_precision").unwrap();
    let p = input::numeric(&want, "p_value").unwrap();
    let q = input::numeric(&want, "corrected_p_value").unwrap();
    assert_eq!(got.len(), names.len());
    let mut worst: f64 = 0.0;
    for (k, g) in got.iter().enumerate() {
        assert_eq!(g.group, names[k]);
        assert!(
            (g.mean_average_precision - map[k]).abs() <= 1e-6 * map[k],
            "{}: mAP {} vs copairs {}",
            g.group,
            g.mean_average_precision,
            map[k]
        );
        for (what, a, b) in [("p", g.p_value, p[k]), ("q", g.corrected_p_value, q[k])] {
            let tol = 4.0 * (b * (1.0 - b) / n as f64).sqrt() + 2.0 / n as f64;
            assert!(
                (a - b).abs() <= tol,
                "{}: {what} {a} vs copairs {b} (bound {tol})",
                g.group
            );
            worst = worst.max((a - b).abs() / tol);
        }
        println!(
            "{}: mAP {:.6} p {:.5} (copairs {:.5}) q {:.5} (copairs {:.5})",
            g.group, g.mean_average_precision, g.p_value, p[k], g.corrected_p_value, q[k]
        );
    }
    println!("largest |difference| / bound: {worst:.3}");
}

#[test]
fn bh_of_copairs_p_values_equals_copairs_q_values() {
    let mut checked = 0;
    for (file, group) in [
        ("map_vehicle.csv", "Metadata_Compound"),
        ("map_replicates.csv", "Metadata_Compound"),
        ("bbbc021_map_moa.csv", "Metadata_moa"),
    ] {
        let want = read_any(&reference_dir().join(file)).unwrap();
        assert!(input::has_column(&want, group), "{file}");
        let p = input::numeric(&want, "p_value").unwrap();
        let q = input::numeric(&want, "corrected_p_value").unwrap();
        for (k, (a, b)) in benjamini_hochberg(&p).iter().zip(&q).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs(),
                "{file} row {k}: BH {a} vs copairs {b}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
}
