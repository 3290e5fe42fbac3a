//! SIGINT/SIGTERM during `run --assay calcium` and `--assay contraction`: the run stops
//! taking series, keeps the ones in progress, says how many are done and to rerun with
//! `--resume`, and exits 130 (SIGINT) or 143 (SIGTERM) as the nuclei run does; the resumed
//! run writes the tables of an uninterrupted one.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Runs `args` + `-o out` on one thread, sends `signal` once its first series is kept,
/// checks the stop, resumes, and compares `tables` with an uninterrupted run's.
fn signalled_run_stops_cleanly_and_resumes(
    args: &[&str],
    series: usize,
    signal: &str,
    code: i32,
    tables: &[&str],
) {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, out) = (tmp.path().join("reference"), tmp.path().join("out"));
    let with = |o: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["-o", p(o), "--quiet", "--threads", "1"].map(String::from));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let o = bin().args(with(&reference, &[])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let mut child = bin()
        .args(with(&out, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while saved_fields(&out) == 0 && t0.elapsed() < Duration::from_secs(120) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{signal}: {e}");
    // "interrupted after D of N fields; ... rerun the same command with --resume"
    let kept = saved_fields(&out);
    assert!(
        e.contains(&format!("interrupted after {kept} of {series} ")) && e.contains("--resume"),
        "{signal}: {kept} series kept; stderr: {e}"
    );
    assert!(kept >= 1 && kept < series, "{kept} of {series}");
    assert!(!out.join("manifest.json").exists());

    let o = bin().args(with(&out, &["--resume"])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for t in tables {
        let name = format!("{t}.parquet");
        assert!(
            std::fs::read(reference.join(&name)).unwrap()
                == std::fs::read(out.join(&name)).unwrap(),
            "{name} differs after the resume"
        );
    }
    assert_eq!(
        saved_fields(&out),
        0,
        "the finished run removes its partial results"
    );
}

#[test]
fn sigint_and_sigterm_stop_time_lapse_runs_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("calcium");
    let demo = ipscope::demo_calcium::generate(
        &plate,
        &ipscope::demo_calcium::CalciumDemoParams::default(),
    )
    .unwrap();
    signalled_run_stops_cleanly_and_resumes(
        &[
            "run",
            p(&plate),
            "--assay",
            "calcium",
            "--channel",
            "w1=Calcium",
        ],
        demo.wells.len(),
        "INT",
        130,
        &["Beats", "Traces", "Wells", "Errors"],
    );
    let plate = tmp.path().join("contraction");
    let demo = ipscope::demo_contraction::generate(
        &plate,
        &ipscope::demo_contraction::ContractionDemoParams {
            size: 32,
            seconds: 5.0,
            ..Default::default()
        },
    )
    .unwrap();
    signalled_run_stops_cleanly_and_resumes(
        &[
            "run",
            p(&plate),
            "--assay",
            "contraction",
            "--channel",
            "w1=BF",
        ],
        demo.wells.len(),
        "TERM",
        143,
        &["Contractions", "Traces", "Wells", "Errors"],
    );
}
