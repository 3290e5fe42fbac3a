//! Campaigns: several plates into one tree partitioned by plate (`OUT/Metadata_Plate=<id>/`),
//! campaign tables, multi-plate merges in any order, refusal of mixed parameter sets.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{ipscope, p, stderr, table};

const TABLES: [&str; 6] = ["Image", "Nuclei", "Wells", "Errors", "Qc", "Curves"];

/// Three small demo plates P1..P3 (different seeds), written once per test binary.
fn plates() -> &'static [PathBuf] {
    static PLATES: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    &PLATES
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let dirs: Vec<PathBuf> = (1..=3)
                .map(|i| {
                    let dir = tmp.path().join(format!("plates/P{i}"));
                    let o = ipscope(&[
                        "demo",
                        p(&dir),
                        "--seed",
                        &i.to_string(),
                        "--plate-id",
                        &format!("P{i}"),
                        "--sites",
                        "1",
                        "--size",
                        "96",
                        "--quiet",
                    ]);
                    assert!(o.status.success(), "{}", stderr(&o));
                    dir
                })
                .collect();
            (tmp, dirs)
        })
        .1
}

fn run_args(extra: &[&str]) -> Vec<String> {
    let layout = plates()[0].join("layout.csv");
    let mut a: Vec<String> = [
        "--layout",
        p(&layout),
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=OCT4",
        "--quiet",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(first: &[&str], extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    args.extend(run_args(extra));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ipscope(&refs)
}

fn part(out: &Path, plate: &str) -> PathBuf {
    out.join(format!("Metadata_Plate={plate}"))
}

fn assert_same_bytes(a: &Path, b: &Path) {
    let x = std::fs::read(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let y = std::fs::read(b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[test]
fn campaign_run_partitions_equal_single_runs_and_campaign_tables_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let camp = tmp.path().join("camp");
    let ps = plates();
    let o = run(
        &["run", p(&ps[0]), p(&ps[1]), p(&ps[2]), "-o", p(&camp)],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut wells_rows = 0;
    let mut plates_in_wells = Vec::new();
    for (i, dir) in ps.iter().enumerate() {
        let id = format!("P{}", i + 1);
        let single = tmp.path().join(format!("single{id}"));
        let o = run(&["run", p(dir), "-o", p(&single)], &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for t in TABLES {
            assert_same_bytes(
                &single.join(format!("{t}.parquet")),
                &part(&camp, &id).join(format!("{t}.parquet")),
            );
        }
        let w = table(&single.join("Wells.parquet"));
        wells_rows += w.num_rows();
        plates_in_wells.push(id);
    }
    // CampaignWells is the plates' Wells rows, plates in order.
    let cw = table(&camp.join("CampaignWells.parquet"));
    assert_eq!(cw.num_rows(), wells_rows);
    let plate_col = ipscope_table::column_str(&cw, "Metadata_Plate").unwrap();
    let mut seen: Vec<String> = (0..cw.num_rows())
        .map(|i| plate_col.value(i).to_string())
        .collect();
    seen.dedup();
    assert_eq!(seen, plates_in_wells);
    // Per-plate QC side by side: the campaign QC rows of a plate equal that plate's own Qc.
    let cq = table(&camp.join("CampaignQc.parquet"));
    let single_qc_rows: usize = (1..=3)
        .map(|i| table(&part(&camp, &format!("P{i}")).join("Qc.parquet")).num_rows())
        .sum();
    assert_eq!(cq.num_rows(), single_qc_rows);
    // Normalised to each plate's controls: the negative controls' percent of control
    // averages 100 on every plate and readout.
    let n = table(&camp.join("CampaignNormalized.parquet"));
    let (np, nw, nr) = (
        ipscope_table::column_str(&n, "Metadata_Plate").unwrap(),
        ipscope_table::column_str(&n, "Metadata_Well").unwrap(),
        ipscope_table::column_str(&n, "Readout").unwrap(),
    );
    let poc = n
        .column_by_name("PercentOfControl")
        .unwrap()
        .as_any()
        .downcast_ref::<ipscope_table::arrow_array::Float64Array>()
        .unwrap();
    let roles = ipscope_table::column_str(&cw, "Metadata_Role").unwrap();
    let cw_wells = ipscope_table::column_str(&cw, "Metadata_Well").unwrap();
    let negative: std::collections::BTreeSet<(String, String)> = (0..cw.num_rows())
        .filter(|&i| roles.value(i) == "negative")
        .map(|i| {
            (
                plate_col.value(i).to_string(),
                cw_wells.value(i).to_string(),
            )
        })
        .collect();
    assert!(!negative.is_empty());
    let mut groups: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
    for i in 0..n.num_rows() {
        if negative.contains(&(np.value(i).to_string(), nw.value(i).to_string())) {
            groups
                .entry((np.value(i).to_string(), nr.value(i).to_string()))
                .or_default()
                .push(poc.value(i));
        }
    }
    assert_eq!(
        groups
            .keys()
            .map(|k| &k.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    for (k, v) in &groups {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        if mean.is_finite() {
            assert!(
                (mean - 100.0).abs() < 1e-6,
                "{k:?}: mean PoC of negatives {mean}"
            );
        }
    }
    // Pooled curves: one row per compound and readout, no plate column.
    let cc = table(&camp.join("CampaignCurves.parquet"));
    assert!(cc.schema().column_with_name("Metadata_Plate").is_none());
    let per_plate = table(&part(&camp, "P1").join("Curves.parquet"));
    assert_eq!(cc.num_rows(), per_plate.num_rows());
    // campaign.json names each partition with the sha256 of its manifest.
    let cj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(camp.join("campaign.json")).unwrap())
            .unwrap();
    let listed = cj["plates"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for entry in listed {
        let dir = camp.join(entry["dir"].as_str().unwrap());
        let bytes = std::fs::read(dir.join("manifest.json")).unwrap();
        let sha = ipscope_sha256(&bytes);
        assert_eq!(entry["manifest_sha256"].as_str().unwrap(), sha);
    }
    let html = std::fs::read_to_string(camp.join("report.html")).unwrap();
    for id in ["P1", "P2", "P3"] {
        assert!(html.contains(id), "campaign report lacks plate {id}");
    }

    // `ipscope campaign OUT` rewrites the same campaign tables from the partitions.
    let again = tmp.path().join("again");
    copy_dir(&camp, &again);
    for t in [
        "CampaignWells",
        "CampaignQc",
        "CampaignNormalized",
        "CampaignCurves",
    ] {
        std::fs::remove_file(again.join(format!("{t}.parquet"))).unwrap();
    }
    let o = ipscope(&["campaign", p(&again)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for t in [
        "CampaignWells",
        "CampaignQc",
        "CampaignNormalized",
        "CampaignCurves",
    ] {
        assert_same_bytes(
            &camp.join(format!("{t}.parquet")),
            &again.join(format!("{t}.parquet")),
        );
    }
}

/// sha256 through the `sha256sum` tool, a hash implementation independent of ipscope's.
fn ipscope_sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn tree_tables(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(tree_tables(&path));
        } else if path.extension().is_some_and(|x| x == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn multi_plate_merge_in_any_order_gives_the_same_bytes_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let ps = &plates()[..2];
    let mut shards = Vec::new();
    for (i, dir) in ps.iter().enumerate() {
        for s in 1..=2 {
            let out = tmp.path().join(format!("P{}_{s}", i + 1));
            let shard = format!("{s}/2");
            let o = run(&["run", p(dir), "-o", p(&out)], &["--shard", &shard]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            shards.push(out);
        }
    }
    let m1 = tmp.path().join("m1");
    let args: Vec<&str> = shards.iter().map(|s| p(s)).collect();
    let mut a = vec!["merge"];
    a.extend(&args);
    a.extend(["-o", p(&m1)]);
    let o = ipscope(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Reversed and interleaved order.
    let m2 = tmp.path().join("m2");
    let o = ipscope(&["merge", args[3], args[0], args[2], args[1], "-o", p(&m2)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t1 = tree_tables(&m1);
    assert_eq!(t1.len(), 2 * TABLES.len() + 4, "{t1:?}");
    for t in &t1 {
        assert_same_bytes(t, &m2.join(t.strip_prefix(&m1).unwrap()));
    }
    // Merging again into the same output gives the same bytes.
    let before: Vec<Vec<u8>> = t1.iter().map(|t| std::fs::read(t).unwrap()).collect();
    a.push("--overwrite");
    let o = ipscope(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(tree_tables(&m1), t1);
    for (t, b) in t1.iter().zip(&before) {
        assert!(&std::fs::read(t).unwrap() == b, "{} changed", t.display());
    }
    // A merged partition equals an unsharded run of that plate.
    let single = tmp.path().join("single");
    let o = run(&["run", p(&ps[1]), "-o", p(&single)], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for t in TABLES {
        assert_same_bytes(
            &single.join(format!("{t}.parquet")),
            &part(&m1, "P2").join(format!("{t}.parquet")),
        );
    }
}

#[test]
fn merge_refuses_shards_of_other_parameters_or_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = &plates()[2];
    let one = tmp.path().join("one");
    let o = run(&["run", p(plate), "-o", p(&one)], &["--shard", "1/2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let two = tmp.path().join("two");
    let o = run(
        &["run", p(plate), "-o", p(&two)],
        &["--shard", "2/2", "--max-pixels", "1000000"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = ipscope(&["merge", p(&one), p(&two), "-o", p(&tmp.path().join("m"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("parameters differ"), "{}", stderr(&o));
    assert!(stderr(&o).contains("run hash"), "{}", stderr(&o));
    assert!(!tmp.path().join("m").join("Nuclei.parquet").exists());

    // Same parameters, but the manifest says another ipscope version.
    let three = tmp.path().join("three");
    let o = run(&["run", p(plate), "-o", p(&three)], &["--shard", "2/2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let path = three.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m["ipscope_version"] = "0.0.0-other".into();
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    for extra in [&[][..], &["--campaign"][..]] {
        let mut a = vec!["merge", p(&one), p(&three), "-o"];
        let out = tmp.path().join(format!("m{}", extra.len()));
        a.push(p(&out));
        a.extend(extra);
        let o = ipscope(&a);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("ipscope version 0.0.0-other"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn list_files_and_directories_of_plates_name_the_same_campaign() {
    let tmp = tempfile::tempdir().unwrap();
    let ps = plates();
    let list = tmp.path().join("plates.txt");
    let lines: Vec<&str> = ps.iter().map(|d| p(d)).collect();
    std::fs::write(&list, format!("# campaign\n{}\n\n", lines.join("\n"))).unwrap();
    let a = tmp.path().join("a");
    let o = run(&["run", p(&list), "-o", p(&a)], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The directory holding the plate directories.
    let parent = ps[0].parent().unwrap();
    let b = tmp.path().join("b");
    let o = run(&["run", "--campaign", p(parent), "-o", p(&b)], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tables = tree_tables(&a);
    assert_eq!(tables.len(), 3 * TABLES.len() + 4, "{tables:?}");
    for t in tables {
        assert_same_bytes(&t, &b.join(t.strip_prefix(&a).unwrap()));
    }

    // The same plate twice: refused before anything runs.
    let c = tmp.path().join("c");
    let o = run(&["run", p(&ps[0]), p(&ps[0]), "-o", p(&c)], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("plate id P1 appears twice"),
        "{}",
        stderr(&o)
    );
    assert!(!c.join("Metadata_Plate=P1").exists());
    // A list naming a directory that does not exist: the list file and line are named.
    std::fs::write(&list, format!("{}\nno/such/plate\n", p(&ps[0]))).unwrap();
    let o = run(&["run", p(&list), "-o", p(&c)], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("plates.txt line 2") && e.contains("not a plate directory"),
        "{e}"
    );
    // An existing campaign is not overwritten without --overwrite.
    let o = run(&["run", p(&ps[0]), p(&ps[1]), "-o", p(&a)], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
}
