//! `run --illum`: illumination correction over the whole plate before segmentation.
//!
//! The small demo plate's DNA images are multiplied by a known smooth, off-centre gain
//! (down to 0.3 of the brightest spot), as a badly aligned lamp would. Without correction
//! the dim parts of the fields lose nuclei; with it, the counts come back towards the
//! demo's truth labels, and the saved function `illum_DNA.tif` follows the applied gain.
//! The run is interrupted once and resumed, and a resume with correction turned off is
//! refused (the configuration is part of what a resume must match).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use ipscope_image::{DynImage, Image};
use ipscope_io::{read_image, write_tiff, ReadOptions};

/// The applied gain at (row, col) of a `w`×`h` field: a broad Gaussian spot off the centre
/// over a floor of 0.3.
fn gain(r: usize, c: usize, w: usize, h: usize) -> f64 {
    let (r0, c0) = (0.3 * h as f64, 0.3 * w as f64);
    let s = 0.45 * w.max(h) as f64;
    let d2 = (r as f64 - r0).powi(2) + (c as f64 - c0).powi(2);
    0.3 + 0.7 * (-d2 / (2.0 * s * s)).exp()
}

/// Multiplies every DNA (w1) image of the plate by [`gain`]; returns the truth count of
/// each of them by file name.
fn vignette(plate: &Path, truth_labels: &Path) -> BTreeMap<String, u32> {
    let mut truth = BTreeMap::new();
    for e in std::fs::read_dir(plate).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(stem) = name.strip_suffix("_w1.tif") else {
            continue;
        };
        let DynImage::U16(img) = read_image(&path, 0, &ReadOptions::default()).unwrap() else {
            panic!("{name}: the demo writes u16 images");
        };
        let (w, h) = (img.width(), img.height());
        let dimmed = Image::from_fn(w, h, |r, c| {
            (f64::from(img.get(r, c)) * gain(r, c, w, h)).round() as u16
        });
        write_tiff(&path, dimmed.view()).unwrap();
        let labels = read_image(
            &truth_labels.join(format!("{stem}_nuclei.tif")),
            0,
            &ReadOptions::default(),
        )
        .unwrap();
        let n = match labels {
            DynImage::U8(l) => l.as_slice().iter().map(|&v| u32::from(v)).max(),
            DynImage::U16(l) => l.as_slice().iter().map(|&v| u32::from(v)).max(),
            DynImage::U32(l) => l.as_slice().iter().copied().max(),
            DynImage::F32(_) => panic!("float truth labels"),
        };
        truth.insert(name, n.unwrap_or(0));
    }
    assert_eq!(truth.len(), 24);
    truth
}

/// Σ |found − true| / Σ true over the fields of a run.
fn count_error(out: &Path, truth: &BTreeMap<String, u32>) -> f64 {
    let image = table(&out.join("Image.parquet"));
    let files = strs(&image, "FileName_DNA");
    let counts = u64s(&image, "Count_Nuclei");
    assert_eq!(files.len(), truth.len());
    let (mut err, mut total) = (0.0, 0.0);
    for (f, n) in files.iter().zip(counts) {
        let t = f64::from(truth[f]);
        err += (n as f64 - t).abs();
        total += t;
    }
    err / total
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Starts `args`, interrupts it with SIGINT once its first field is saved; whether it was
/// interrupted (false when it finished first).
fn interrupt_after_first_field(args: &[&str], out: &Path) -> bool {
    let child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let saved = saved_fields(out);
        if saved > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    match o.status.code() {
        Some(0) => false,
        Some(130) => true,
        _ => panic!("unexpected end: {}", stderr(&o)),
    }
}

#[test]
fn correction_brings_counts_towards_truth_and_saves_the_function() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    // The evenly lit plate, for the counts correction should get back to.
    let even = tmp.path().join("even");
    let o = ipscope(&small_run_args(&plate, &even));
    assert!(o.status.success(), "{}", stderr(&o));
    let truth = vignette(&plate, &tmp.path().join("demo/truth/labels"));

    let raw = tmp.path().join("raw");
    let o = ipscope(&small_run_args(&plate, &raw));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!raw.join("illum_DNA.tif").exists());

    // Corrected: interrupted once, a resume without correction refused, then resumed.
    let corr = tmp.path().join("corrected");
    let mut args = small_run_args(&plate, &corr);
    args.push("--illum");
    if interrupt_after_first_field(&args, &corr) {
        let mut other = small_run_args(&plate, &corr);
        other.push("--resume");
        let o = ipscope(&other);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
        let mut resume = args.clone();
        resume.push("--resume");
        let o = ipscope(&resume);
        assert!(o.status.success(), "{}", stderr(&o));
    } else {
        eprintln!("the corrected run finished before SIGINT arrived; resume not checked");
    }

    let (e_even, e_raw, e_corr) = (
        count_error(&even, &truth),
        count_error(&raw, &truth),
        count_error(&corr, &truth),
    );
    let found = |out: &Path| u64s(&table(&out.join("Image.parquet")), "Count_Nuclei");
    let total = |v: Vec<u64>| v.iter().sum::<u64>();
    println!(
        "truth {} nuclei; Σ|found − true| / true per field: evenly lit {} ({e_even:.3}), \
         vignetted {} ({e_raw:.3}), vignetted and corrected {} ({e_corr:.3})",
        truth.values().map(|&v| u64::from(v)).sum::<u64>(),
        total(found(&even)),
        total(found(&raw)),
        total(found(&corr)),
    );
    assert!(
        e_corr < e_raw,
        "correction must bring the counts closer to truth: {e_raw:.3} -> {e_corr:.3}"
    );
    assert!(
        e_corr <= e_even + 0.005,
        "corrected {e_corr:.3} vs evenly lit {e_even:.3}"
    );

    // The nuclei's DNA intensity follows the gain without correction and not with it.
    let follows_gain = |out: &Path| {
        let t = table(&out.join("Nuclei.parquet"));
        let (x, y) = (
            f64s(&t, "Nuclei_Location_Center_X"),
            f64s(&t, "Nuclei_Location_Center_Y"),
        );
        let g: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| gain(y.round() as usize, x.round() as usize, 256, 256))
            .collect();
        pearson(&f64s(&t, "Nuclei_Intensity_MeanIntensity_DNA"), &g)
    };
    let (r_raw, r_corr) = (follows_gain(&raw), follows_gain(&corr));
    println!("Pearson(nuclear mean DNA intensity, gain): without correction {r_raw:.3}, with {r_corr:.3}");
    // Measured 0.832 and 0.086.
    assert!(r_raw > 0.6, "without correction r = {r_raw}");
    assert!(r_corr.abs() < 0.25, "with correction r = {r_corr}");

    // The saved function: float32, the field's size, ≥ 1 (rescaled), shaped like the gain.
    let f = match read_image(&corr.join("illum_DNA.tif"), 0, &ReadOptions::default()).unwrap() {
        DynImage::F32(f) => f,
        _ => panic!("illum_DNA.tif must be float32"),
    };
    assert_eq!((f.width(), f.height()), (256, 256));
    assert!(f.as_slice().iter().all(|&v| v >= 1.0));
    let fv: Vec<f64> = f.as_slice().iter().map(|&v| f64::from(v)).collect();
    let gv: Vec<f64> = (0..256 * 256)
        .map(|i| gain(i / 256, i % 256, 256, 256))
        .collect();
    let r = pearson(&fv, &gv);
    println!("Pearson(illumination function, applied gain) = {r:.4}");
    assert!(r >= 0.95, "Pearson {r}");
    // Without a channel list every channel but transmitted light is corrected.
    assert!(corr.join("illum_OCT4.tif").is_file());

    // Listed in the manifest with its hash.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corr.join("manifest.json")).unwrap())
            .unwrap();
    let listed = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == "illum_DNA.tif")
        .expect("illum_DNA.tif in the manifest's outputs");
    assert_eq!(listed["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["parameters"]["illumination"]["enabled"], true);

    // The config file: DNA only (named by id), two threads: the same function, byte for
    // byte, and the same nuclei; OCT4 is left alone.
    let cfg = tmp.path().join("illum.toml");
    std::fs::write(
        &cfg,
        "[illumination]\nenabled = true\nchannels = [\"w1\"]\n",
    )
    .unwrap();
    let two = tmp.path().join("two_threads");
    let mut args = small_run_args(&plate, &two);
    let i = args.iter().position(|a| *a == "--threads").unwrap();
    args[i + 1] = "2";
    args.extend(["--config", p(&cfg)]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(two.join("illum_DNA.tif")).unwrap(),
        std::fs::read(corr.join("illum_DNA.tif")).unwrap()
    );
    assert!(!two.join("illum_OCT4.tif").exists());
    assert_eq!(found(&two), found(&corr));

    // A channel that is not there is a named error before any field is read.
    std::fs::write(
        &cfg,
        "[illumination]\nenabled = true\nchannels = [\"Actin\"]\n",
    )
    .unwrap();
    let bad = tmp.path().join("bad");
    let mut args = small_run_args(&plate, &bad);
    args.extend(["--config", p(&cfg)]);
    let o = ipscope(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Actin") && stderr(&o).contains("w1=DNA"),
        "{}",
        stderr(&o)
    );
}
