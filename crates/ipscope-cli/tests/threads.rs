//! Same tables for any thread count: `ipscope run` at 1, 2 and 4 threads on one demo plate
//! must write byte-identical Image, Nuclei, Wells and Errors tables (and so the same
//! numbers, in the same row order).

mod common;
use common::*;

use std::path::Path;

fn run(plate: &Path, out: &Path, threads: &str) {
    let layout = plate.join("layout.csv");
    let o = ipscope(&[
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
        "--threads",
        threads,
        "--quiet",
    ]);
    assert!(
        o.status.success(),
        "run with {threads} threads failed: {}",
        stderr(&o)
    );
}

#[test]
fn tables_are_byte_identical_at_1_2_and_4_threads() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    // Fields of 384 px: several hundred nuclei per field, enough for every stage to work.
    let o = ipscope(&[
        "demo",
        p(&plate),
        "--sites",
        "1",
        "--size",
        "384",
        "--quiet",
    ]);
    assert!(o.status.success(), "demo failed: {}", stderr(&o));
    let outs: Vec<_> = ["1", "2", "4"]
        .iter()
        .map(|t| {
            let out = dir.path().join(format!("out{t}"));
            run(&plate, &out, t);
            out
        })
        .collect();
    let nuclei = table(&outs[0].join("Nuclei.parquet"));
    assert!(
        nuclei.num_rows() > 1000,
        "only {} nuclei",
        nuclei.num_rows()
    );
    for name in ["Image", "Nuclei", "Wells", "Errors"] {
        let file = format!("{name}.parquet");
        let one = std::fs::read(outs[0].join(&file)).unwrap();
        assert!(!one.is_empty(), "{file} is empty");
        for (out, t) in outs[1..].iter().zip(["2", "4"]) {
            let other = std::fs::read(out.join(&file)).unwrap();
            assert!(one == other, "{file} differs between 1 and {t} threads");
        }
    }
}
