//! `run` with image QC: the per-field quality columns, flagged fields and their exclusion from
//! the Wells statistics, on the small demo plate.

mod common;

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
    let excluded = u64s(&wells_t, "Count_ExcludedFields");
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
    for r in 0..wells_t.num_rows() {
        let well = &strs(&wells_t, "Metadata_Well")[r];
        if well == "A03" || well == "B07" {
            continue;
        }
        assert_eq!(excluded[r], 0);
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
    assert!(u64s(&kept, "Count_ExcludedFields").iter().all(|&n| n == 0));
    let r = well_row(&kept, "A03");
    assert_eq!(
        u64s(&kept, "Count_Nuclei")[r],
        clean_nuclei[well_row(&clean_wells, "A03")]
    );
    assert!(bools(&table(&kept_out.join("Image.parquet")), "Metadata_QCFlag")[sat_row]);
}
