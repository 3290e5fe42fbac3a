//! Soak: the same plate run three times in one process through the library API
//! ([`ipscope::Pipeline`]), as a long-lived service or notebook kernel would. The resident set
//! after the second and third runs may exceed that after the first by at most
//! [`TOLERANCE_MIB`]. The test runs in a process of its own (the test binary started again
//! with only this test), so that the other tests' memory does not count. Runs that each kept their objects alive would have grown it by two
//! Nuclei tables by the third run; the test checks that this is more than the tolerance.

use std::path::Path;

use ipscope::demo::{generate, DemoParams};
use ipscope::{Format, Pipeline, RunOptions};

/// Allowed growth of the resident set after the first run. With one allocator arena the
/// figure moves by under 1 MiB between runs on this plate; the margin covers other allocators'
/// bookkeeping while staying below the two Nuclei tables a per-run leak would add.
const TOLERANCE_MIB: f64 = 12.0;

/// VmRSS of this process in bytes, from /proc/self/status, after handing freed memory back
/// to the system where the allocator allows it (glibc keeps freed blocks in per-thread arenas,
/// and how many depends on how the workers' and the writer's allocations interleave: without
/// the trim, one run in a few reads 15–40 MiB higher and the next one low again; a leak stays).
fn rss_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn run_once(plate: &Path, out: &Path) -> ipscope::RunSummary {
    let mut options = RunOptions::new(plate);
    options.layout = Some(plate.join("layout.csv"));
    options.channels = vec![
        ("w1".into(), "Hoechst".into()),
        ("w2".into(), "OCT4".into()),
    ];
    options.threads = Some(2);
    let pipeline = Pipeline::new(options).expect("plan the demo plate");
    pipeline
        .run(out, Format::Parquet, true, &[], &|_| {})
        .expect("run the demo plate")
}

/// Set in the child process that runs the soak alone.
const CHILD: &str = "IPSCOPE_SOAK_CHILD";

#[test]
fn three_runs_in_one_process_do_not_grow_memory() {
    // The other tests of this binary run on threads of the same process, so their memory
    // would count in its resident set: the soak runs in a process of its own, this test
    // binary started again with only this test.
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = std::process::Command::new(exe)
            .args([
                "soak::three_runs_in_one_process_do_not_grow_memory",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            // One allocator arena, as the CLI sets for itself (`keep_freed_memory`): with an
            // arena per worker thread, what glibc keeps of a field's freed images depends on
            // which thread ran it, and one run in ten read 25 MiB higher than the one before
            // without any memory being held by the library. A leak grows the one arena too.
            .env("MALLOC_ARENA_MAX", "1")
            .output()
            .expect("start the soak's own process");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "the soak failed in its own process:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    if rss_bytes().is_none() {
        eprintln!("skipping the soak test: /proc/self/status has no VmRSS on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    let params = DemoParams {
        wells: 96,
        sites: 2,
        ..DemoParams::default()
    };
    generate(&plate, &params).expect("demo plate");
    let out = dir.path().join("out");

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut after = Vec::new();
    for i in 1..=3 {
        let summary = run_once(&plate, &out);
        assert_eq!(summary.fields, 192);
        assert_eq!(summary.fields_failed, 0);
        let rss = rss_bytes().unwrap();
        eprintln!(
            "soak run {i}: {} nuclei, resident set after the run {:.1} MiB",
            summary.nuclei,
            mib(rss)
        );
        after.push(rss);
    }

    // What one run's objects take in memory: a leak of them would show as this much growth.
    let (schema, batches) = ipscope::table::read_table(&out.join("Nuclei.parquet")).unwrap();
    let nuclei = ipscope::table::concat(&schema, &batches).unwrap();
    let table_mib = mib(nuclei.get_array_memory_size() as u64);
    eprintln!(
        "one run's Nuclei table in memory: {table_mib:.1} MiB; tolerance {TOLERANCE_MIB} MiB"
    );
    assert!(
        2.0 * table_mib > TOLERANCE_MIB,
        "the plate is too small for the tolerance to catch a Nuclei table leaked per run"
    );
    for (i, &rss) in after.iter().enumerate().skip(1) {
        let growth = mib(rss) - mib(after[0]);
        assert!(
            growth <= TOLERANCE_MIB,
            "resident set grew {growth:.1} MiB from run 1 to run {} (tolerance {TOLERANCE_MIB} MiB)",
            i + 1
        );
    }
}
