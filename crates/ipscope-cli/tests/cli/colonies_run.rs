//! `run` with image QC: the per-field quality columns, flagged fields and their exclusion from
//! the Wells statistics, on the small demo plate.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use ipscope_image::Image;
use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::{Array, RecordBatch};

/// The plate file of `well`'s channel `ch` (one site).
fn channel_file(plate: &Path, well: &str, ch: &str) -> PathBuf {
    std::fs::read_dir(plate)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.contains(&format!("_{well}_")) && n.contains(ch)
        })
        .unwrap_or_else(|| panic!("no {ch} file for {well} in {}", plate.display()))
}

fn read_u16(path: &Path) -> Image<u16> {
    let bytes = std::fs::read(path).unwrap();
    let img = ipscope_io::decode(
        &bytes,
        path,
        0,
        &ipscope_io::ReadOptions {
            max_pixels: 1 << 30,
        },
    )
    .unwrap();
    img.to_f32().map(|v| v as u16)
}

fn bools(b: &RecordBatch, name: &str) -> Vec<bool> {
    let a = b.column_by_name(name).unwrap().as_boolean();
    (0..a.len()).map(|i| a.value(i)).collect()
}

fn run_plate(plate: &Path, out: &Path, extra: &[&str]) {
    let mut args = small_run_args(plate, out);
    args.extend_from_slice(extra);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Row of `well` in a Wells table.
fn well_row(wells: &RecordBatch, well: &str) -> usize {
    strs(wells, "Metadata_Well")
        .iter()
        .position(|w| w == well)
        .unwrap_or_else(|| panic!("no Wells row for {well}"))
}

#[test]
fn image_qc_flags_and_excludes_saturated_and_blank_fields() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let clean_out = dir.path().join("clean");
    run_plate(&plate, &clean_out, &[]);

    // The same plate with A03's OCT4 image a quarter saturated (nuclei found as before) and
    // B07's nuclear image blank.
    let bad = dir.path().join("bad_plate");
    std::fs::create_dir_all(&bad).unwrap();
    for e in std::fs::read_dir(&plate).unwrap() {
        let path = e.unwrap().path();
        std::fs::copy(&path, bad.join(path.file_name().unwrap())).unwrap();
    }
    let sat_path = channel_file(&bad, "A03", "w2");
    let orig = read_u16(&sat_path);
    let (w, h) = (orig.width(), orig.height());
    let saturated = Image::from_fn(w, h, |r, c| {
        if r < h / 2 && c < w / 2 {
            u16::MAX
        } else {
            orig.get(r, c)
        }
    });
    ipscope_io::write_tiff(&sat_path, saturated.view()).unwrap();
    let blank_path = channel_file(&bad, "B07", "w1");
    ipscope_io::write_tiff(&blank_path, Image::new(w, h, 0u16).view()).unwrap();
    let out = dir.path().join("bad");
    run_plate(&bad, &out, &[]);

    // Image: quality columns per channel, the two fields flagged with their reasons.
    let clean_image = table(&clean_out.join("Image.parquet"));
    let image = table(&out.join("Image.parquet"));
    for ch in ["DNA", "OCT4"] {
        for m in [
            "FocusScore",
            "PowerLogLogSlope",
            "PercentMaximal",
            "ContentFraction",
            "DebrisFraction",
        ] {
            let name = format!("ImageQuality_{m}_{ch}");
            assert!(image.column_by_name(&name).is_some(), "no {name}");
        }
    }
    assert!(
        bools(&clean_image, "Metadata_QCFlag").iter().all(|f| !f),
        "the unmodified demo plate has a flagged field: {:?}",
        strs(&clean_image, "Metadata_QCReason")
    );
    let wells = strs(&image, "Metadata_Well");
    let flags = bools(&image, "Metadata_QCFlag");
    let reasons = strs(&image, "Metadata_QCReason");
    for (i, well) in wells.iter().enumerate() {
        match well.as_str() {
            "A03" => assert!(flags[i] && reasons[i] == "saturated", "{}", reasons[i]),
            "B07" => assert!(flags[i] && reasons[i] == "low_content", "{}", reasons[i]),
            _ => assert!(!flags[i] && reasons[i].is_empty(), "{well}: {}", reasons[i]),
        }
    }
    let sat_row = wells.iter().position(|w| w == "A03").unwrap();
    let pct = f64s(&image, "ImageQuality_PercentMaximal_OCT4")[sat_row];
    assert!((pct - 25.0).abs() < 0.5, "A03 percent maximal {pct}");
    assert_eq!(
        f64s(&image, "ImageQuality_PercentMaximal_DNA")[sat_row],
        0.0
    );
    assert_eq!(
        u64s(&image, "Count_Nuclei")[sat_row],
        u64s(&clean_image, "Count_Nuclei")[sat_row]
    );

    // Wells: the flagged fields are excluded and counted; every other well is unchanged.
    let clean_wells = table(&clean_out.join("Wells.parquet"));
    let wells_t = table(&out.join("Wells.parquet"));
    assert_eq!(wells_t.num_rows(), clean_wells.num_rows());
    let excluded = u64s(&wells_t, "Count_FieldsExcluded");
    let why = strs(&wells_t, "Metadata_ExcludedReasons");
    let nuclei = u64s(&wells_t, "Count_Nuclei");
    let clean_nuclei = u64s(&clean_wells, "Count_Nuclei");
    for (well, reason) in [("A03", "saturated:1"), ("B07", "low_content:1")] {
        let r = well_row(&wells_t, well);
        assert_eq!(excluded[r], 1, "{well}");
        assert_eq!(why[r], reason);
        assert_eq!(nuclei[r], 0, "{well}: its only field is left out");
        assert!(clean_nuclei[well_row(&clean_wells, well)] > 0);
        assert_eq!(
            u64s(&wells_t, "Count_FieldsFailed")[r],
            0,
            "excluded is not failed"
        );
        assert!(wells_t
            .column_by_name("Median_Nuclei_AreaShape_Area")
            .unwrap()
            .is_null(r));
    }
    let well_names = strs(&wells_t, "Metadata_Well");
    for (r, (well, n_excluded)) in well_names.iter().zip(&excluded).enumerate() {
        if well == "A03" || well == "B07" {
            continue;
        }
        assert_eq!(*n_excluded, 0);
        assert_eq!(
            wells_t.slice(r, 1),
            clean_wells.slice(well_row(&clean_wells, well), 1),
            "{well} changed"
        );
    }

    // `[qc] exclude_flagged = false`: flagged, but counted.
    let cfg = dir.path().join("keep.toml");
    std::fs::write(&cfg, "[qc]\nexclude_flagged = false\n").unwrap();
    let kept_out = dir.path().join("kept");
    run_plate(&bad, &kept_out, &["--config", cfg.to_str().unwrap()]);
    let kept = table(&kept_out.join("Wells.parquet"));
    assert!(u64s(&kept, "Count_FieldsExcluded").iter().all(|&n| n == 0));
    let r = well_row(&kept, "A03");
    assert_eq!(
        u64s(&kept, "Count_Nuclei")[r],
        clean_nuclei[well_row(&clean_wells, "A03")]
    );
    assert!(bools(&table(&kept_out.join("Image.parquet")), "Metadata_QCFlag")[sat_row]);
}

fn u32_col(b: &RecordBatch, name: &str) -> Vec<u32> {
    u32s(b, name)
}

/// Colony tables of a run are self-consistent: Parent_Colonies points at the field's colonies,
/// Colonies_Children_Nuclei_Count counts them, and the Image and Wells counts add up.
fn check_colony_tables(out: &Path) {
    let colonies = table(&out.join("Colonies.parquet"));
    let nuclei = table(&out.join("Nuclei.parquet"));
    let image = table(&out.join("Image.parquet"));
    let wells = table(&out.join("Wells.parquet"));
    assert!(colonies.num_rows() > 0, "no colonies found");
    let (ci, co) = (
        u32_col(&colonies, "ImageNumber"),
        u32_col(&colonies, "ObjectNumber"),
    );
    let children = u64s(&colonies, "Colonies_Children_Nuclei_Count");
    let mut counted: std::collections::BTreeMap<(u32, u32), u64> = Default::default();
    let (ni, np) = (
        u32_col(&nuclei, "ImageNumber"),
        u32_col(&nuclei, "Parent_Colonies"),
    );
    for (i, p) in ni.iter().zip(&np) {
        if *p > 0 {
            *counted.entry((*i, *p)).or_default() += 1;
        }
    }
    for k in counted.keys() {
        assert!(
            ci.iter().zip(&co).any(|(a, b)| (*a, *b) == *k),
            "Parent_Colonies {k:?} names no colony"
        );
    }
    for r in 0..colonies.num_rows() {
        assert_eq!(
            children[r],
            counted.get(&(ci[r], co[r])).copied().unwrap_or(0),
            "children of colony {} of field {}",
            co[r],
            ci[r]
        );
    }
    let grades = strs(&colonies, "Classify_Grade");
    assert!(grades
        .iter()
        .all(|g| ["undifferentiated", "differentiating", "too_small"].contains(&g.as_str())));
    // Image counts: one per colony row, split by grade.
    let numbers = u32_col(&image, "ImageNumber");
    let count = u64s(&image, "Count_Colonies");
    for (row, n) in numbers.iter().enumerate() {
        let rows: Vec<usize> = (0..ci.len()).filter(|&r| ci[r] == *n).collect();
        assert_eq!(count[row], rows.len() as u64, "field {n}");
        for (col, g) in [
            ("Count_Colonies_Undifferentiated", "undifferentiated"),
            ("Count_Colonies_Differentiating", "differentiating"),
            ("Count_Colonies_TooSmall", "too_small"),
        ] {
            let k = rows.iter().filter(|&&r| grades[r] == g).count() as u64;
            assert_eq!(u64s(&image, col)[row], k, "{col} of field {n}");
        }
    }
    // Wells: sums and the undifferentiated fraction.
    let (u, d) = (
        u64s(&wells, "Count_Colonies_Undifferentiated"),
        u64s(&wells, "Count_Colonies_Differentiating"),
    );
    let frac = wells
        .column_by_name("Fraction_Colonies_Undifferentiated")
        .unwrap()
        .as_primitive::<ipscope_table::arrow_array::types::Float64Type>()
        .clone();
    for r in 0..wells.num_rows() {
        if u[r] + d[r] == 0 {
            assert!(frac.is_null(r));
        } else {
            assert_eq!(frac.value(r), u[r] as f64 / (u[r] + d[r]) as f64);
        }
    }
    assert_eq!(
        u64s(&wells, "Count_Colonies").iter().sum::<u64>(),
        colonies.num_rows() as u64
    );
    assert!(wells
        .column_by_name("Median_Colonies_AreaShape_Area")
        .is_some());
}

fn same_tables_with_colonies(a: &Path, b: &Path) {
    assert_same_tables(a, b);
    assert_eq!(
        table(&a.join("Colonies.parquet")),
        table(&b.join("Colonies.parquet")),
        "Colonies differs"
    );
}

#[test]
fn colonies_in_run_match_across_threads_shards_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let one = dir.path().join("one");
    run_plate(&plate, &one, &["--colonies", "nuclei"]);
    check_colony_tables(&one);

    // Two threads: byte-identical tables.
    let two = dir.path().join("two");
    let mut args = small_run_args(&plate, &two);
    args.retain(|a| *a != "1");
    args.retain(|a| *a != "--threads");
    args.extend(["--threads", "2", "--colonies", "nuclei"]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    same_tables_with_colonies(&one, &two);

    // Two shards merged.
    let mut shard_dirs = Vec::new();
    for s in ["1/2", "2/2"] {
        let d = dir.path().join(format!("shard{}", &s[..1]));
        run_plate(&plate, &d, &["--colonies", "nuclei", "--shard", s]);
        shard_dirs.push(d);
    }
    let merged = dir.path().join("merged");
    let o = ipscope(&[
        "merge",
        p(&shard_dirs[0]),
        p(&shard_dirs[1]),
        "-o",
        p(&merged),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    same_tables_with_colonies(&one, &merged);

    // Resume: every field saved, the tables fail to write (file-size limit); the resumed run
    // assembles them from the saved fields, colonies included.
    let out = dir.path().join("resumed");
    let mut args = small_run_args(&plate, &out);
    args.extend(["--colonies", "nuclei"]);
    let cmd = format!(
        "ulimit -f 64; exec \"$0\" {}",
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &cmd, env!("CARGO_BIN_EXE_ipscope")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!out.join("manifest.json").exists());
    args.push("--resume");
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    same_tables_with_colonies(&one, &out);
}

/// Nuclei on a square grid, 4 px apart (closer than the default link distance of 8): the
/// whole field is one colony.
fn grid_of_nuclei(w: usize, h: usize) -> Image<u16> {
    Image::from_fn(w, h, |r, c| {
        let (dr, dc) = ((r % 16) as f64 - 7.5, (c % 16) as f64 - 7.5);
        if dr * dr + dc * dc <= 36.0 {
            3000
        } else {
            100
        }
    })
}

#[test]
fn empty_field_has_no_colonies_and_a_full_field_one() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let blank = channel_file(&plate, "B07", "w1");
    let orig = read_u16(&blank);
    let (w, h) = (orig.width(), orig.height());
    ipscope_io::write_tiff(&blank, Image::new(w, h, 0u16).view()).unwrap();
    let full = channel_file(&plate, "A05", "w1");
    ipscope_io::write_tiff(&full, grid_of_nuclei(w, h).view()).unwrap();
    let out = dir.path().join("out");
    run_plate(&plate, &out, &["--colonies", "nuclei"]);
    let image = table(&out.join("Image.parquet"));
    assert!(strs(&image, "Status").iter().all(|s| s == "ok"));
    let wells = strs(&image, "Metadata_Well");
    let numbers = u32s(&image, "ImageNumber");
    let at = |well: &str| numbers[wells.iter().position(|x| x == well).unwrap()];
    let colonies = table(&out.join("Colonies.parquet"));
    let ci = u32s(&colonies, "ImageNumber");
    assert_eq!(ci.iter().filter(|&&n| n == at("B07")).count(), 0);
    let rows: Vec<usize> = (0..ci.len()).filter(|&r| ci[r] == at("A05")).collect();
    assert_eq!(rows.len(), 1, "the grid field is one colony");
    let nuclei = table(&out.join("Nuclei.parquet"));
    let (ni, np) = (
        u32s(&nuclei, "ImageNumber"),
        u32s(&nuclei, "Parent_Colonies"),
    );
    let in_field: Vec<u32> = (0..ni.len())
        .filter(|&r| ni[r] == at("A05"))
        .map(|r| np[r])
        .collect();
    assert!(in_field.len() > 100, "{} nuclei", in_field.len());
    assert!(
        in_field.iter().all(|&p| p == 1),
        "every nucleus in colony 1"
    );
    let area = f64s(&colonies, "Colonies_AreaShape_Area")[rows[0]];
    assert!(area > 0.8 * (w * h) as f64, "area {area} of {}", w * h);
}

#[test]
fn brightfield_colonies_without_a_transmitted_channel_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let out = dir.path().join("out");
    let mut args = small_run_args(&plate, &out);
    args.extend(["--colonies", "brightfield"]);
    let o = ipscope(&args);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("transmitted-light channel") && err.contains("Brightfield"),
        "{err}"
    );
    assert!(!out.join("Nuclei.parquet").exists() && !out.join("Image.parquet").exists());
    // `both` needs the transmitted light as well.
    let mut args = small_run_args(&plate, &out);
    args.extend(["--colonies", "both"]);
    let o = ipscope(&args);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("transmitted-light channel"), "{err}");
    assert!(!out.join("Nuclei.parquet").exists() && !out.join("Image.parquet").exists());
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&dir.path().join("x")),
        "--colonies",
        "all",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("expected nuclei, brightfield or both"),
        "{}",
        stderr(&o)
    );
}

/// Demo truth: well → true OCT4-positive percent of the field's nuclei.
fn truth_percent(demo: &Path) -> std::collections::BTreeMap<String, f64> {
    let mut r = csv::Reader::from_path(demo.join("truth").join("wells.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let (iw, ip) = (
        h.iter().position(|c| c == "Metadata_Well").unwrap(),
        h.iter().position(|c| c == "PositiveFraction_OCT4").unwrap(),
    );
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| !x[ip].is_empty())
        .map(|x| (x[iw].to_string(), 100.0 * x[ip].parse::<f64>().unwrap()))
        .collect()
}

fn bools_opt(b: &RecordBatch, name: &str) -> Vec<bool> {
    bools(b, name)
}

#[test]
fn oct4_percent_positive_matches_the_demo_truth() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let demo = dir.path().join("demo");
    let layout = demo.join("layout.csv");
    let cfg = dir.path().join("markers.toml");
    std::fs::write(
        &cfg,
        "[[acceptance]]\nmarker = \"OCT4\"\nop = \">=\"\npercent = 50\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    run_plate(&plate, &out, &["--layout", p(&layout), "--config", p(&cfg)]);
    let wells = table(&out.join("Wells.parquet"));
    let truth = truth_percent(&demo);
    let names = strs(&wells, "Metadata_Well");
    let pct = f64s(&wells, "Percent_Positive_OCT4");
    let mut within = 0;
    let mut worst: f64 = 0.0;
    for (w, p) in names.iter().zip(&pct) {
        let t = truth[w];
        let d = (p - t).abs();
        worst = worst.max(d);
        if d <= 3.0 {
            within += 1;
        }
    }
    let share = within as f64 / names.len() as f64;
    eprintln!(
        "OCT4 % positive (default gate, Otsu of log): {within}/{} wells within 3 points of truth ({:.0}%), worst {worst:.1} points",
        names.len(),
        100.0 * share
    );
    assert!(share >= 0.9, "{within}/{} within 3 points", names.len());
    for col in [
        "Threshold_Positive_OCT4",
        "Heterogeneity_CV_OCT4",
        "Heterogeneity_Entropy_OCT4",
        "Heterogeneity_Gini_OCT4",
    ] {
        assert!(
            f64s(&wells, col).iter().all(|v| v.is_finite()),
            "{col} has no value"
        );
    }
    let accept = bools_opt(&wells, "Metadata_Acceptance_OCT4");
    for (a, p) in accept.iter().zip(&pct) {
        assert_eq!(*a, *p >= 50.0);
    }
    assert!(accept.iter().any(|a| *a) && accept.iter().any(|a| !*a));

    // Gate at the 99th percentile of the negative-control (DMSO) wells: those wells are
    // about 1% positive, and the gate is the same for the whole plate.
    let cfg2 = dir.path().join("controls.toml");
    std::fs::write(
        &cfg2,
        "[markers]\ngate = { method = \"controls\", percentile = 99 }\n",
    )
    .unwrap();
    let out2 = dir.path().join("out2");
    run_plate(
        &plate,
        &out2,
        &["--layout", p(&layout), "--config", p(&cfg2)],
    );
    let w2 = table(&out2.join("Wells.parquet"));
    let roles = strs(&w2, "Metadata_Role");
    let pct2 = f64s(&w2, "Percent_Positive_OCT4");
    let thr = f64s(&w2, "Threshold_Positive_OCT4");
    assert!(thr.iter().all(|t| *t == thr[0]));
    let neg: Vec<f64> = (0..roles.len())
        .filter(|&i| roles[i] == "negative")
        .map(|i| pct2[i])
        .collect();
    assert!(!neg.is_empty());
    let mean = neg.iter().sum::<f64>() / neg.len() as f64;
    assert!(mean > 0.0 && mean < 3.0, "negative wells {neg:?}");
}

#[test]
fn acceptance_on_a_missing_marker_is_a_named_error_before_any_field() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[acceptance]]\nmarker = \"cTnT\"\nop = \">=\"\npercent = 80\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut args = small_run_args(&plate, &out);
    args.extend(["--config", p(&cfg)]);
    let o = ipscope(&args);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("cTnT") && err.contains("not a marker channel") && err.contains("OCT4"),
        "{err}"
    );
    assert!(!out.join("Image.parquet").exists() && !out.join("Nuclei.parquet").exists());
}
