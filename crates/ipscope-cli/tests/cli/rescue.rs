//! `ipscope profile` and `ipscope rescue` end to end: profiles equal pycytominer's on the
//! reference object table; rescue on a generated disease-model plate of well profiles with
//! known effects (a full rescuer, a partial rescuer toxic at high dose, an inert and a toxic
//! compound) recovers EC50 and TC50 and calls the hits.

use crate::common;

use common::{f64s, ipscope, p, repo, run_demo, stderr, strs, table};
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

const DISEASE_TABLES: [&str; 5] = ["Profiles", "Phenotype", "Rescue", "Compounds", "Similarity"];

fn run_disease(plate: &std::path::Path, out: &std::path::Path, extra: &[&str]) {
    let o = run_demo(plate, out, extra);
    assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
}

/// The disease demo plate through a plain `ipscope run --layout` (no disease flags): the run
/// writes the five disease tables, lists them in the manifest with their hashes, finds the
/// known effects of `ipscope::demo_disease` (RESCUER full rescue with EC50 1 µM; PARTIAL 40 %
/// rescue, TC50 5 µM; INERT nothing; TOXIC TC50 1 µM), and two shards run with one thread
/// and merged give the same tables as the whole plate run with two threads.
#[test]
fn plain_run_scores_the_disease_demo() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    let o = ipscope(&[
        "demo",
        "--kind",
        "disease",
        p(&plate),
        "--sites",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("whole");
    run_disease(&plate, &out, &["--threads", "2"]);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let listed: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["sha256"].as_str().is_some_and(|h| h.len() == 64))
        .filter_map(|o| o["path"].as_str())
        .collect();
    for t in DISEASE_TABLES {
        assert!(
            listed.contains(&format!("{t}.parquet").as_str()),
            "{t}: {listed:?}"
        );
    }
    assert_eq!(manifest["warnings"].as_array().map(Vec::len), Some(0));
    // the recorded hashes are those of the files
    let v = ipscope(&["verify", p(&out)]);
    assert!(v.status.success(), "{}", stderr(&v));

    assert_eq!(table(&out.join("Profiles.parquet")).num_rows(), 96);
    let pheno = table(&out.join("Phenotype.parquet"));
    let top = strs(&pheno, "Feature")[0].clone();
    assert!(top.contains("OCT4"), "phenotype feature {top}");
    let c = table(&out.join("Compounds.parquet"));
    let names = strs(&c, "Metadata_Compound");
    let readout = strs(&c, "Readout");
    let ec50 = f64s(&c, "Rescue_EC50");
    let (lo, hi) = (f64s(&c, "Rescue_EC50_Lower"), f64s(&c, "Rescue_EC50_Upper"));
    let max = f64s(&c, "MaxRescue_Percent");
    let tc50 = f64s(&c, "TC50");
    let hit = bools(&c, "Hit");
    let toxic = bools(&c, "Cytotoxic");
    for want in [top.as_str(), "OnTarget"] {
        let at = |n: &str| {
            (0..names.len())
                .find(|&i| names[i] == n && readout[i] == want)
                .unwrap_or_else(|| panic!("no {n} row for {want}"))
        };
        let (r, pa, i, t) = (at("RESCUER"), at("PARTIAL"), at("INERT"), at("TOXIC"));
        assert!(hit[r] && !toxic[r], "{want}: RESCUER");
        // within a factor of 1.5 of the truth: each well's cells and their OCT4 are random
        // draws (~450 nuclei a well), which move single doses by up to ~12 % rescue
        assert!(
            ec50[r].ln().abs() < 1.5f64.ln() && lo[r] < ec50[r] && ec50[r] < hi[r],
            "{want}: RESCUER EC50 {} ({}, {})",
            ec50[r],
            lo[r],
            hi[r]
        );
        // 30 µM gives 30/31 of the full rescue
        assert!(
            (max[r] - 96.8).abs() < 15.0,
            "{want}: RESCUER max {}",
            max[r]
        );
        assert!(!hit[pa] && toxic[pa], "{want}: PARTIAL");
        assert!(
            (tc50[pa] / 5.0 - 1.0).abs() < 0.5,
            "PARTIAL TC50 {}",
            tc50[pa]
        );
        assert!(!hit[i] && !toxic[i], "{want}: INERT");
        assert!(max[i].abs() < 15.0, "{want}: INERT max {}", max[i]);
        assert!(!hit[t] && toxic[t], "{want}: TOXIC");
        assert!((tc50[t] - 1.0).abs() < 0.5, "TOXIC TC50 {}", tc50[t]);
    }
    let s = table(&out.join("Similarity.parquet"));
    let sn = strs(&s, "Metadata_Compound");
    let (pv, qv) = (f64s(&s, "p_value"), f64s(&s, "corrected_p_value"));
    let at = |n: &str| sn.iter().position(|x| x == n).unwrap();
    assert!(qv[at("RESCUER")] < 0.05, "RESCUER q {}", qv[at("RESCUER")]);
    assert!(pv[at("INERT")] > 0.05, "INERT p {}", pv[at("INERT")]);

    // the run's report has the rescue section, and it renders without console errors
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"rescue\"") && html.contains("id=\"hit-rule\""));
    match common::chromium_binary() {
        None => eprintln!(
            "skipping the Chromium check: no chromium binary on PATH (set IPSCOPE_CHROMIUM)"
        ),
        Some(chrome) => {
            let dom = common::chromium_dom(&chrome, &out.join("report.html"));
            for id in [
                "id=\"rescue\"",
                "id=\"phenotype\"",
                "id=\"rescue-curves\"",
                "id=\"compounds\"",
            ] {
                assert!(dom.contains(id), "{id} missing from the rendered report");
            }
            assert_eq!(
                dom.matches("class=\"phenotype\"").count(),
                3,
                "phenotype plots"
            );
            assert_eq!(
                dom.matches("class=\"rescue-curve\"").count(),
                4,
                "one chart a compound"
            );
            // 4 compounds × 8 doses × 2 replicates, rescue and viability
            assert_eq!(dom.matches("class=\"pt-rescue\"").count(), 64);
            assert_eq!(dom.matches("class=\"pt-viability\"").count(), 64);
            assert!(
                dom.matches("class=\"fit-rescue\"").count() >= 2,
                "rescue fits"
            );
            assert!(
                dom.matches("class=\"fit-viability\"").count() >= 2,
                "viability fits"
            );
            let table = &dom[dom.find("id=\"compounds\"").unwrap()..];
            let table = &table[..table.find("</table>").unwrap()];
            assert_eq!(table.matches("<tr class=\"hit\"").count(), 1, "one hit row");
            let hit_row = &table[table.find("<tr class=\"hit\"").unwrap()..];
            assert!(hit_row[..hit_row.find("</tr>").unwrap()].contains("RESCUER"));
        }
    }

    // shard + merge, one thread
    let mut shards = Vec::new();
    for s in ["1/2", "2/2"] {
        let o = dir.path().join(format!("shard{}", &s[..1]));
        run_disease(&plate, &o, &["--threads", "1", "--shard", s]);
        shards.push(o);
    }
    let merged = dir.path().join("merged");
    let o = ipscope(&["merge", p(&shards[0]), p(&shards[1]), "-o", p(&merged)]);
    assert!(o.status.success(), "{}", stderr(&o));
    for t in DISEASE_TABLES {
        let f = format!("{t}.parquet");
        assert_eq!(table(&out.join(&f)), table(&merged.join(&f)), "{t}");
        assert_eq!(
            std::fs::read(out.join(&f)).unwrap(),
            std::fs::read(merged.join(&f)).unwrap(),
            "{t} bytes"
        );
    }
}

/// A layout with one line: the run succeeds without disease tables and its manifest says why.
#[test]
fn one_genotype_run_has_no_disease_tables_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let plate = common::small_plate(dir.path());
    let mut layout = String::from("Metadata_Well,Metadata_CellLine,Metadata_Compound\n");
    for r in ['A', 'B'] {
        for c in 1..=12 {
            let cmpd = if c <= 2 { "DMSO" } else { "X" };
            layout.push_str(&format!("{r}{c:02},disease,{cmpd}\n"));
        }
    }
    let lp = dir.path().join("layout.csv");
    std::fs::write(&lp, layout).unwrap();
    let out = dir.path().join("out");
    let mut args = common::small_run_args(&plate, &out);
    args.extend(["--layout", p(&lp)]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for t in DISEASE_TABLES {
        assert!(!out.join(format!("{t}.parquet")).exists(), "{t}");
    }
    let m = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&m).unwrap();
    let warnings: Vec<&str> = manifest["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("disease tables not written")
                && w.contains("Metadata_CellLine has one line (disease)")),
        "{warnings:?}"
    );
    assert!(out.join("report.html").is_file());
}

/// `run --vehicle` names the vehicle of the disease tables and is recorded in the manifest's
/// parameters; without it the vehicle defaults to DMSO here (the layout has no role column),
/// which no well has, so the run says so instead of writing the tables.
#[test]
fn vehicle_flag_names_the_reference_wells() {
    let dir = tempfile::tempdir().unwrap();
    let plate = common::small_plate(dir.path());
    let mut layout =
        String::from("Metadata_Well,Metadata_CellLine,Metadata_Compound,Metadata_Concentration\n");
    for (r, line) in [('A', "patient"), ('B', "healthy")] {
        for c in 1..=12 {
            let (cmpd, dose) = if c <= 3 {
                ("VEH", 0.0)
            } else {
                ("X", 0.1 * f64::from(c))
            };
            layout.push_str(&format!("{r}{c:02},{line},{cmpd},{dose}\n"));
        }
    }
    let lp = dir.path().join("layout.csv");
    std::fs::write(&lp, layout).unwrap();
    let manifest = |out: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
    };

    let out = dir.path().join("veh");
    let mut args = common::small_run_args(&plate, &out);
    args.extend(["--layout", p(&lp), "--vehicle", "VEH"]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    assert_eq!(m["parameters"]["disease"]["vehicle"], "VEH");
    assert_eq!(
        m["warnings"].as_array().map(Vec::len),
        Some(0),
        "{}",
        m["warnings"]
    );
    let prof = table(&out.join("Profiles.parquet"));
    assert_eq!(prof.num_rows(), 24);
    let rescue = table(&out.join("Rescue.parquet"));
    let line = strs(&rescue, "Metadata_CellLine");
    let cmpd = strs(&rescue, "Metadata_Compound");
    let top = strs(&table(&out.join("Phenotype.parquet")), "Feature")[0].clone();
    let pct = f64s(&rescue, &format!("Rescue_Percent_{top}"));
    // the disease (patient) vehicle wells average 0 % rescue, the control ones 100 %
    for (l, want) in [("patient", 0.0), ("healthy", 100.0)] {
        let v: Vec<f64> = (0..pct.len())
            .filter(|&i| line[i] == l && cmpd[i] == "VEH")
            .map(|i| pct[i])
            .collect();
        assert_eq!(v.len(), 3);
        let mean = v.iter().sum::<f64>() / 3.0;
        assert!((mean - want).abs() < 1e-9, "{l}: {mean}");
    }

    let out = dir.path().join("dmso");
    let mut args = common::small_run_args(&plate, &out);
    args.extend(["--layout", p(&lp)]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("Compounds.parquet").exists());
    let m = manifest(&out);
    let w = m["warnings"].to_string();
    assert!(
        w.contains("no vehicle wells (Metadata_Compound = DMSO)"),
        "{w}"
    );
}
