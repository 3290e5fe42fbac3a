//! `--device auto|cpu|gpu` on `segment` and `run`: the GPU's nuclei against the CPU
//! reference (F1 at IoU 0.5 ≥ 0.999, identical objects measured identically), the named
//! error when `gpu` finds no adapter, and `auto` naming the device it used.
//!
//! The GPU tests need an adapter; without a GPU, Mesa's lavapipe (`mesa-vulkan-drivers`)
//! provides a CPU Vulkan device. Without one they print `SKIP:` and pass.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ipscope::core::ops::eval::{match_labels, summarize, ImageMatch};
use ipscope::image::DynImage;
use ipscope::io::{read_image, ReadOptions};
use ipscope_table::arrow_array::{Array, RecordBatch};
use ipscope_table::DataType;

/// Environment that hides every Vulkan driver from the Vulkan loader (Linux, Windows).
const NO_VULKAN: [(&str, &str); 2] = [
    ("VK_ICD_FILENAMES", "/nonexistent/ipscope-no-icd.json"),
    ("VK_DRIVER_FILES", "/nonexistent/ipscope-no-icd.json"),
];

/// The adapters `ipscope devices --json` lists under `env`.
fn adapters(env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let o = bin()
        .arg("devices")
        .arg("--json")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// True (after printing why) when there is no GPU adapter to test on.
fn skip_without_adapter(test: &str) -> bool {
    if adapters(&[]).is_empty() {
        println!(
            "SKIP: {test}: no GPU adapter (ipscope devices lists none; on Linux install \
             mesa-vulkan-drivers for the lavapipe CPU Vulkan device)"
        );
        return true;
    }
    false
}

/// The small demo plate cut to its first `wells` wells of row A (lavapipe takes about
/// 0.7 s per 256² field, so the GPU tests keep to a few fields).
fn few_fields(root: &Path, wells: usize) -> PathBuf {
    let plate = small_plate(root);
    let keep: Vec<String> = (1..=wells).map(|c| format!("_A{c:02}_")).collect();
    for e in std::fs::read_dir(&plate).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !keep.iter().any(|k| name.contains(k.as_str())) {
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert_eq!(std::fs::read_dir(&plate).unwrap().count(), 2 * wells);
    plate
}

/// A label image as u32.
fn read_labels(path: &Path) -> ipscope::image::Image<u32> {
    match read_image(path, 0, &ReadOptions::default()).unwrap() {
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::U8(i) => i.map(u32::from),
        DynImage::F32(_) => panic!("{}: float labels", path.display()),
    }
}

/// `segment` on `images` with `--device`, labels into `dir`; stderr.
fn segment(images: &[PathBuf], device: &str, dir: &Path) -> String {
    let mut cmd = bin();
    cmd.arg("segment")
        .args(images)
        .args(["--labels-dir", p(dir), "--device", device]);
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "segment --device {device}: {}",
        stderr(&o)
    );
    stderr(&o)
}

/// Four demo DNA images (the run test covers more of the demo plate), plus six DSB2018
/// images and StarDist's sample from `$IPSCOPE_DATA` when present.
fn test_images(root: &Path) -> Vec<PathBuf> {
    let plate = few_fields(root, 4);
    let mut images: Vec<PathBuf> = std::fs::read_dir(&plate)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("_w1"))
        .collect();
    images.sort();
    assert_eq!(images.len(), 4);
    let data = data_dir();
    let dsb = data.join("dsb2018_fluo_subset/images");
    if dsb.is_dir() {
        let mut real: Vec<PathBuf> = std::fs::read_dir(&dsb)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        real.sort();
        images.extend(real.into_iter().take(6));
        let stardist = data.join("stardist_dsb2018_sample/img2d.tif");
        if stardist.is_file() {
            images.push(stardist);
        }
    } else {
        println!(
            "note: {} not found (set IPSCOPE_DATA): demo images only",
            dsb.display()
        );
    }
    images
}

#[test]
fn segment_on_the_gpu_matches_the_cpu() {
    if skip_without_adapter("segment_on_the_gpu_matches_the_cpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = test_images(dir.path());
    let (cpu, gpu) = (dir.path().join("cpu"), dir.path().join("gpu"));
    segment(&images, "cpu", &cpu);
    let said = segment(&images, "gpu", &gpu);
    assert!(said.contains("device: gpu: "), "{said}");
    let mut matches: Vec<ImageMatch> = Vec::new();
    let mut identical = 0;
    for img in &images {
        let name = format!("{}.tif", img.file_stem().unwrap().to_string_lossy());
        let (c, g) = (read_labels(&cpu.join(&name)), read_labels(&gpu.join(&name)));
        // Both number objects in raster order of first pixel: equal images are equal
        // segmentations.
        identical += usize::from(c == g);
        matches.push(match_labels(c.view(), g.view()).unwrap());
    }
    let s = summarize(&matches);
    println!(
        "segment cpu vs gpu: {} images, {identical} with identical labels; {} vs {} objects, \
         F1@0.5 {:.5}, mean matched IoU {:.5}",
        images.len(),
        s.n_true,
        s.n_pred,
        s.f1,
        s.mean_matched_iou
    );
    assert!(s.n_true > 400, "too few nuclei to compare: {}", s.n_true);
    assert!(s.f1 >= 0.999, "F1 {} < 0.999", s.f1);
}

/// A run's Nuclei rows keyed by (ImageNumber, shape): area, centre and bounding box in
/// exact bits. Equal pixel sets give equal keys.
fn objects_by_shape(nuclei: &RecordBatch) -> BTreeMap<Vec<u64>, usize> {
    let keys = [
        "Nuclei_AreaShape_Area",
        "Nuclei_Location_Center_X",
        "Nuclei_Location_Center_Y",
        "Nuclei_AreaShape_BoundingBoxMinimum_X",
        "Nuclei_AreaShape_BoundingBoxMinimum_Y",
        "Nuclei_AreaShape_BoundingBoxMaximum_X",
        "Nuclei_AreaShape_BoundingBoxMaximum_Y",
    ];
    let image = u32s(nuclei, "ImageNumber");
    let cols: Vec<Vec<u64>> = keys.iter().map(|k| column_bits(nuclei, k)).collect();
    let mut out = BTreeMap::new();
    for (row, &im) in image.iter().enumerate() {
        let mut key = vec![u64::from(im)];
        key.extend(cols.iter().map(|c| c[row]));
        assert!(out.insert(key, row).is_none(), "two objects with one shape");
    }
    out
}

/// A numeric column as exact bits (f64 bits; integers widened), NaN-safe.
fn column_bits(b: &RecordBatch, name: &str) -> Vec<u64> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    match c.data_type() {
        DataType::Float64 => f64s(b, name).iter().map(|v| v.to_bits()).collect(),
        DataType::UInt32 => u32s(b, name).iter().map(|&v| u64::from(v)).collect(),
        DataType::UInt64 => u64s(b, name),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn run_on_the_gpu_matches_the_cpu_on_the_demo_plate() {
    if skip_without_adapter("run_on_the_gpu_matches_the_cpu_on_the_demo_plate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plate = few_fields(dir.path(), 8);
    let run = |device: &str| {
        let out = dir.path().join(format!("out_{device}"));
        let mut args = small_run_args(&plate, &out);
        args.extend(["--device", device]);
        let o = ipscope(&args);
        assert!(o.status.success(), "run --device {device}: {}", stderr(&o));
        out
    };
    let (cpu, gpu) = (run("cpu"), run("gpu"));
    let manifest = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
    };
    assert_eq!(manifest(&cpu)["machine"]["device"], "cpu");
    let device = manifest(&gpu)["machine"]["device"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(device.starts_with("gpu: "), "{device}");
    // Every field segmented, on both devices.
    for out in [&cpu, &gpu] {
        assert_eq!(table(&out.join("Errors.parquet")).num_rows(), 0);
    }

    let (c, g) = (
        table(&cpu.join("Nuclei.parquet")),
        table(&gpu.join("Nuclei.parquet")),
    );
    let (kc, kg) = (objects_by_shape(&c), objects_by_shape(&g));
    let same: Vec<(usize, usize)> = kc
        .iter()
        .filter_map(|(k, &rc)| kg.get(k).map(|&rg| (rc, rg)))
        .collect();
    let f1 = 2.0 * same.len() as f64 / (kc.len() + kg.len()) as f64;
    println!(
        "run cpu vs gpu ({device}): {} vs {} nuclei, {} identical, F1 {:.5}",
        kc.len(),
        kg.len(),
        same.len(),
        f1
    );
    assert!(kc.len() > 500, "too few nuclei: {}", kc.len());
    // Identical objects are a match at any IoU, so this F1 bounds the F1 at IoU 0.5 below.
    assert!(f1 >= 0.999, "F1 {f1} < 0.999");
    // Identical objects are measured identically: every column but the object numbering
    // (an extra or missing object earlier in a field shifts the numbers after it).
    let mut compared = 0;
    for field in c.schema().fields() {
        let name = field.name();
        if name == "ObjectNumber" || name.ends_with("Number_Object_Number") {
            continue;
        }
        let gc = g
            .column_by_name(name)
            .unwrap_or_else(|| panic!("gpu: no {name}"));
        assert_eq!(field.data_type(), gc.data_type(), "{name}");
        let cc = c.column_by_name(name).unwrap();
        for &(rc, rg) in &same {
            assert_eq!(
                cc.slice(rc, 1).to_data(),
                gc.slice(rg, 1).to_data(),
                "{name}: CPU row {rc} vs GPU row {rg}"
            );
        }
        compared += 1;
    }
    assert!(compared > 20, "only {compared} columns compared");
    // The per-field thresholds: the GPU Gaussian's last-bit differences move the histogram's
    // range a little, and Otsu's bin by one (at most 1/256 of the 0..1 range) only when a
    // pixel crosses a bin edge.
    let (ic, ig) = (
        table(&cpu.join("Image.parquet")),
        table(&gpu.join("Image.parquet")),
    );
    let (tc, tg) = (
        f64s(&ic, "Threshold_FinalThreshold_Nuclei"),
        f64s(&ig, "Threshold_FinalThreshold_Nuclei"),
    );
    let same_threshold = tc.iter().zip(&tg).filter(|(a, b)| a == b).count();
    let worst = tc
        .iter()
        .zip(&tg)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "thresholds: {same_threshold} of {} fields identical, largest difference {worst:.3e}",
        tc.len()
    );
    assert!(worst <= 1.0 / 256.0, "threshold difference {worst}");
}

#[test]
fn device_gpu_without_an_adapter_is_a_named_error() {
    if !adapters(&NO_VULKAN).is_empty() {
        println!(
            "SKIP: device_gpu_without_an_adapter_is_a_named_error: the Vulkan loader's \
             VK_ICD_FILENAMES does not hide every adapter here (Metal or DX12?)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plate = few_fields(dir.path(), 2);
    let image = std::fs::read_dir(&plate)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_w1"))
        .unwrap();
    let no_vulkan = |args: &[&str]| {
        let mut cmd: Command = bin();
        cmd.args(args).envs(NO_VULKAN);
        cmd.output().unwrap()
    };

    let labels = dir.path().join("labels");
    let o = no_vulkan(&[
        "segment",
        p(&image),
        "--labels-dir",
        p(&labels),
        "--device",
        "gpu",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("--device gpu"), "{err}");
    assert!(err.contains("no GPU adapter found"), "{err}");
    assert!(!labels.exists(), "segment wrote output before failing");

    // The run stops before any work: no output directory.
    let out = dir.path().join("out");
    let mut args = small_run_args(&plate, &out);
    args.extend(["--device", "gpu"]);
    let o = no_vulkan(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--device gpu: no GPU adapter found"), "{err}");
    assert!(!out.exists(), "run created its output before failing");

    // auto falls back to the CPU and says so; the manifest records it.
    let mut args = small_run_args(&plate, &out);
    args.retain(|a| *a != "--quiet");
    args.extend(["--device", "auto"]);
    let o = no_vulkan(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("device: cpu\n"), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["machine"]["device"], "cpu");

    // Another assay cannot use a GPU: named, not ignored.
    let o = no_vulkan(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "neurite",
        "--device",
        "gpu",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("runs on the CPU only"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn device_auto_names_the_device_it_used() {
    let listed = adapters(&[]);
    let dir = tempfile::tempdir().unwrap();
    let plate = few_fields(dir.path(), 2);
    let image = std::fs::read_dir(&plate)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_w1"))
        .unwrap();
    let out = dir.path().join("out");
    let mut run = small_run_args(&plate, &out);
    run.retain(|a| *a != "--quiet");
    run.extend(["--device", "auto"]);
    let hardware: Vec<&serde_json::Value> = listed.iter().filter(|a| a["type"] != "CPU").collect();
    for args in [vec!["segment", p(&image), "--device", "auto"], run] {
        let o = ipscope(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix("device: "))
            .unwrap_or_else(|| panic!("no device line: {err}"));
        if listed.is_empty() {
            assert_eq!(line, "cpu");
        } else if hardware.is_empty() {
            // Only software renderers (lavapipe): the CPU path, naming the adapter it left.
            let named = listed.iter().any(|a| {
                line == format!(
                    "cpu (no hardware GPU: the adapter found, {} ({}), is a software \
                     renderer on the CPU, slower than the CPU path; --device gpu would use it)",
                    a["name"].as_str().unwrap(),
                    a["backend"].as_str().unwrap()
                )
            });
            assert!(named, "{line} does not name one of {listed:?}");
        } else {
            // A GPU, one of those `ipscope devices` lists, with its API and type.
            let named = hardware.iter().any(|a| {
                line == format!(
                    "gpu: {} ({}, {})",
                    a["name"].as_str().unwrap(),
                    a["backend"].as_str().unwrap(),
                    a["type"].as_str().unwrap()
                )
            });
            assert!(named, "{line} is not among {hardware:?}");
        }
        if args[0] == "run" {
            // The manifest records the device used: the CPU unless a hardware GPU is there.
            let manifest: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                    .unwrap();
            let used = manifest["machine"]["device"].as_str().unwrap();
            assert_eq!(used == "cpu", hardware.is_empty(), "{used}");
        }
    }
    // The default is the CPU, and says nothing.
    let o = ipscope(&["segment", p(&image)]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("device:"), "{}", stderr(&o));
    // `ipscope devices` marks each software renderer as the one `auto` leaves.
    let o = ipscope(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let marked = text
        .matches("--device gpu uses it, --device auto does not")
        .count();
    assert_eq!(marked, listed.len() - hardware.len(), "{text}");
}

#[test]
fn run_device_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let plate = few_fields(dir.path(), 2);
    let config = |name: &str, device: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("[run]\ndevice = \"{device}\"\n")).unwrap();
        path
    };
    let (gpu_toml, auto_toml) = (config("gpu.toml", "gpu"), config("auto.toml", "auto"));
    let manifest = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
    };
    let run = |out: &str, extra: &[&str], env: &[(&str, &str)]| {
        let out = dir.path().join(out);
        let mut args = small_run_args(&plate, &out);
        args.retain(|a| *a != "--quiet");
        args.extend(extra);
        let o = bin()
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (o, out)
    };

    // `config --default` documents the key, with the CPU as the default.
    let o = ipscope(&["config", "--default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let at = text
        .find("[run]")
        .unwrap_or_else(|| panic!("no [run]: {text}"));
    let section: Vec<&str> = text[at..].lines().take(3).collect();
    assert!(
        section[1].starts_with("# where `ipscope run` segments nuclei"),
        "{section:?}"
    );
    assert_eq!(section[2], "device = \"cpu\"", "{section:?}");

    // The flag wins over the file: `cpu` runs on the CPU whatever the file says.
    let (o, out) = run(
        "flag_wins",
        &["--config", p(&gpu_toml), "--device", "cpu"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    assert_eq!(m["machine"]["device"], "cpu");
    assert_eq!(m["parameters"]["run"]["device"], "cpu");

    // Another assay cannot use a GPU, whether the flag or the file asks for one.
    let neurite = dir.path().join("neurite");
    let args = [
        "run",
        p(&plate),
        "-o",
        p(&neurite),
        "--assay",
        "neurite",
        "--config",
        p(&gpu_toml),
    ];
    let o = ipscope(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("[run] device in --config): the neurite assay runs on the CPU only"),
        "{}",
        stderr(&o)
    );

    if adapters(&NO_VULKAN).is_empty() {
        // Without an adapter: the file's `gpu` is the flag's named error, before any output;
        // its `auto` falls back to the CPU, says so, and the manifest records the choice.
        let (o, out) = run("no_gpu", &["--config", p(&gpu_toml)], &NO_VULKAN);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        // The error names the file's key, not a flag that was never given.
        let want = format!(
            "[run] device = \"gpu\" in {}: no GPU adapter found",
            gpu_toml.display()
        );
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
        assert!(!stderr(&o).contains("--device gpu"), "{}", stderr(&o));
        assert!(!out.exists(), "run created its output before failing");
        let (o, out) = run("auto_cpu", &["--config", p(&auto_toml)], &NO_VULKAN);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("device: cpu\n"), "{}", stderr(&o));
        let m = manifest(&out);
        assert_eq!(m["machine"]["device"], "cpu");
        assert_eq!(m["parameters"]["run"]["device"], "auto");
    } else {
        println!("SKIP (part): the Vulkan loader's VK_ICD_FILENAMES does not hide every adapter");
    }

    if skip_without_adapter("run_device_from_the_config_file (on a GPU)") {
        return;
    }
    // With an adapter, the file alone moves the nuclei to the GPU.
    let (o, out) = run("gpu", &["--config", p(&gpu_toml)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    let device = m["machine"]["device"].as_str().unwrap().to_string();
    assert!(device.starts_with("gpu: "), "{device}");
    assert!(
        stderr(&o).contains(&format!("device: {device}\n")),
        "{}",
        stderr(&o)
    );
    assert_eq!(m["parameters"]["run"]["device"], "gpu");
}

#[test]
fn segment_device_from_the_config_file() {
    // `segment` reads `[run] device` of --config as `run` does: the flag wins, the file's
    // choice is used without it, and the CPU without either.
    let dir = tempfile::tempdir().unwrap();
    let plate = few_fields(dir.path(), 1);
    let image = std::fs::read_dir(&plate)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_w1"))
        .unwrap();
    let config = |name: &str, device: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("[run]\ndevice = \"{device}\"\n")).unwrap();
        path
    };
    let (gpu_toml, auto_toml) = (config("gpu.toml", "gpu"), config("auto.toml", "auto"));
    let segment = |labels: &str, extra: &[&str], env: &[(&str, &str)]| {
        let labels = dir.path().join(labels);
        let o = bin()
            .args(["segment", p(&image), "--labels-dir", p(&labels)])
            .args(extra)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (o, labels)
    };

    // The flag wins over the file: `cpu` whatever the file says, and says nothing.
    let (o, _) = segment("flag", &["--config", p(&gpu_toml), "--device", "cpu"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("device:"), "{}", stderr(&o));

    if adapters(&NO_VULKAN).is_empty() {
        // Without an adapter the file's `gpu` is an error naming the file's key, before
        // any output; its `auto` falls back to the CPU and says so.
        let (o, labels) = segment("no_gpu", &["--config", p(&gpu_toml)], &NO_VULKAN);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let want = format!("error: [run] device = \"gpu\" in {}", gpu_toml.display());
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("no GPU adapter found"),
            "{}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("--device"), "{}", stderr(&o));
        assert!(!labels.exists(), "segment wrote output before failing");
        // The flag's own error still names the flag.
        let (o, _) = segment("no_gpu_flag", &["--device", "gpu"], &NO_VULKAN);
        assert!(stderr(&o).contains("error: --device gpu"), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("no GPU adapter found"),
            "{}",
            stderr(&o)
        );
        let (o, _) = segment("auto_cpu", &["--config", p(&auto_toml)], &NO_VULKAN);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("device: cpu\n"), "{}", stderr(&o));
    } else {
        println!("SKIP (part): the Vulkan loader's VK_ICD_FILENAMES does not hide every adapter");
    }

    if skip_without_adapter("segment_device_from_the_config_file (on a GPU)") {
        return;
    }
    // With an adapter, the file alone moves the nuclei to the GPU, with the flag's labels.
    let (o, labels) = segment("gpu", &["--config", p(&gpu_toml)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("device: gpu: "), "{}", stderr(&o));
    let (o, flag) = segment("gpu_flag", &["--device", "gpu"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = format!("{}.tif", image.file_stem().unwrap().to_string_lossy());
    assert_eq!(
        read_labels(&labels.join(&name)),
        read_labels(&flag.join(&name))
    );
}

#[test]
fn a_plain_otsu_recipe_segments_alike_on_the_gpu() {
    // Otsu's global threshold and nothing more: on the GPU one resident call
    // (`Backend::segment_otsu`), read from `[nuclei]` of --config. Without declumping the
    // colonies' nuclei stay in clumps: the size limit is lifted to keep them.
    if skip_without_adapter("a_plain_otsu_recipe_segments_alike_on_the_gpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = test_images(dir.path());
    let config = dir.path().join("otsu.toml");
    std::fs::write(
        &config,
        "[nuclei]\nthreshold_method = \"otsu\"\nbackground_radius = 0.0\n\
         object_contrast = 0.0\ndeclump = false\nauto_scale = false\n\
         max_diameter = 2000.0\n",
    )
    .unwrap();
    let run = |device: &str| {
        let out = dir.path().join(device);
        let o = bin()
            .arg("segment")
            .args(&images)
            .args(["--labels-dir", p(&out), "--device", device])
            .args(["--config", p(&config)])
            .output()
            .unwrap();
        assert!(o.status.success(), "--device {device}: {}", stderr(&o));
        out
    };
    let (cpu, gpu) = (run("cpu"), run("gpu"));
    let mut matches = Vec::new();
    for img in &images {
        let name = format!("{}.tif", img.file_stem().unwrap().to_string_lossy());
        let (c, g) = (read_labels(&cpu.join(&name)), read_labels(&gpu.join(&name)));
        matches.push(match_labels(c.view(), g.view()).unwrap());
    }
    let s = summarize(&matches);
    println!(
        "plain Otsu, cpu vs gpu: {} vs {} objects, F1@0.5 {:.5}",
        s.n_true, s.n_pred, s.f1
    );
    assert!(s.n_true > 10, "too few objects to compare: {}", s.n_true);
    assert!(s.f1 >= 0.999, "F1 {} < 0.999", s.f1);
}
