//! Output faults made real: a full disk (a small tmpfs) and a read-only output directory (a
//! tmpfs mounted read-only; CI runs as root, where `chmod` does not stop writes). Each must give
//! a named error and exit code 1, leave nothing that looks like a finished run, and let
//! `--resume` finish the run once space is back or the directory is writable again, with the
//! tables of an uninterrupted run.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where `mount` is refused the tests say so and skip.

use crate::common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Nothing in `out` may pass for a finished run: no manifest, no report, no tables.
fn assert_nothing_looks_complete(out: &Path) {
    for name in [
        "manifest.json",
        "report.html",
        "Nuclei.parquet",
        "Image.parquet",
        "Wells.parquet",
        "Errors.parquet",
    ] {
        assert!(!out.join(name).exists(), "{name} exists after a failed run");
    }
}

/// A mount point that is unmounted when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// Runs `mount ARGS`; `None` (with the reason printed) where mounting is not permitted.
fn mount(args: &[&str]) -> Result<(), String> {
    let o = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

/// The `already_done` count of a `--json` run's start event.
fn already_done(stdout: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    let start = text
        .lines()
        .find(|l| l.contains("\"event\":\"start\""))
        .unwrap_or_else(|| panic!("no start event in {text}"));
    let v: serde_json::Value = serde_json::from_str(start).unwrap();
    v["already_done"].as_u64().unwrap()
}

#[test]
fn a_full_disk_is_a_named_error_and_the_run_resumes_once_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    // 384 KiB: room for a few fields' durable results, not for the run.
    if let Err(why) = mount(&["-t", "tmpfs", "-o", "size=384k", "tmpfs", p(&disk)]) {
        eprintln!("skipping the disk-full test: cannot mount a tmpfs here ({why})");
        return;
    }
    let _mounted = Mounted(disk.clone());
    let plate = small_plate(tmp.path());
    let out = disk.join("out");

    let o = bin().args(small_run_args(&plate, &out)).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(p(&out)), "the error names the file: {err}");
    assert_nothing_looks_complete(&out);

    // Space comes back (the tmpfs grows, as if files were deleted); the run resumes.
    mount(&["-o", "remount,size=64m", p(&disk)]).expect("remount the tmpfs larger");
    let mut args = small_run_args(&plate, &out);
    args.retain(|a| *a != "--quiet");
    args.extend(["--resume", "--json"]);
    let o = bin().args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let done = already_done(&o.stdout);
    assert!(
        done > 0 && done < 24,
        "the first run should have finished some fields durably, not all: {done}"
    );
    eprintln!("disk full after {done} of 24 fields; resumed and finished");

    let reference = tmp.path().join("reference");
    let o = bin()
        .args(small_run_args(&plate, &reference))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tables(&reference, &out);
}

#[test]
fn a_read_only_output_directory_is_a_named_error_and_the_run_resumes_once_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // A read-only tmpfs: root is stopped by the mount, where chmod would not stop it.
    if let Err(why) = mount(&["-t", "tmpfs", "-o", "ro,size=384k", "tmpfs", p(&mnt)]) {
        eprintln!("skipping the read-only test: cannot mount a tmpfs here ({why})");
        return;
    }
    let _mounted = Mounted(mnt.clone());
    let remount = |options: &str| {
        mount(&["-o", &format!("remount,{options}"), p(&mnt)])
            .unwrap_or_else(|e| panic!("remount {options}: {e}"))
    };
    let plate = small_plate(tmp.path());

    // A new run into a read-only place.
    let fresh = mnt.join("fresh");
    let o = bin().args(small_run_args(&plate, &fresh)).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        err.contains(p(&fresh)),
        "the error names the directory: {err}"
    );
    assert!(!fresh.exists());

    // An interrupted run (the disk filled after a few fields) whose directory then becomes
    // read-only: resuming it is refused and leaves its finished fields alone.
    remount("rw");
    let out = mnt.join("out");
    let o = bin().args(small_run_args(&plate, &out)).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let partial = out.join(".ipscope-partial");
    let listing = |dir: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(&partial);
    let fields_done = before.iter().filter(|(n, _)| n.ends_with(".arrow")).count();
    assert!(fields_done > 0, "no durable fields");

    remount("ro");
    let mut args = small_run_args(&plate, &out);
    args.push("--resume");
    let o = bin().args(&args).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        err.contains(p(&out)),
        "the error names the directory: {err}"
    );
    assert_nothing_looks_complete(&out);
    assert!(listing(&partial) == before, "the finished fields are kept");

    // Writable (and roomy) again: the resumed run keeps the finished fields.
    remount("rw,size=64m");
    args.retain(|a| *a != "--quiet");
    args.push("--json");
    let o = bin().args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(already_done(&o.stdout), fields_done as u64);
    let reference = tmp.path().join("reference");
    let o = bin()
        .args(small_run_args(&plate, &reference))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tables(&reference, &out);
}
