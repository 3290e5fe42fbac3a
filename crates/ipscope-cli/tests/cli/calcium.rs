//! End-to-end: `ipscope run --assay calcium` on the calcium demo plate (known rate, CTD90,
//! EAD wells, irregular and arrested wells, a CTD90 series with a known EC50), and the bad
//! inputs a time-lapse can bring (one frame, frames of different sizes, no frame interval).

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use common::{ipscope, p, stderr, table};
use ipscope::demo_calcium::{self, CalciumDemoParams, WellKind};
use ipscope::stats::input::{numeric, text};
use ipscope_table::arrow_array::{Array, BooleanArray, RecordBatch};

fn bools(batch: &RecordBatch, name: &str) -> Vec<bool> {
    let col = batch.column_by_name(name).expect(name);
    let a = col
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("boolean column");
    (0..a.len()).map(|i| a.value(i)).collect()
}

fn wells_by_name(wells: &RecordBatch) -> HashMap<String, usize> {
    text(wells, "Metadata_Well")
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w.unwrap(), i))
        .collect()
}

#[test]
fn demo_plate_rate_ctd90_ead_flags_and_ec50_match_the_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    let out = tmp.path().join("out");
    let demo = demo_calcium::generate(&plate, &CalciumDemoParams::default()).unwrap();
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "calcium",
        "--layout",
        p(&demo.layout),
        "--channel",
        "w1=Calcium",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wells = table(&out.join("Wells.parquet"));
    let idx = wells_by_name(&wells);
    let rate = numeric(&wells, "Median_Calcium_BeatRate").unwrap();
    let ctd90 = numeric(&wells, "Median_Calcium_CTD90").unwrap();
    let ead = numeric(&wells, "Count_EAD").unwrap();
    let beats = numeric(&wells, "Count_Beats").unwrap();
    let irregular = bools(&wells, "Calcium_Irregular");
    let arrest = bools(&wells, "Calcium_Arrest");
    let failed = numeric(&wells, "Count_FieldsFailed").unwrap();
    assert_eq!(idx.len(), demo.wells.len());
    let (mut worst_rate, mut worst_ctd) = (0.0f64, 0.0f64);
    for t in &demo.wells {
        let i = idx[&t.well];
        assert_eq!(failed[i], 0.0, "{}", t.well);
        match t.kind {
            WellKind::Regular | WellKind::Ead | WellKind::Async => {
                let want = t.rate_bpm.unwrap();
                let e = (rate[i] / want - 1.0).abs();
                assert!(e < 0.02, "{}: rate {} vs truth {want}", t.well, rate[i]);
                worst_rate = worst_rate.max(e);
                assert!(!arrest[i] && !irregular[i], "{}", t.well);
                assert_eq!(beats[i] as usize, t.beats.len(), "{} beat count", t.well);
            }
            WellKind::Irregular => assert!(irregular[i], "{} irregular", t.well),
            WellKind::Arrest | WellKind::NoCells => {
                assert!(arrest[i], "{} arrest", t.well);
                assert_eq!(beats[i], 0.0, "{}", t.well);
            }
        }
        if t.kind == WellKind::Regular {
            let want = t.ctd.unwrap()[2];
            let e = (ctd90[i] / want - 1.0).abs();
            assert!(e < 0.05, "{}: CTD90 {} vs truth {want}", t.well, ctd90[i]);
            worst_ctd = worst_ctd.max(e);
            assert_eq!(ead[i], 0.0, "{}: no EAD in a regular well", t.well);
        }
        if t.kind == WellKind::Ead {
            assert!(ead[i] > 0.0, "{}: EAD well not found", t.well);
        }
    }
    eprintln!(
        "worst rate error {:.2} %, worst CTD90 error {:.2} %",
        100.0 * worst_rate,
        100.0 * worst_ctd
    );

    // The CTD90 prolongation curve: Curves.parquet, fitted by the drc LL.4 code on the
    // rate-corrected CTD90 of every treated well.
    let curves = table(&out.join("Curves.parquet"));
    let readout = text(&curves, "Readout").unwrap();
    let compound = text(&curves, "Metadata_Compound").unwrap();
    let ec50 = numeric(&curves, "EC50").unwrap();
    let k = (0..readout.len())
        .find(|&k| {
            readout[k].as_deref() == Some("Median_Calcium_CTD90c")
                && compound[k].as_deref() == Some(demo_calcium::COMPOUND)
        })
        .expect("a CTD90c curve for the compound");
    let ratio = ec50[k] / demo_calcium::EC50_UM;
    eprintln!(
        "CTD90c EC50 {} µM, truth {} µM",
        ec50[k],
        demo_calcium::EC50_UM
    );
    assert!(
        (1.0 / 1.5..=1.5).contains(&ratio),
        "EC50 {} vs {}",
        ec50[k],
        demo_calcium::EC50_UM
    );

    // Beats and traces are there, one trace row per frame of every field.
    let beats_table = table(&out.join("Beats.parquet"));
    assert_eq!(
        beats_table.num_rows() as f64,
        beats.iter().sum::<f64>(),
        "Beats rows = sum of Count_Beats"
    );
    let traces = table(&out.join("Traces.parquet"));
    assert_eq!(traces.num_rows(), demo.frames * demo.wells.len());
    // The report draws each well's trace and the trace readouts' dose-responses.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"traces\""));
    assert_eq!(
        html.matches("<svg class=\"trace\"").count(),
        demo.wells.len()
    );
    assert!(html.matches("<polyline").count() >= demo.wells.len());
    assert!(
        html.contains("CMPD-QT — Calcium CTD90c (EC50"),
        "no Calcium CTD90c curve"
    );
}

fn write_frames(dir: &Path, sizes: &[(usize, usize)]) {
    // One file per frame, frame number in the name: --pattern with a T group.
    for (t, &(w, h)) in sizes.iter().enumerate() {
        let img =
            ipscope_image::Image::from_fn(w, h, |r, c| (100 + (r * 7 + c * 3 + t) % 50) as u16);
        ipscope_io::write_tiff(&dir.join(format!("P1_B02_t{t:03}.tif")), img.view()).unwrap();
    }
}

#[test]
fn bad_time_lapses_give_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let pattern = r"(?P<Plate>P1)_(?P<Well>[A-P][0-9]{2})_t(?P<T>[0-9]+)\.tif";

    // No frame interval in the files and no --fps: exit 1 naming the file and the flag.
    let dir = tmp.path().join("no_interval");
    std::fs::create_dir_all(&dir).unwrap();
    write_frames(&dir, &[(16, 16); 6]);
    let out = tmp.path().join("out1");
    let o = ipscope(&[
        "run",
        p(&dir),
        "-o",
        p(&out),
        "--assay",
        "calcium",
        "--pattern",
        pattern,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("no frame interval") && e.contains("--fps") && e.contains("P1_B02_t000.tif"),
        "{e}"
    );

    // With --fps the same plate runs: a flat well is an arrest, not a failure.
    let o = ipscope(&[
        "run",
        p(&dir),
        "-o",
        p(&out),
        "--assay",
        "calcium",
        "--pattern",
        pattern,
        "--fps",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wells = table(&out.join("Wells.parquet"));
    assert_eq!(bools(&wells, "Calcium_Arrest"), vec![true]);

    // Frames of different sizes: the series fails (exit 2) and Errors names the frame.
    let dir = tmp.path().join("sizes");
    std::fs::create_dir_all(&dir).unwrap();
    write_frames(&dir, &[(16, 16), (16, 16), (16, 16), (20, 16), (16, 16)]);
    let out = tmp.path().join("out2");
    let o = ipscope(&[
        "run",
        p(&dir),
        "-o",
        p(&out),
        "--assay",
        "calcium",
        "--pattern",
        pattern,
        "--fps",
        "20",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let errors = table(&out.join("Errors.parquet"));
    let msg = text(&errors, "Message").unwrap()[0].clone().unwrap();
    assert!(
        msg.contains("frame 3 is 20x16") && msg.contains("P1_B02_t003.tif"),
        "{msg}"
    );

    // A stack of one frame: a named error for that well.
    let dir = tmp.path().join("one");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("P1_B02_s1_w1.tif");
    let mut w = ipscope_io::timelapse::StackWriter::create(&path, 8, 8, 1, Some(0.05)).unwrap();
    w.write_frame(&[7u16; 64]).unwrap();
    w.finish().unwrap();
    let out = tmp.path().join("out3");
    let o = ipscope(&["run", p(&dir), "-o", p(&out), "--assay", "calcium"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let errors = table(&out.join("Errors.parquet"));
    let msg = text(&errors, "Message").unwrap()[0].clone().unwrap();
    assert!(msg.contains("1 frame but at least 3"), "{msg}");
}

#[test]
fn per_cell_traces_measure_the_asynchrony_of_staggered_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    let out = tmp.path().join("out");
    let demo = demo_calcium::generate(&plate, &CalciumDemoParams::default()).unwrap();
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "calcium",
        "--layout",
        p(&demo.layout),
        "--channel",
        "w1=Calcium",
        "--per-cell",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wells = table(&out.join("Wells.parquet"));
    let idx = wells_by_name(&wells);
    let asyn = numeric(&wells, "Median_Calcium_Asynchrony").unwrap();
    let cells = numeric(&wells, "Count_BeatingCells").unwrap();
    let rate = numeric(&wells, "Median_Calcium_BeatRate").unwrap();
    let mut worst_sync = 0.0f64;
    for t in &demo.wells {
        let i = idx[&t.well];
        match t.kind {
            WellKind::Async => {
                let want = t.asynchrony.unwrap();
                eprintln!(
                    "{}: asynchrony {:.4} s vs truth {want:.4} s, {} cells",
                    t.well, asyn[i], cells[i]
                );
                assert_eq!(cells[i] as usize, t.cell_offsets.len(), "{}", t.well);
                assert!(
                    (asyn[i] / want - 1.0).abs() < 0.15,
                    "{}: asynchrony {} vs {want}",
                    t.well,
                    asyn[i]
                );
                assert!((rate[i] / t.rate_bpm.unwrap() - 1.0).abs() < 0.02);
            }
            // Synchronous wells with two or more separate cells: no asynchrony to speak of.
            WellKind::Regular if asyn[i].is_finite() => worst_sync = worst_sync.max(asyn[i]),
            _ => {}
        }
    }
    eprintln!("largest asynchrony of a synchronous well: {worst_sync:.4} s");
    assert!(
        worst_sync < 0.2 * demo_calcium::ASYNC_OFFSET_S,
        "{worst_sync}"
    );

    // Traces: the field (ObjectNumber 0) and each cell, one row per frame; Beats per cell.
    let traces = table(&out.join("Traces.parquet"));
    let objects = numeric(&traces, "ObjectNumber").unwrap();
    let field_rows = objects.iter().filter(|&&o| o == 0.0).count();
    assert_eq!(field_rows, demo.frames * demo.wells.len());
    assert_eq!(
        traces.num_rows(),
        demo.frames * (demo.wells.len() + cells.iter().sum::<f64>() as usize)
    );
    let beats = table(&out.join("Beats.parquet"));
    let (bw, bo) = (
        text(&beats, "Metadata_Well").unwrap(),
        numeric(&beats, "ObjectNumber").unwrap(),
    );
    let async_well = &demo
        .wells
        .iter()
        .find(|t| t.kind == WellKind::Async)
        .unwrap();
    for cell in 1..=async_well.cell_offsets.len() {
        let n = (0..bw.len())
            .filter(|&k| bw[k].as_deref() == Some(async_well.well.as_str()) && bo[k] == cell as f64)
            .count();
        assert!(
            n + 1 >= async_well.beats.len() && n <= async_well.beats.len() + 1,
            "cell {cell}: {n} beats vs {}",
            async_well.beats.len()
        );
    }
}

/// Runs `args` + `-o out`, kills it (SIGKILL) as soon as its first series is kept in
/// `out/.ipscope-partial`, checks what `--resume` accepts and refuses, resumes, and compares
/// `tables` byte for byte with an uninterrupted run.
fn killed_run_resumes_to_the_bytes_of_an_uninterrupted_run(
    args: &[&str],
    series: usize,
    other_fps: &str,
    tables: &[&str],
) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = tmp.path().join("out");
    let with_out = |o: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["-o".to_string(), p(o).to_string(), "--quiet".to_string()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let o = common::bin()
        .args(with_out(&reference, &[]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // One thread: series finish one after the other; kill after the first.
    let partial = out.join(".ipscope-partial");
    let kept = || -> usize {
        std::fs::read_dir(&partial)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".arrow"))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut child = common::bin()
        .args(with_out(&out, &["--threads", "1"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while kept() == 0 && t0.elapsed() < Duration::from_secs(120) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = kept();
    assert!(done >= 1 && done < series, "{done} of {series} series kept");
    assert!(!out.join("manifest.json").exists());

    // Not resumed: refused, naming --resume; other parameters: refused, naming --force.
    let o = common::bin().args(with_out(&out, &[])).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = common::bin()
        .args(with_out(&out, &["--resume", "--fps", other_fps]))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("other parameters"), "{}", stderr(&o));
    assert_eq!(kept(), done, "a refused resume keeps the finished series");

    let o = common::bin()
        .args(with_out(&out, &["--resume", "--threads", "2"]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for t in tables {
        let name = format!("{t}.parquet");
        let (a, b) = (
            std::fs::read(reference.join(&name)).unwrap(),
            std::fs::read(out.join(&name)).unwrap(),
        );
        assert!(a == b, "{name} differs after the resume");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["resumed"].as_array().map(|a| a.len()), Some(1));
    assert!(
        !partial.exists(),
        "the finished run removes its partial results"
    );
    // A complete run has nothing to resume.
    let o = common::bin()
        .args(with_out(&out, &["--resume"]))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("complete"), "{}", stderr(&o));
}

#[test]
fn killed_calcium_and_contraction_runs_resume_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("calcium");
    let demo = demo_calcium::generate(
        &plate,
        &CalciumDemoParams {
            size: 96,
            ..Default::default()
        },
    )
    .unwrap();
    killed_run_resumes_to_the_bytes_of_an_uninterrupted_run(
        &[
            "run",
            p(&plate),
            "--assay",
            "calcium",
            "--per-cell",
            "--layout",
            p(&demo.layout),
            "--channel",
            "w1=Calcium",
        ],
        demo.wells.len(),
        "25",
        &["Beats", "Traces", "Wells", "Errors", "Curves"],
    );
    let plate = tmp.path().join("contraction");
    let demo = ipscope::demo_contraction::generate(
        &plate,
        &ipscope::demo_contraction::ContractionDemoParams {
            size: 64,
            seconds: 6.0,
            ..Default::default()
        },
    )
    .unwrap();
    killed_run_resumes_to_the_bytes_of_an_uninterrupted_run(
        &[
            "run",
            p(&plate),
            "--assay",
            "contraction",
            "--layout",
            p(&demo.layout),
            "--channel",
            "w1=BF",
        ],
        demo.wells.len(),
        "50",
        &["Contractions", "Traces", "Wells", "Errors", "Curves"],
    );
}
