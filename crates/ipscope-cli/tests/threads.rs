//! Same tables for any thread count: `ipscope run` at 1, 2 and 4 threads on one demo plate
//! must write byte-identical Image, Nuclei, Wells and Errors tables (and so the same
//! numbers, in the same row order).

mod common;
use common::*;

use std::path::Path;

use ipscope_table::arrow_array::Array;

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

    // The report's outline thumbnails are drawn by each field's own worker from the labels
    // it measured; `ipscope report` draws them again from a fresh read and segmentation of
    // the files: the same PNGs, at every thread count.
    let again = dir.path().join("again.html");
    let o = ipscope(&["report", p(&outs[0]), "-o", p(&again)]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    let want = overlay_pngs(&again);
    assert_eq!(want.len(), 4, "expected 4 overlays in {}", again.display());
    for (out, t) in outs.iter().zip(["1", "2", "4"]) {
        assert!(
            overlay_pngs(&out.join("report.html")) == want,
            "the run's overlays at {t} threads differ from a fresh segmentation's"
        );
    }

    // Image QC off (benches/peer/job.toml): same nuclei and measurements, null QC columns.
    let config = dir.path().join("qc_off.toml");
    std::fs::write(&config, "[qc]\nenabled = false\n").unwrap();
    let off = dir.path().join("qc_off");
    let layout = plate.join("layout.csv");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&off),
        "--layout",
        p(&layout),
        "--channel",
        "w1=Hoechst",
        "--channel",
        "w2=OCT4",
        "--threads",
        "2",
        "--config",
        p(&config),
        "--quiet",
    ]);
    assert!(o.status.success(), "run with QC off failed: {}", stderr(&o));
    let nuclei_off = std::fs::read(off.join("Nuclei.parquet")).unwrap();
    assert!(
        nuclei_off == std::fs::read(outs[0].join("Nuclei.parquet")).unwrap(),
        "Nuclei differs with image QC off"
    );
    let on = table(&outs[0].join("Image.parquet"));
    let image = table(&off.join("Image.parquet"));
    assert_eq!(u64s(&image, "Count_Nuclei"), u64s(&on, "Count_Nuclei"));
    for name in [
        "ImageQuality_FocusScore_Hoechst",
        "ImageQuality_PowerLogLogSlope_OCT4",
    ] {
        let col = |b: &ipscope_table::arrow_array::RecordBatch| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no {name}"))
                .null_count()
        };
        assert_eq!(col(&on), 0, "{name} missing with QC on");
        assert_eq!(col(&image), image.num_rows(), "{name} measured with QC off");
    }
}

/// The base64 PNGs of a report's example overlays, in order.
fn overlay_pngs(html: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(html).unwrap();
    text.split("class=\"overlay\"")
        .skip(1)
        .filter_map(|s| {
            let start = s.find("base64,")? + "base64,".len();
            let len = s[start..].find('"')?;
            Some(s[start..start + len].to_string())
        })
        .collect()
}
