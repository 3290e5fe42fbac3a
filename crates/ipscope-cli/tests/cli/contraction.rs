//! End-to-end: `ipscope run --assay contraction` on the contraction demo plate (textured
//! sheets contracting with a known rate, MUSCLEMOTION kinetics and strain, an arrested well,
//! a compound that slows the rate with a known EC50), and the bad inputs (one frame, no
//! frame interval).

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use common::{ipscope, p, stderr, table};
use ipscope::demo_contraction::{self, ContractionDemoParams, WellKind};
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

#[test]
fn demo_plate_rate_kinetics_arrest_and_ec50_match_the_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    let out = tmp.path().join("out");
    let demo = demo_contraction::generate(&plate, &ContractionDemoParams::default()).unwrap();
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "contraction",
        "--layout",
        p(&demo.layout),
        "--channel",
        "w1=BF",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wells = table(&out.join("Wells.parquet"));
    let idx: HashMap<String, usize> = text(&wells, "Metadata_Well")
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w.unwrap(), i))
        .collect();
    assert_eq!(idx.len(), demo.wells.len());
    let col = |name: &str| numeric(&wells, name).unwrap();
    let (rate, ttp, relax, dur, amp, count, failed) = (
        col("Median_Contraction_BeatRate"),
        col("Median_Contraction_TimeToPeak"),
        col("Median_Contraction_RelaxationTime"),
        col("Median_Contraction_Duration"),
        col("Median_Contraction_Amplitude"),
        col("Count_Contractions"),
        col("Count_FieldsFailed"),
    );
    let arrest = bools(&wells, "Contraction_Arrest");
    let irregular = bools(&wells, "Contraction_Irregular");
    let mut worst = [0.0f64; 4];
    let (mut full, mut half) = (Vec::new(), Vec::new());
    for t in &demo.wells {
        let i = idx[&t.well];
        assert_eq!(failed[i], 0.0, "{}", t.well);
        match t.kind {
            WellKind::Arrest => {
                assert!(arrest[i], "{}: arrest not flagged", t.well);
                assert_eq!(count[i], 0.0, "{}", t.well);
            }
            WellKind::Beating => {
                assert!(!arrest[i] && !irregular[i], "{}", t.well);
                let n = count[i] as usize;
                assert!(
                    (t.complete_beats..=t.beats.len()).contains(&n),
                    "{}: {n} contractions, truth {} complete of {}",
                    t.well,
                    t.complete_beats,
                    t.beats.len()
                );
                let checks = [
                    ("rate", rate[i], t.rate_bpm.unwrap(), 0.02),
                    ("time to peak", ttp[i], t.time_to_peak.unwrap(), 0.10),
                    ("relaxation", relax[i], t.relaxation_time.unwrap(), 0.10),
                    ("duration", dur[i], t.contraction_duration.unwrap(), 0.10),
                ];
                for (k, (what, got, want, tol)) in checks.into_iter().enumerate() {
                    let e = (got / want - 1.0).abs();
                    assert!(e < tol, "{}: {what} {got} vs truth {want}", t.well);
                    worst[k] = worst[k].max(e);
                }
                if t.compound == "DMSO" {
                    full.push(amp[i]);
                } else if t.compound == "CMPD-WEAK" {
                    half.push(amp[i]);
                }
            }
        }
    }
    eprintln!(
        "worst errors: rate {:.2} %, time to peak {:.2} %, relaxation {:.2} %, duration {:.2} %",
        100.0 * worst[0],
        100.0 * worst[1],
        100.0 * worst[2],
        100.0 * worst[3]
    );
    // The image difference grows with the displacement: half the strain, about half the
    // amplitude (the noise floor and the texture's curvature keep it from being exact).
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratio = mean(&half) / mean(&full);
    eprintln!("amplitude at half strain / full strain: {ratio:.3}");
    assert!((0.4..0.6).contains(&ratio), "amplitude ratio {ratio}");

    // The rate curve of the slowing compound (drc LL.4 fit on every treated well).
    let curves = table(&out.join("Curves.parquet"));
    let readout = text(&curves, "Readout").unwrap();
    let compound = text(&curves, "Metadata_Compound").unwrap();
    let ec50 = numeric(&curves, "EC50").unwrap();
    let k = (0..readout.len())
        .find(|&k| {
            readout[k].as_deref() == Some("Median_Contraction_BeatRate")
                && compound[k].as_deref() == Some(demo_contraction::COMPOUND)
        })
        .expect("a beat-rate curve for the compound");
    let ratio = ec50[k] / demo_contraction::EC50_UM;
    eprintln!(
        "beat-rate EC50 {} µM, truth {} µM",
        ec50[k],
        demo_contraction::EC50_UM
    );
    assert!((1.0 / 1.5..=1.5).contains(&ratio), "EC50 {}", ec50[k]);

    // Every contraction found is a true one: its peak within one frame of a model peak.
    let rows = table(&out.join("Contractions.parquet"));
    assert_eq!(rows.num_rows() as f64, count.iter().sum::<f64>());
    let (row_well, peak) = (
        text(&rows, "Metadata_Well").unwrap(),
        numeric(&rows, "Contraction_PeakTime").unwrap(),
    );
    for (w, t) in row_well.iter().zip(&peak) {
        let w = w.as_deref().unwrap();
        let truth = demo.wells.iter().find(|x| x.well == w).unwrap();
        let nearest = truth
            .beats
            .iter()
            .map(|b| (b - t).abs())
            .fold(f64::INFINITY, f64::min);
        assert!(
            nearest <= 1.0 / demo.fps,
            "{w}: peak at {t} s is no model peak"
        );
    }
    let traces = table(&out.join("Traces.parquet"));
    assert_eq!(traces.num_rows(), demo.frames * demo.wells.len());
    // Provenance: every stack hashed, every series' status, every table with its hash.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["inputs"].as_array().unwrap().len(),
        demo.wells.len()
    );
    let images = manifest["images"].as_array().unwrap();
    assert_eq!(images.len(), demo.wells.len());
    assert!(images.iter().all(|i| i["status"] == "ok"));
    let outputs: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    for t in [
        "Contractions.parquet",
        "Traces.parquet",
        "Wells.parquet",
        "report.html",
    ] {
        assert!(outputs.contains(&t), "{t} not in the manifest: {outputs:?}");
    }
    // The report draws each well's trace and the trace readouts' dose-responses.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"traces\""));
    assert_eq!(
        html.matches("<svg class=\"trace\"").count(),
        demo.wells.len()
    );
    assert!(html.matches("<polyline").count() >= demo.wells.len());
    assert!(
        html.contains("CMPD-BRADY — Contraction BeatRate (EC50"),
        "no Contraction BeatRate curve"
    );
}

fn write_frames(dir: &Path, n: usize) {
    for t in 0..n {
        let img =
            ipscope_image::Image::from_fn(16, 16, |r, c| (100 + (r * 7 + c * 3 + t) % 50) as u16);
        ipscope_io::write_tiff(&dir.join(format!("P1_B02_t{t:03}.tif")), img.view()).unwrap();
    }
}

#[test]
fn bad_contraction_videos_give_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let pattern = r"(?P<Plate>P1)_(?P<Well>[A-P][0-9]{2})_t(?P<T>[0-9]+)\.tif";

    // No frame interval and no --fps: exit 1 naming the file and the flag.
    let dir = tmp.path().join("no_interval");
    std::fs::create_dir_all(&dir).unwrap();
    write_frames(&dir, 6);
    let out = tmp.path().join("out1");
    let args = [
        "run",
        p(&dir),
        "-o",
        p(&out),
        "--assay",
        "contraction",
        "--pattern",
        pattern,
    ];
    let o = ipscope(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("no frame interval") && e.contains("--fps") && e.contains("P1_B02_t000.tif"),
        "{e}"
    );
    // With --fps it runs; frames that only flicker are no contraction.
    let mut with_fps = args.to_vec();
    with_fps.extend(["--fps", "20"]);
    let o = ipscope(&with_fps);
    assert!(o.status.success(), "{}", stderr(&o));
    let wells = table(&out.join("Wells.parquet"));
    assert_eq!(bools(&wells, "Contraction_Arrest"), vec![true]);

    // A stack of one frame: the well fails (exit 2) with a named error.
    let dir = tmp.path().join("one");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("P1_B02_s1_w1.tif");
    let mut w = ipscope_io::timelapse::StackWriter::create(&path, 8, 8, 1, Some(0.05)).unwrap();
    w.write_frame(&[7u16; 64]).unwrap();
    w.finish().unwrap();
    let out = tmp.path().join("out2");
    let o = ipscope(&["run", p(&dir), "-o", p(&out), "--assay", "contraction"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let errors = table(&out.join("Errors.parquet"));
    let msg = text(&errors, "Message").unwrap()[0].clone().unwrap();
    assert!(
        msg.contains("1 frame but at least 3") && msg.contains("P1_B02_s1_w1.tif"),
        "{msg}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let image = &manifest["images"][0];
    assert_eq!(image["status"], "failed");
    assert!(image["error"]
        .as_str()
        .unwrap()
        .contains("1 frame but at least 3"));
}
