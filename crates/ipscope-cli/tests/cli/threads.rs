//! Same tables for any thread count: `ipscope run` at 1, 2 and 4 threads on one demo plate
//! must write byte-identical Image, Nuclei, Wells and Errors tables (and so the same
//! numbers, in the same row order).

use crate::common;
use common::*;

use std::path::Path;

use ipscope_table::arrow_array::Array;

fn run(plate: &Path, out: &Path, threads: &str) {
    let o = run_demo(plate, out, &["--threads", threads]);
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
    let o = run_demo(&plate, &off, &["--threads", "2", "--config", p(&config)]);
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

/// A `size`² uint16 nuclear stain: domed discs of radius 6–11 px on a jittered grid, every
/// third one with a touching neighbour (so declumping's watershed has work), background 300
/// with noise; the same bytes on every run.
fn big_field(size: usize) -> ipscope_image::Image<u16> {
    let mut state = 0x5eed_u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut img = vec![0f64; size * size];
    let disc = |img: &mut [f64], cy: f64, cx: f64, r: f64, peak: f64| {
        let (y0, y1) = ((cy - r).floor().max(0.0) as usize, (cy + r).ceil() as usize);
        let (x0, x1) = ((cx - r).floor().max(0.0) as usize, (cx + r).ceil() as usize);
        for y in y0..y1.min(size) {
            for x in x0..x1.min(size) {
                let d2 = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)) / (r * r);
                if d2 < 1.0 {
                    let v = peak * (1.0 - 0.6 * d2);
                    let p = &mut img[y * size + x];
                    *p = p.max(v);
                }
            }
        }
    };
    let step = 40.0;
    let cells = (size as f64 / step) as usize;
    for gy in 0..cells {
        for gx in 0..cells {
            let cy = (gy as f64 + 0.5) * step + (rnd() - 0.5) * 10.0;
            let cx = (gx as f64 + 0.5) * step + (rnd() - 0.5) * 10.0;
            let r = 6.0 + 5.0 * rnd();
            let peak = 2500.0 + 2000.0 * rnd();
            disc(&mut img, cy, cx, r, peak);
            if (gy * cells + gx).is_multiple_of(3) {
                // A touching neighbour: centres 1.6 radii apart, a waist between them.
                let a = rnd() * std::f64::consts::TAU;
                let r2 = 6.0 + 4.0 * rnd();
                let d = 0.8 * (r + r2);
                disc(&mut img, cy + d * a.sin(), cx + d * a.cos(), r2, peak * 0.9);
            }
        }
    }
    let data: Vec<u16> = img
        .iter()
        .map(|&v| (300.0 + v + 60.0 * (rnd() - 0.5)).round() as u16)
        .collect();
    ipscope_image::Image::from_vec(size, size, data).unwrap()
}

#[test]
fn one_big_field_is_byte_identical_at_1_2_and_4_threads() {
    // One field and more threads than fields: the threads work inside the field (row bands
    // of the filters and the distance transform, the watershed's parts in parallel).
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    std::fs::create_dir(&plate).unwrap();
    let field = plate.join("BIG_A01_s1_w1.tif");
    ipscope_io::write_tiff(&field, big_field(1024).view()).unwrap();

    // `ipscope segment --threads N` (and the global pool sized by RAYON_NUM_THREADS, for 4):
    // same label image.
    let labels: Vec<Vec<u8>> = ["1", "2", "4"]
        .iter()
        .map(|t| {
            let out = dir.path().join(format!("labels{t}.tif"));
            let mut cmd = bin();
            cmd.args(["segment", p(&field), "--labels", p(&out), "--json"]);
            if *t == "4" {
                cmd.env("RAYON_NUM_THREADS", t);
            } else {
                cmd.args(["--threads", t]).env("RAYON_NUM_THREADS", "3");
            }
            let o = cmd.output().unwrap();
            assert!(o.status.success(), "segment at {t} threads: {}", stderr(&o));
            let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(line["threads"].to_string(), *t, "{line}");
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert!(
        labels[0] == labels[1],
        "labels differ between 1 and 2 threads"
    );
    assert!(
        labels[0] == labels[2],
        "labels differ between 1 and 4 threads"
    );

    // `ipscope run` of the one-field plate: same tables.
    let outs: Vec<_> = ["1", "2", "4"]
        .iter()
        .map(|t| {
            let out = dir.path().join(format!("out{t}"));
            let o = ipscope(&[
                "run",
                p(&plate),
                "-o",
                p(&out),
                "--channel",
                "w1=DNA",
                "--threads",
                t,
                "--quiet",
            ]);
            assert!(o.status.success(), "run at {t} threads: {}", stderr(&o));
            out
        })
        .collect();
    let nuclei = table(&outs[0].join("Nuclei.parquet"));
    // 625 grid places and ~208 touching neighbours: most must come out as objects.
    assert!(nuclei.num_rows() > 600, "only {} nuclei", nuclei.num_rows());
    for name in ["Image", "Nuclei"] {
        let file = format!("{name}.parquet");
        let one = std::fs::read(outs[0].join(&file)).unwrap();
        for (out, t) in outs[1..].iter().zip(["2", "4"]) {
            assert!(
                one == std::fs::read(out.join(&file)).unwrap(),
                "{file} differs between 1 and {t} threads"
            );
        }
    }
}
