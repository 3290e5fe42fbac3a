//! `run --resume` for the still-image assays (neurite, spots): a run interrupted after its
//! first fields (SIGKILL for neurite, SIGINT for spots) and resumed writes the same table
//! bytes as an uninterrupted run; without `--resume` the interrupted run is refused, a
//! resume with another parameter is refused and `--force` starts over. `--illum` is refused
//! by the assays that do not correct illumination.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, p, small_plate, stderr};

/// Finished fields kept in `out/.ipscope-partial` (`<ImageNumber>.json`).
fn kept(out: &Path) -> usize {
    std::fs::read_dir(out.join(".ipscope-partial"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".json")
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

fn same_bytes(a: &Path, b: &Path, tables: &[&str]) {
    for t in tables {
        let name = format!("{t}.parquet");
        let (x, y) = (
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap(),
        );
        assert!(x == y, "{name} differs");
    }
}

/// Runs `args` into `out` on one thread, sends `signal` (`KILL` or `INT`) as soon as its first
/// field is kept, then checks what `--resume` refuses and accepts: the resumed run's `tables`
/// equal those of an uninterrupted run byte for byte, and `--resume --force` with `other`
/// arguments starts over and equals an uninterrupted run with them.
fn interrupted_run_resumes(
    args: &[&str],
    fields: usize,
    signal: &str,
    other: &[&str],
    tables: &[&str],
) {
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["-o", p(out), "--quiet"]);
        v.extend(extra);
        bin().args(&v).output().unwrap()
    };
    let reference = tmp.path().join("reference");
    let o = run(&reference, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(manifest(&reference)["resumed"]
        .as_array()
        .unwrap()
        .is_empty());

    let out = tmp.path().join("out");
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["-o", p(&out), "--quiet", "--threads", "1"]);
    let child = bin()
        .args(&v)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while kept(&out) == 0 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    if signal == "INT" {
        assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
        assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
        assert!(!out.join(".ipscope.lock").exists(), "a stopped run unlocks");
    } else {
        assert_eq!(o.status.code(), None, "killed by the signal");
    }
    let done = kept(&out);
    assert!(done >= 1 && done < fields, "{done} of {fields} fields kept");
    assert!(!out.join("manifest.json").exists());

    // Not resumed: refused, naming --resume; other parameters: refused, naming --force.
    let o = run(&out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let mut changed = vec!["--resume"];
    changed.extend(other);
    let o = run(&out, &changed);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        kept(&out),
        done,
        "a refused resume keeps the finished fields"
    );

    // --force on a copy of the interrupted run: starts over with the other parameters.
    let forced = tmp.path().join("forced");
    copy_dir(&out, &forced);
    changed.push("--force");
    let o = run(&forced, &changed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(manifest(&forced)["resumed"].as_array().unwrap().is_empty());
    let reference_other = tmp.path().join("reference_other");
    let o = run(&reference_other, other);
    assert!(o.status.success(), "{}", stderr(&o));
    same_bytes(&reference_other, &forced, tables);

    // Resumed with the same arguments (another thread count): the same bytes, and the
    // finished fields read back, not analysed again (their recorded time is kept).
    let first: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(".ipscope-partial").join("00000001.json")).unwrap(),
    )
    .unwrap();
    let first_seconds = f64::from_bits(first["seconds"].as_u64().unwrap());
    let o = run(&out, &["--resume", "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    same_bytes(&reference, &out, tables);
    let m = manifest(&out);
    assert_eq!(m["resumed"].as_array().map(|a| a.len()), Some(1));
    let seconds = m["images"][0]["seconds"].as_f64().unwrap();
    assert!(
        (seconds - first_seconds).abs() <= 1e-12 * first_seconds,
        "field 1 was analysed again: {seconds} s vs {first_seconds} s"
    );
    assert_eq!(m["images"].as_array().map(|a| a.len()), Some(fields));
    assert!(
        !out.join(".ipscope-partial").exists(),
        "the finished run removes its partial results"
    );
    let o = run(&out, &["--resume"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("complete"), "{}", stderr(&o));
}

#[test]
fn killed_neurite_run_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("neuron");
    let o = bin()
        .args(["demo", p(&plate), "--kind", "neuron", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let layout = plate.join("layout.csv");
    interrupted_run_resumes(
        &[
            "run",
            p(&plate),
            "--assay",
            "neurite",
            "--channel",
            "w1=DNA",
            "--channel",
            "w2=TUBB3",
            "--layout",
            p(&layout),
        ],
        12,
        "KILL",
        &["--pixel-size", "0.65"],
        &["Neurons", "Image", "Wells", "Errors"],
    );
}

#[test]
fn interrupted_spots_run_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let layout = tmp.path().join("demo").join("layout.csv");
    interrupted_run_resumes(
        &[
            "run",
            p(&plate),
            "--assay",
            "spots",
            "--channel",
            "w1=DNA",
            "--channel",
            "w2=OCT4",
        ],
        24,
        "INT",
        &["--layout", p(&layout)],
        &["Spots", "Cells", "Image", "Wells", "Errors"],
    );
}

#[test]
fn illum_is_refused_by_assays_that_do_not_correct_illumination() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    std::fs::create_dir_all(&plate).unwrap();
    for assay in ["neurite", "spots", "calcium", "contraction"] {
        let out = tmp.path().join(format!("out_{assay}"));
        let o = bin()
            .args(["run", p(&plate), "-o", p(&out), "--assay", assay, "--illum"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{assay}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("--illum")
                && e.contains(&format!("the {assay} assay does not correct illumination")),
            "{assay}: {e}"
        );
        assert!(!out.exists(), "{assay}: nothing written");
    }
    // The same through a configuration file.
    let config = tmp.path().join("illum.toml");
    std::fs::write(&config, "[illumination]\nenabled = true\n").unwrap();
    for assay in ["neurite", "spots"] {
        let out = tmp.path().join(format!("cfg_{assay}"));
        let o = bin()
            .args([
                "run",
                p(&plate),
                "-o",
                p(&out),
                "--assay",
                assay,
                "--config",
                p(&config),
                "--channel",
                "w1=DNA",
                "--channel",
                "w2=TUBB3",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{assay}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("illum.toml") && e.contains("[illumination]"),
            "{assay}: {e}"
        );
        assert!(!out.exists(), "{assay}: nothing written");
    }
}
