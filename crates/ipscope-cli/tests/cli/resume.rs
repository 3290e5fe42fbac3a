//! Interrupted runs: SIGKILL at random moments, SIGINT, and `--resume` giving the tables of
//! an uninterrupted run.

use crate::common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn killed_runs_resume_to_the_tables_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    let o = bin()
        .args(small_run_args(&plate, &reference))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let full = t0.elapsed().as_secs_f64().max(0.05);

    let out = tmp.path().join("out");
    // SplitMix64: the same kill moments on every run of the test.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let finish_and_compare = |out: &Path| {
        if !out.join("manifest.json").exists()
            || out.join(".ipscope-partial").join("run.json").exists()
        {
            let mut args = small_run_args(&plate, out);
            args.push("--resume");
            let o = bin().args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        assert_same_tables(&reference, out);
    };
    let (mut kills, mut completed, mut resumed_manifests) = (0, 0, 0);
    // 20 kills at random moments; runs that finish first start a new sequence (bounded).
    for _ in 0..60 {
        if kills == 20 {
            break;
        }
        if out.join("manifest.json").exists()
            && !out.join(".ipscope-partial").join("run.json").exists()
        {
            // The SIGKILL landed after the run had finished its work (the store's run.json,
            // which marks an interrupted run, is gone even if the kill came while the rest
            // of the store was being removed): a complete sequence.
            finish_and_compare(&out);
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                    .unwrap();
            resumed_manifests += usize::from(!m["resumed"].as_array().unwrap().is_empty());
            completed += 1;
            std::fs::remove_dir_all(&out).unwrap();
        }
        let mut args = small_run_args(&plate, &out);
        if out.exists() {
            args.push("--resume");
        }
        let mut child = bin()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(next() * full * 0.6));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let o = child.wait_with_output().unwrap();
        let status = o.status;
        if status.code().is_some() && !status.success() {
            panic!("a run failed: {}", stderr(&o));
        }
        if status.success() {
            // This sequence of killed and resumed runs has finished: check it, start anew.
            finish_and_compare(&out);
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                    .unwrap();
            resumed_manifests += usize::from(!m["resumed"].as_array().unwrap().is_empty());
            completed += 1;
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    eprintln!("{kills} kills, {completed} completed sequences");
    assert!(
        kills >= 10,
        "only {kills} of 20 runs were killed before finishing"
    );
    if out.exists() {
        finish_and_compare(&out);
    }
    assert!(
        completed == 0 || resumed_manifests > 0,
        "manifests of resumed runs say so"
    );
    assert!(!out.join(".ipscope-partial").exists());
    assert!(!out.join(".ipscope.lock").exists());
}

#[test]
fn sigint_stops_cleanly_and_resume_refuses_other_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let out = tmp.path().join("out");
    let child = bin()
        .args(small_run_args(&plate, &out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first field is saved, then interrupt.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let n = saved_fields(&out);
        if n > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    if o.status.code() == Some(0) {
        eprintln!("the run finished before SIGINT arrived; nothing to check");
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    assert!(
        !out.join("Nuclei.parquet").exists(),
        "no table may look complete"
    );

    // Without --resume the interrupted run is not silently discarded.
    let o = bin().args(small_run_args(&plate, &out)).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));

    // Other parameters: refused unless --force.
    let mut args = small_run_args(&plate, &out);
    args.extend(["--resume", "--max-pixels", "100000000"]);
    let o = bin().args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let mut forced = args.clone();
    forced.push("--force");
    let o = bin().args(&forced).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Resuming a complete run is refused; an uninterrupted run gives the same tables.
    let o = bin().args(&forced).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let reference = tmp.path().join("reference");
    let mut args = small_run_args(&plate, &reference);
    args.extend(["--max-pixels", "100000000"]);
    assert!(bin().args(&args).output().unwrap().status.success());
    assert_same_tables(&reference, &out);
}

#[test]
fn a_file_size_limit_is_a_named_error_and_the_run_resumes_once_lifted() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let out = tmp.path().join("out");
    // A real fault: the shell's file-size limit (KiB) is below the Nuclei table's size.
    let cmd = format!(
        "ulimit -f 64; exec \"$0\" {}",
        small_run_args(&plate, &out)
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let o = Command::new("bash")
        .args(["-c", &cmd, env!("CARGO_BIN_EXE_ipscope")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("File too large"), "{}", stderr(&o));
    for t in ["Nuclei", "Image", "Wells", "Errors"] {
        assert!(
            !out.join(format!("{t}.parquet")).exists(),
            "{t} must not look complete"
        );
    }
    assert!(!out.join("manifest.json").exists());

    let mut args = small_run_args(&plate, &out);
    args.push("--resume");
    let o = bin().args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let reference = tmp.path().join("reference");
    assert!(bin()
        .args(small_run_args(&plate, &reference))
        .output()
        .unwrap()
        .status
        .success());
    assert_same_tables(&reference, &out);
}
