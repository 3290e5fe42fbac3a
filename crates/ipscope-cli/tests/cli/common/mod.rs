//! Helpers shared by the end-to-end tests of the `ipscope` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use ipscope_table::arrow_array::{Array, RecordBatch};

/// Runs the `ipscope` binary built for these tests.
pub fn ipscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipscope"))
        .args(args)
        .output()
        .expect("run ipscope")
}

/// The binary as a `Command`, for tests that spawn, signal or redirect it.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ipscope"))
}

/// A path as an argument.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A whole table file (Parquet or Arrow) as one batch.
pub fn table(path: &Path) -> RecordBatch {
    let (schema, batches) = ipscope_table::read_table(path).unwrap_or_else(|e| panic!("{e}"));
    ipscope_table::concat(&schema, &batches).expect("concat")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The public reference data sets: `$IPSCOPE_DATA`, default `../shared/data` beside the repo.
pub fn data_dir() -> PathBuf {
    std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
}

/// A named f64 column of a table as a vector (panics naming a missing column).
pub fn f64s(b: &RecordBatch, name: &str) -> Vec<f64> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    let a = c.as_primitive::<Float64Type>();
    (0..a.len()).map(|i| a.value(i)).collect()
}

/// A named u32 column of a table as a vector.
pub fn u32s(b: &RecordBatch, name: &str) -> Vec<u32> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    let a = c.as_primitive::<UInt32Type>();
    (0..a.len()).map(|i| a.value(i)).collect()
}

/// A named u64 column of a table as a vector.
pub fn u64s(b: &RecordBatch, name: &str) -> Vec<u64> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    let a = c.as_primitive::<UInt64Type>();
    (0..a.len()).map(|i| a.value(i)).collect()
}

/// A named string column of a table as a vector.
pub fn strs(b: &RecordBatch, name: &str) -> Vec<String> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    let a = c.as_string::<i32>();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

/// A 24-field plate (wells A01..B12, one site, two channels) from the demo generator.
pub fn small_plate(root: &Path) -> PathBuf {
    let demo = root.join("demo");
    let o = bin()
        .args(["demo", p(&demo), "--sites", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plate = root.join("plate");
    std::fs::create_dir_all(&plate).unwrap();
    for e in std::fs::read_dir(&demo).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".tif") && (name.contains("_A") || name.contains("_B")) {
            std::fs::copy(&path, plate.join(&name)).unwrap();
        }
    }
    plate
}

/// `run` arguments for the small plate: two channels, one thread, quiet.
pub fn small_run_args<'a>(plate: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "run",
        p(plate),
        "-o",
        p(out),
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=OCT4",
        "--threads",
        "1",
        "--quiet",
    ]
}

/// Image, Nuclei, Wells and Errors of two runs are equal.
pub fn assert_same_tables(a: &Path, b: &Path) {
    for t in ["Image", "Nuclei", "Wells", "Errors"] {
        let x = table(&a.join(format!("{t}.parquet")));
        let y = table(&b.join(format!("{t}.parquet")));
        assert_eq!(x, y, "{t} differs");
    }
}

/// A Chromium binary: `$IPSCOPE_CHROMIUM`, else `chromium`, `chromium-browser`,
/// `google-chrome` or `chrome` on PATH.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IPSCOPE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let c = dir.join(name);
            if c.is_file() {
                return Some(c);
            }
        }
    }
    None
}

/// Runs headless Chromium (`--no-sandbox`, no network services, logging to stderr) with a
/// fresh profile directory, then the `extra` flags and `url`.
pub fn headless(chrome: &Path, profile: &Path, extra: &[&str], url: &str) -> Output {
    Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// The DOM of `html` after headless Chromium loaded it, asserting that Chromium succeeded, the
/// page logged no console error and the report's inline script ran.
pub fn chromium_dom(chrome: &Path, html: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let o = headless(chrome, profile.path(), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium failed: {log}");
    for bad in [
        "Uncaught",
        ":CONSOLE",
        "SyntaxError",
        "TypeError",
        "ReferenceError",
    ] {
        assert!(!log.contains(bad), "console error in report: {log}");
    }
    assert!(
        dom.contains("data-ready=\"1\""),
        "inline script did not run"
    );
    dom
}

/// Fields an interrupted or running `run` has saved so far (`OUT/.ipscope-partial/*.arrow`).
pub fn saved_fields(out: &Path) -> usize {
    std::fs::read_dir(out.join(".ipscope-partial"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "arrow"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// `ipscope run` of a demo plate (`ipscope demo` or a plate of the same shape) with its layout
/// and channels w1=Hoechst, w2=OCT4, quiet, then `extra`.
pub fn run_demo(plate: &Path, out: &Path, extra: &[&str]) -> Output {
    let layout = plate.join("layout.csv");
    let mut args = vec![
        "run",
        p(plate),
        "-o",
        p(out),
        "--layout",
        p(&layout),
        "--channel",
        "w1=Hoechst",
        "--channel",
        "w2=OCT4",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ipscope(&args)
}
