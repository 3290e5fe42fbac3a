//! `ipscope profile` and `ipscope rescue` end to end: profiles equal pycytominer's on the
//! reference object table; rescue on a generated disease-model plate of well profiles with
//! known effects (a full rescuer, a partial rescuer toxic at high dose, an inert and a toxic
//! compound) recovers EC50 and TC50 and calls the hits.

mod common;

use common::{f64s, ipscope, p, repo, stderr, strs, table};
use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::RecordBatch;

fn bools(b: &RecordBatch, name: &str) -> Vec<bool> {
    let a = b.column_by_name(name).unwrap().as_boolean().clone();
    (0..a.len()).map(|i| a.value(i)).collect()
}

#[test]
fn profile_command_matches_pycytominer() {
    let refdir = repo().join("testdata/reference/profiles");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("Profiles.parquet");
    let o = ipscope(&[
        "profile",
        p(&refdir),
        "--objects",
        "objects.csv",
        "--reference-line",
        "disease",
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = table(&out);
    let mut rdr = csv::Reader::from_path(refdir.join("normalize_mad_robustize.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(got.num_rows(), rows.len());
    assert_eq!(strs(&got, "Metadata_CellLine")[0], &rows[0][2]);
    let counts = f64s(&got, "Metadata_Object_Count");
    assert!(
        counts.iter().all(|&c| (8.0..=12.0).contains(&c)),
        "{counts:?}"
    );
    let mut compared = 0;
    for (j, name) in header.iter().enumerate() {
        if name.starts_with("Metadata_") {
            continue;
        }
        let col = f64s(&got, name);
        for (r, row) in rows.iter().enumerate() {
            let want: f64 = row[j].parse().unwrap_or(f64::NAN);
            if want.is_nan() {
                assert!(col[r].is_nan());
                continue;
            }
            assert!(
                (col[r] - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{name} row {r}: {} vs pycytominer {want}",
                col[r]
            );
            compared += 1;
        }
    }
    assert!(compared > 300, "{compared}");
}

/// Small deterministic normal generator for the generated plate.
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

/// Well profiles: 8 vehicle wells per line (only `lines` present), and in the disease line 4
/// compounds × 8 doses × 2 replicates. `Nuclei_Readout`: disease 0, control 10 (SD 0.5);
/// rescue fraction top · d / (d + EC50); viable count 200 / (1 + (d / TC50)²).
fn write_plate(path: &std::path::Path, lines: &[&str]) {
    let mut rng = Lcg(99);
    let mut s = String::from(
        "Metadata_Plate,Metadata_Well,Metadata_CellLine,Metadata_Compound,Metadata_Concentration,\
         Metadata_Object_Count,Nuclei_Readout,Cells_Noise\n",
    );
    let mut well = 0;
    let mut row = |line: &str, c: &str, d: f64, frac: f64, viab: f64, rng: &mut Lcg| {
        well += 1;
        let base = if line == "control" { 1.0 } else { frac };
        s.push_str(&format!(
            "P1,W{well:03},{line},{c},{d},{},{},{}\n",
            (200.0 * viab + 5.0 * rng.normal()).round().max(0.0),
            10.0 * base + 0.5 * rng.normal(),
            rng.normal()
        ));
    };
    for _ in 0..8 {
        for l in lines {
            row(l, "DMSO", 0.0, 0.0, 1.0, &mut rng);
        }
    }
    let compounds = [
        ("Rescuer", 100.0, 1.0, f64::INFINITY),
        ("Partial", 45.0, 0.3, 5.0),
        ("Inert", 0.0, 1.0, f64::INFINITY),
        ("Toxic", 0.0, 1.0, 1.0),
    ];
    for (name, top, ec50, tc50) in compounds {
        for d in [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0] {
            for _ in 0..2 {
                let viab = 1.0 / (1.0 + (d / tc50).powi(2));
                row(
                    "disease",
                    name,
                    d,
                    top / 100.0 * d / (d + ec50),
                    viab,
                    &mut rng,
                );
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn rescue_ranks_known_compounds() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.csv");
    write_plate(&profiles, &["disease", "control"]);
    let out = dir.path().join("rescue");
    let o = ipscope(&[
        "rescue",
        p(&profiles),
        "--disease",
        "disease",
        "--control",
        "control",
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    println!("{}", String::from_utf8_lossy(&o.stdout));

    let pheno = table(&out.join("Phenotype.parquet"));
    assert_eq!(strs(&pheno, "Feature")[0], "Nuclei_Readout");
    let c = table(&out.join("Compounds.parquet"));
    let names = strs(&c, "Metadata_Compound");
    let readout = strs(&c, "Readout");
    let ec50 = f64s(&c, "Rescue_EC50");
    let tc50 = f64s(&c, "TC50");
    let hit = bools(&c, "Hit");
    let toxic = bools(&c, "Cytotoxic");
    let at = |n: &str| {
        (0..names.len())
            .find(|&i| names[i] == n && readout[i] == "Nuclei_Readout")
            .unwrap()
    };
    let (r, pa, i, t) = (at("Rescuer"), at("Partial"), at("Inert"), at("Toxic"));
    assert!(hit[r] && !toxic[r]);
    assert!((ec50[r] - 1.0).abs() < 0.25, "Rescuer EC50 {}", ec50[r]);
    assert!(!hit[pa] && toxic[pa]);
    // a 45 % effect with 5 %-of-phenotype well noise pins its EC50 loosely: the true 0.3
    // must lie in the fit's 95 % interval
    let (lo, hi) = (f64s(&c, "Rescue_EC50_Lower"), f64s(&c, "Rescue_EC50_Upper"));
    assert!(
        lo[pa] <= 0.3 && 0.3 <= hi[pa],
        "Partial EC50 {} ({}, {})",
        ec50[pa],
        lo[pa],
        hi[pa]
    );
    assert!(
        lo[r] <= 1.0 && 1.0 <= hi[r],
        "Rescuer EC50 {} ({}, {})",
        ec50[r],
        lo[r],
        hi[r]
    );
    assert!(
        (tc50[pa] / 5.0 - 1.0).abs() < 0.25,
        "Partial TC50 {}",
        tc50[pa]
    );
    assert!(!hit[i] && !toxic[i], "inert");
    assert!(!hit[t] && toxic[t], "toxic");
    assert!((tc50[t] - 1.0).abs() < 0.25, "Toxic TC50 {}", tc50[t]);
    assert!(strs(&c, "HitRule")[0].contains(">= 50 % rescue"));

    let wells = table(&out.join("Rescue.parquet"));
    let pct = f64s(&wells, "Rescue_Percent_Nuclei_Readout");
    let line = strs(&wells, "Metadata_CellLine");
    let cmpd = strs(&wells, "Metadata_Compound");
    let dv: Vec<f64> = (0..pct.len())
        .filter(|&k| line[k] == "disease" && cmpd[k] == "DMSO")
        .map(|k| pct[k])
        .collect();
    let mean = dv.iter().sum::<f64>() / dv.len() as f64;
    assert!(mean.abs() < 1e-9, "disease vehicle mean rescue {mean}");
}

#[test]
fn rescue_with_one_genotype_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.csv");
    write_plate(&profiles, &["disease"]);
    let o = ipscope(&[
        "rescue",
        p(&profiles),
        "--disease",
        "disease",
        "--control",
        "control",
        "-o",
        p(&dir.path().join("out")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("profiles.csv") && e.contains("no wells of line `control`"),
        "{e}"
    );
}

/// The disease demo end to end: images → run → mean profiles → rescue. Truth:
/// `ipscope::demo_disease` (RESCUER full rescue with EC50 1 µM; PARTIAL 40 % rescue, TC50
/// 5 µM; INERT nothing; TOXIC TC50 1 µM).
#[test]
fn disease_demo_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    let out = dir.path().join("out");
    let o = ipscope(&[
        "demo",
        "--kind",
        "disease",
        p(&plate),
        "--sites",
        "4",
        "--run",
        p(&out),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    assert!(o.status.success(), "{}\n{stdout}", stderr(&o));

    let prof = table(&out.join("Profiles.parquet"));
    assert_eq!(prof.num_rows(), 96);
    let c = table(&out.join("Compounds.parquet"));
    let names = strs(&c, "Metadata_Compound");
    let readout = strs(&c, "Readout");
    let ec50 = f64s(&c, "Rescue_EC50");
    let (lo, hi) = (f64s(&c, "Rescue_EC50_Lower"), f64s(&c, "Rescue_EC50_Upper"));
    let max = f64s(&c, "MaxRescue_Percent");
    let tc50 = f64s(&c, "TC50");
    let hit = bools(&c, "Hit");
    let toxic = bools(&c, "Cytotoxic");
    let at = |n: &str| {
        (0..names.len())
            .find(|&i| names[i] == n && readout[i] == "Nuclei_Intensity_MeanIntensity_OCT4")
            .unwrap_or_else(|| panic!("no {n} row"))
    };
    let (r, pa, i, t) = (at("RESCUER"), at("PARTIAL"), at("INERT"), at("TOXIC"));
    assert!(hit[r] && !toxic[r], "RESCUER");
    assert!(
        lo[r] <= 1.0 && 1.0 <= hi[r] && (ec50[r] / 1.0 - 1.0).abs() < 0.5,
        "RESCUER EC50 {} ({}, {})",
        ec50[r],
        lo[r],
        hi[r]
    );
    // 30 µM gives 30/31 of the full rescue
    assert!((max[r] - 96.8).abs() < 15.0, "RESCUER max {}", max[r]);
    assert!(!hit[pa] && toxic[pa], "PARTIAL");
    assert!(
        (tc50[pa] / 5.0 - 1.0).abs() < 0.5,
        "PARTIAL TC50 {}",
        tc50[pa]
    );
    assert!(!hit[i] && !toxic[i], "INERT");
    assert!(!hit[t] && toxic[t], "TOXIC");
    assert!((tc50[t] / 1.0 - 1.0).abs() < 0.5, "TOXIC TC50 {}", tc50[t]);
}
