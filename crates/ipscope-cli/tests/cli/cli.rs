//! End-to-end runs of the `ipscope` binary on generated plates.

use crate::common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ipscope_table::arrow_array::Array;
use ipscope_table::{column_str, column_u32, column_u64};

fn demo_plate() -> PathBuf {
    demo_plate_root().join("plate")
}

/// One small demo plate shared by the tests of this binary (generated once).
fn demo_plate_root() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let plate = dir.path().join("plate");
        // The default demo field size (256 px): about 120 nuclei per field.
        let o = ipscope(&["demo", p(&plate), "--sites", "1", "--quiet"]);
        assert!(o.status.success(), "demo failed: {}", stderr(&o));
        dir
    })
    .path()
}

fn truth_counts(plate: &Path) -> BTreeMap<String, u64> {
    let mut rdr = csv::Reader::from_path(plate.join("truth/wells.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let well = headers.iter().position(|h| h == "Metadata_Well").unwrap();
    let count = headers.iter().position(|h| h == "Count_Nuclei").unwrap();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            (r[well].to_string(), r[count].parse().unwrap())
        })
        .collect()
}

#[test]
fn demo_run_counts_nuclei_within_ten_percent_of_truth() {
    let plate = &demo_plate();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("out");
    let o = run_demo(plate, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let truth = truth_counts(plate);
    let wells = table(&out.join("Wells.parquet"));
    let names = column_str(&wells, "Metadata_Well").unwrap();
    let counts = column_u64(&wells, "Count_Nuclei").unwrap();
    assert_eq!(wells.num_rows(), truth.len());
    let (mut found, mut expected, mut close) = (0u64, 0u64, 0usize);
    for i in 0..wells.num_rows() {
        let t = truth[names.value(i)];
        let c = counts.value(i);
        found += c;
        expected += t;
        if (c as f64 - t as f64).abs() <= 0.1 * t as f64 {
            close += 1;
        }
    }
    let rel = (found as f64 - expected as f64).abs() / expected as f64;
    assert!(
        rel <= 0.10,
        "found {found} nuclei, truth {expected} ({:.1} % off)",
        rel * 100.0
    );
    assert!(
        close as f64 >= 0.9 * wells.num_rows() as f64,
        "only {close} of {} wells within 10 % of the true count",
        wells.num_rows()
    );

    // Layout columns reach every table; CellProfiler names are used.
    for col in [
        "Metadata_Compound",
        "Metadata_Concentration",
        "Metadata_Role",
    ] {
        assert!(wells.schema().index_of(col).is_ok(), "Wells lacks {col}");
    }
    let nuclei = table(&out.join("Nuclei.parquet"));
    for col in [
        "ImageNumber",
        "ObjectNumber",
        "Metadata_Well",
        "Nuclei_AreaShape_Area",
        "Nuclei_Location_Center_X",
        "Nuclei_Location_Center_Y",
        "Nuclei_Intensity_MeanIntensity_OCT4",
        "Nuclei_Intensity_IntegratedIntensity_Hoechst",
    ] {
        assert!(nuclei.schema().index_of(col).is_ok(), "Nuclei lacks {col}");
    }
    assert_eq!(nuclei.num_rows() as u64, found);
    let image = table(&out.join("Image.parquet"));
    assert_eq!(image.num_rows(), 96);
    assert_eq!(column_u32(&image, "BitDepth_Hoechst").unwrap().value(0), 16);
    let errors = table(&out.join("Errors.parquet"));
    assert_eq!(errors.num_rows(), 0);

    // The manifest hashes every input and output.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let inputs = m["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 96 * 2 + 1, "96 fields x 2 channels + layout");
    let first = &inputs[0];
    let bytes = std::fs::read(first["path"].as_str().unwrap()).unwrap();
    assert_eq!(first["bytes"].as_u64().unwrap(), bytes.len() as u64);
    let outputs = m["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    for t in [
        "Nuclei.parquet",
        "Image.parquet",
        "Errors.parquet",
        "Wells.parquet",
    ] {
        assert!(names.contains(&t), "manifest lists {t}: {names:?}");
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json" && !n.starts_with('.'))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every file in OUT is in the manifest");
    for o in outputs {
        let path = out.join(o["path"].as_str().unwrap());
        assert_eq!(
            ipscope_table::sha256_file(&path).unwrap(),
            o["sha256"].as_str().unwrap()
        );
    }
    assert!(m["parameters"]["nuclei"]["min_diameter"].is_number());
    // Plate QC of the controls is part of the provenance: OCT4 separates them well.
    let oct4 = m["plate_qc"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["readout"] == "Median_Nuclei_Intensity_MeanIntensity_OCT4")
        .expect("plate QC for the OCT4 readout");
    assert!(oct4["z_prime"].as_f64().unwrap() > 0.5, "{oct4}");
}

#[test]
fn shards_merged_equal_one_run_and_threads_do_not_change_bytes() {
    let plate = &demo_plate();
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let o = run_demo(plate, &whole, &["--threads", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut parts = Vec::new();
    for i in 1..=3 {
        let part = tmp.path().join(format!("part{i}"));
        let shard = format!("{i}/3");
        let o = run_demo(plate, &part, &["--shard", &shard, "--threads", "1"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        parts.push(part);
    }
    let part_rows: usize = parts
        .iter()
        .map(|d| table(&d.join("Image.parquet")).num_rows())
        .sum();
    assert_eq!(part_rows, 96);
    let merged = tmp.path().join("merged");
    // Shards given out of order on purpose.
    let o = ipscope(&[
        "merge",
        p(&parts[2]),
        p(&parts[0]),
        p(&parts[1]),
        "-o",
        p(&merged),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for t in ["Image", "Nuclei", "Wells", "Errors", "Curves", "Qc"] {
        let a = table(&whole.join(format!("{t}.parquet")));
        let b = table(&merged.join(format!("{t}.parquet")));
        assert_eq!(a.num_rows(), b.num_rows(), "{t} rows");
        assert_eq!(a, b, "{t} differs between merged shards and one run");
    }
    // A merge with a shard missing is refused.
    let o = ipscope(&[
        "merge",
        p(&parts[0]),
        p(&parts[1]),
        "-o",
        p(&tmp.path().join("bad")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing 3/3"), "{}", stderr(&o));

    // 1 thread vs 2 threads: byte-identical tables.
    let one = tmp.path().join("one");
    let o = run_demo(plate, &one, &["--threads", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for t in ["Image", "Nuclei", "Wells", "Curves", "Qc"] {
        let a = std::fs::read(whole.join(format!("{t}.parquet"))).unwrap();
        let b = std::fs::read(one.join(format!("{t}.parquet"))).unwrap();
        assert!(a == b, "{t}.parquet differs between 1 and 2 threads");
    }
}

/// Copies the first `wells` wells' files of the demo plate into a new plate directory.
fn copy_plate(dst: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dst).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(demo_plate())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.contains("_A") || n.contains("_B")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let to = dst.join(f.file_name().unwrap());
            std::fs::copy(f, &to).unwrap();
            to
        })
        .collect()
}

fn tiff_header_claiming(width: u32, height: u32) -> Vec<u8> {
    // Little-endian TIFF, one IFD with width, height, 16 bits, no compression, one strip.
    let mut b = vec![b'I', b'I', 42, 0, 8, 0, 0, 0];
    let entries: [(u16, u16, u32, u32); 7] = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 16),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 200),
        (279, 4, 1, 4),
    ];
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, typ, count, value) in entries {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&typ.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&value.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b.resize(204, 0);
    b
}

#[test]
fn bad_files_fail_only_their_field() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    let files = copy_plate(&plate);
    let find = |name: &str| {
        files
            .iter()
            .find(|f| f.file_name().unwrap().to_str().unwrap().contains(name))
            .unwrap()
            .clone()
    };
    // zero-byte, truncated, not an image, absurd header, wrong size between channels
    std::fs::write(find("_A01_s1_w1"), b"").unwrap();
    let t = find("_A02_s1_w1");
    let bytes = std::fs::read(&t).unwrap();
    std::fs::write(&t, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(find("_A03_s1_w2"), b"this is a text file, not a TIFF\n").unwrap();
    std::fs::write(find("_A04_s1_w1"), tiff_header_claiming(200_000, 200_000)).unwrap();
    let small = ipscope_image::Image::new(64, 64, 100u16);
    ipscope_io::write_tiff(&find("_A05_s1_w2"), small.view()).unwrap();

    let out = tmp.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=OCT4",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let errors = table(&out.join("Errors.parquet"));
    let wells = column_str(&errors, "Metadata_Well").unwrap();
    let stage = column_str(&errors, "Stage").unwrap();
    let file = column_str(&errors, "File").unwrap();
    let msg = column_str(&errors, "Message").unwrap();
    let by_well: BTreeMap<&str, (&str, &str, &str)> = (0..errors.num_rows())
        .map(|i| {
            (
                wells.value(i),
                (stage.value(i), file.value(i), msg.value(i)),
            )
        })
        .collect();
    assert_eq!(
        by_well.keys().copied().collect::<Vec<_>>(),
        vec!["A01", "A02", "A03", "A04", "A05"],
        "{by_well:?}"
    );
    for (well, (stage, file, msg)) in &by_well {
        assert!(
            file.contains(&format!("_{well}_s1_w")),
            "{well}: file {file}"
        );
        assert!(matches!(*stage, "decode" | "read"), "{well}: stage {stage}");
        assert!(!msg.is_empty());
    }
    assert!(
        by_well["A04"].2.contains("max-pixels"),
        "{}",
        by_well["A04"].2
    );
    assert!(by_well["A05"].2.contains("64x64"), "{}", by_well["A05"].2);

    let image = table(&out.join("Image.parquet"));
    let status = column_str(&image, "Status").unwrap();
    let counts = column_u64(&image, "Count_Nuclei").unwrap();
    let ok: Vec<usize> = (0..image.num_rows())
        .filter(|&i| status.value(i) == "ok")
        .collect();
    assert_eq!(image.num_rows(), 24);
    assert_eq!(ok.len(), 19);
    assert!(
        ok.iter().all(|&i| counts.value(i) > 0),
        "good fields still measured"
    );
}

#[test]
fn usage_errors_exit_1_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-plate");
    let o = ipscope(&["run", p(&missing), "-o", p(&tmp.path().join("o"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no-such-plate"), "{}", stderr(&o));

    // Existing output is refused without --overwrite, and replaced with it.
    let plate = tmp.path().join("plate");
    copy_plate(&plate);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let args = [
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA",
        "--quiet",
    ];
    let o = ipscope(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    let mut args = args.to_vec();
    args.push("--overwrite");
    let o = ipscope(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("Nuclei.parquet").exists() && out.join("keep.txt").exists());

    // Unknown channel names the channels found.
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&tmp.path().join("o2")),
        "--channel",
        "w7=DNA",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("w1, w2"), "{}", stderr(&o));
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&tmp.path().join("o3")),
        "--shard",
        "4/3",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn bad_layout_rows_fail_their_wells_only() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    copy_plate(&plate);
    let layout = tmp.path().join("layout.csv");
    std::fs::write(
        &layout,
        "Metadata_Well,Metadata_Compound,Metadata_Role\nA01,DMSO,negative\nA02,X,sometimes\nB01,Y,treated\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--layout",
        p(&layout),
        "--channel",
        "w1=DNA",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let errors = table(&out.join("Errors.parquet"));
    assert_eq!(errors.num_rows(), 1);
    assert_eq!(
        column_str(&errors, "Metadata_Well").unwrap().value(0),
        "A02"
    );
    assert_eq!(column_str(&errors, "Stage").unwrap().value(0), "layout");
    let msg = column_str(&errors, "Message").unwrap().value(0);
    assert!(msg.contains("line 3") && msg.contains("sometimes"), "{msg}");
    let image = table(&out.join("Image.parquet"));
    let compound = column_str(&image, "Metadata_Compound").unwrap();
    let well = column_str(&image, "Metadata_Well").unwrap();
    for i in 0..image.num_rows() {
        match well.value(i) {
            "A01" => assert_eq!(compound.value(i), "DMSO"),
            "B01" => assert_eq!(compound.value(i), "Y"),
            _ => assert!(compound.is_null(i)),
        }
    }
}

#[test]
fn scan_describes_the_plate_without_processing() {
    let plate = &demo_plate();
    let o = ipscope(&["scan", p(plate)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("96 wells x 1 sites = 96 fields, 2 channels"),
        "{text}"
    );
    assert!(text.contains("ImageXpress"), "{text}");
    assert!(text.contains("u16 (16 bits)"), "{text}");
    let o = ipscope(&["scan", p(plate), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fields"], 96);
    assert_eq!(v["channels"][1]["id"], "w2");
    assert_eq!(v["channels"][1]["width"], 256);
}

#[test]
fn json_events_and_arrow_format() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    copy_plate(&plate);
    let out = tmp.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA",
        "--format",
        "arrow",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines.iter().filter(|l| l["event"] == "field").count(), 24);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["fields"], 24);
    let nuclei = table(&out.join("Nuclei.arrow"));
    assert_eq!(nuclei.num_rows() as u64, last["nuclei"].as_u64().unwrap());
    assert!(std::fs::read(out.join("Nuclei.arrow"))
        .unwrap()
        .starts_with(b"ARROW1"));
}

/// The same pixels under every vendor naming scheme and file format give the same numbers.
#[test]
fn vendor_names_and_formats_give_identical_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = demo_plate();
    let opts = ipscope_io::ReadOptions::default();
    let wells = [("A01", 1u32, 1u32), ("A02", 1, 2), ("B03", 2, 3)];
    type Namer<'a> = &'a dyn Fn(&str, u32, u32, u32) -> String;
    let layouts: [(&str, Namer, Option<&str>); 4] = [
        (
            "imagexpress",
            &|w, _, _, c| format!("P1_{w}_s1_w{c}.tif"),
            None,
        ),
        (
            "operetta",
            &|_, r, col, c| format!("r{r:02}c{col:02}f01p01-ch{c}sk1fk1fl1.png"),
            None,
        ),
        (
            "cellvoyager",
            &|w, _, _, c| format!("P1_{w}_T0001F001L01A01Z01C{c:02}.tif"),
            None,
        ),
        (
            "custom",
            &|w, _, _, c| format!("well-{w}_site-1_chan-{c}.tif"),
            Some(r"well-(?P<Well>[A-P]\d\d)_site-(?P<Site>\d+)_chan-(?P<Channel>\d)\.tif"),
        ),
    ];
    let mut counts: Vec<Vec<u64>> = Vec::new();
    for (name, file_name, pattern) in layouts {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (well, r, c) in wells {
            for ch in [1u32, 2] {
                let img = ipscope_io::read_image(
                    &src.join(format!("DEMO01_{well}_s1_w{ch}.tif")),
                    0,
                    &opts,
                )
                .unwrap();
                let ipscope_image::DynImage::U16(img) = img else {
                    panic!("demo images are u16")
                };
                let to = dir.join(file_name(well, r, c, ch));
                if to.extension().is_some_and(|e| e == "png") {
                    ipscope_io::write_png(&to, img.view()).unwrap();
                } else {
                    ipscope_io::write_tiff(&to, img.view()).unwrap();
                }
            }
        }
        let out = tmp.path().join(format!("{name}-out"));
        let mut args = vec![
            "run",
            p(&dir),
            "-o",
            p(&out),
            "--channel",
            "1=DNA",
            "--channel",
            "2=OCT4",
            "--quiet",
        ];
        if let Some(pat) = pattern {
            args.extend(["--pattern", pat]);
        }
        let o = ipscope(&args);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let image = table(&out.join("Image.parquet"));
        assert_eq!(
            (0..image.num_rows())
                .map(|i| column_str(&image, "Metadata_Well")
                    .unwrap()
                    .value(i)
                    .to_string())
                .collect::<Vec<_>>(),
            vec!["A01", "A02", "B03"],
            "{name}"
        );
        let c = column_u64(&image, "Count_Nuclei").unwrap();
        counts.push((0..c.len()).map(|i| c.value(i)).collect());
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        let scheme = m["naming_scheme"].as_str().unwrap().to_lowercase();
        assert!(scheme.contains(&name[..4]), "{name}: scheme {scheme}");
    }
    assert!(counts[0].iter().all(|&c| c > 50), "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}

#[test]
fn verify_detects_changed_inputs_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    let files = copy_plate(&plate);
    let out = tmp.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let verify = |json: bool| {
        let mut args = vec!["verify", p(&out)];
        if json {
            args.push("--json");
        }
        ipscope(&args)
    };
    assert_eq!(verify(false).status.code(), Some(0));

    // A deleted input is reported but allowed; a changed input is exit 4.
    std::fs::remove_file(&files[0]).unwrap();
    let o = verify(true);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let missing: Vec<&serde_json::Value> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["state"] == "missing")
        .collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["path"], p(&files[0]));
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&files[1], bytes).unwrap();
    assert_eq!(verify(false).status.code(), Some(4));

    // A changed or added output is exit 3, and says which file.
    std::fs::write(out.join("notes.txt"), "added").unwrap();
    let o = verify(false);
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("added") && text.contains("notes.txt"),
        "{text}"
    );
    let o = ipscope(&["verify", p(&tmp.path().join("nothing"))]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_live_lock_refuses_a_second_run_and_a_stale_one_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    copy_plate(&plate);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // This test process is alive: its lock must be respected.
    let lock = out.join(".ipscope.lock");
    std::fs::write(&lock, format!("pid={}\nhost={host}\n", std::process::id())).unwrap();
    let args = [
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA",
        "--quiet",
    ];
    let o = ipscope(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&o)
    );
    assert!(lock.exists(), "someone else's lock is left alone");

    // A process that has exited leaves a stale lock, which is taken over (Linux: /proc).
    if std::path::Path::new("/proc/self").exists() {
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(&lock, format!("pid={dead}\nhost={host}\n")).unwrap();
        let o = ipscope(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!lock.exists(), "the lock is released at the end");
        assert!(out.join("Nuclei.parquet").exists());
    }
}

#[test]
fn features_flag_selects_measurement_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    copy_plate(&plate);
    let out = tmp.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA",
        "--features",
        "AreaShape",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let nuclei = table(&out.join("Nuclei.parquet"));
    let names: Vec<String> = nuclei
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(
        names.iter().any(|n| n == "Nuclei_AreaShape_Solidity"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("_Intensity_")),
        "{names:?}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m["parameters"]["measure"]["features"],
        serde_json::json!(["AreaShape"])
    );
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&tmp.path().join("o2")),
        "--features",
        "Children",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not implemented"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn symlink_loops_in_a_plate_are_walked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("plate");
    copy_plate(&plate);
    std::os::unix::fs::symlink(&plate, plate.join("loop")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), plate.join("dangling.tif")).unwrap();
    let o = ipscope(&["scan", p(&plate), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fields"], 24);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
}

/// A reader that goes away (`ipscope config --default | head -1`) ends ipscope quietly, the
/// way it ends `cat`: no panic message, no exit code 101.
#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader); // every write to `writer` now fails with EPIPE
    let out = bin()
        .args(["config", "--default"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run ipscope");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    // 13 = SIGPIPE on Linux and the BSDs.
    assert_eq!(out.status.signal(), Some(13), "{:?} {err}", out.status);
}
