//! `ipscope measure` and `ipscope schema`, and parity of the measurements with scikit-image
//! `regionprops`, cp-measure and centrosome on real label images.
//!
//! Reference values: `testdata/reference/measure/regionprops.json`, written by
//! `testdata/reference/measure/make_measure_refs.py` (versions in that folder's README). The
//! images themselves are read from `$IPSCOPE_DATA` (default `../shared/data`); the parity test
//! prints a message and passes when they are absent.
//!
//! Tolerances: 1e-6 relative (absolute below 1) for every regionprops, intensity and edge
//! feature, all objects; Feret diameters within 1e-6 on >= 99.5 % of objects (centrosome's
//! antipodal-pair walk can miss the minimal caliper on some hulls).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

use ipscope_table::arrow_array::RecordBatch;
use ipscope_table::{column_f64, column_u32, read_table};
use serde_json::Value;

fn reference() -> Value {
    let path = repo().join("testdata/reference/measure/regionprops.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn read_batch(path: &Path) -> RecordBatch {
    let (schema, batches) = read_table(path).expect("read table");
    ipscope_table::concat(&schema, &batches).expect("concat")
}

/// Reference column name → ipscope column (with `Nuclei_` prefix and `_DNA` channel).
fn column_for(feature: &str) -> Option<String> {
    let shape = [
        "Area",
        "Perimeter",
        "ConvexArea",
        "Solidity",
        "Extent",
        "Eccentricity",
        "MajorAxisLength",
        "MinorAxisLength",
        "Orientation",
        "EulerNumber",
        "EquivalentDiameter",
        "BoundingBoxArea",
        "Center_X",
        "Center_Y",
        "FormFactor",
        "Compactness",
        "MaxFeretDiameter",
        "MinFeretDiameter",
        "BoundingBoxMinimum_X",
        "BoundingBoxMinimum_Y",
        "BoundingBoxMaximum_X",
        "BoundingBoxMaximum_Y",
    ];
    let location = [
        "CenterMassIntensity_X",
        "CenterMassIntensity_Y",
        "MaxIntensity_X",
        "MaxIntensity_Y",
    ];
    if feature == "label" {
        None
    } else if shape.contains(&feature) {
        Some(format!("Nuclei_AreaShape_{feature}"))
    } else if location.contains(&feature) {
        Some(format!("Nuclei_Location_{feature}_DNA"))
    } else {
        Some(format!("Nuclei_Intensity_{feature}_DNA"))
    }
}

fn values(batch: &RecordBatch, name: &str) -> Vec<f64> {
    if let Ok(a) = column_f64(batch, name) {
        return a.values().to_vec();
    }
    let a = column_u32(batch, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    a.values().iter().map(|&v| f64::from(v)).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn parity_with_regionprops_and_cp_measure() {
    let data = data_dir();
    if !data.join("dsb2018_fluo_subset").is_dir() {
        eprintln!(
            "skipping measurement parity: {} not found (set IPSCOPE_DATA)",
            data.display()
        );
        return;
    }
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let mut objects = 0usize;
    // feature -> (objects compared, objects off, max relative deviation)
    let mut stats: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
    for (k, field) in r["fields"].as_array().unwrap().iter().enumerate() {
        let image = data.join(field["image"].as_str().unwrap());
        let labels = data.join(field["labels"].as_str().unwrap());
        let out = tmp.path().join(format!("f{k}.parquet"));
        let o = ipscope(&[
            "measure",
            p(&image),
            "--labels",
            p(&labels),
            "--name",
            "DNA",
            "-o",
            p(&out),
        ]);
        assert!(
            o.status.success(),
            "measure {}: {}",
            image.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let batch = read_batch(&out);
        let cols = field["columns"].as_object().unwrap();
        let ref_labels: Vec<u32> = cols["label"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ours: Vec<u32> = column_u32(&batch, "ObjectNumber")
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(ours, ref_labels, "{}: object numbers", image.display());
        objects += ours.len();
        for (feature, expect) in cols {
            let Some(name) = column_for(feature) else {
                continue;
            };
            let got = values(&batch, &name);
            let e = stats.entry(feature.clone()).or_default();
            for (i, want) in expect.as_array().unwrap().iter().enumerate() {
                let want = want.as_f64().unwrap_or(f64::NAN);
                let mut have = got[i];
                // ±90° is the same axis.
                if feature == "Orientation" && (have - want).abs() > 179.0 {
                    have = -have;
                }
                e.0 += 1;
                if !close(have, want, 1e-6) {
                    e.1 += 1;
                    if e.1 <= 3 {
                        eprintln!(
                            "{} label {} {feature}: ipscope {have} reference {want}",
                            image.display(),
                            ref_labels[i]
                        );
                    }
                }
                if want.is_finite() && have.is_finite() {
                    e.2 = e.2.max((have - want).abs() / want.abs().max(1.0));
                }
            }
        }
    }
    eprintln!("{objects} objects compared");
    let mut failures = Vec::new();
    for (feature, (n, off, max_dev)) in &stats {
        eprintln!("{feature:<26} n={n:<5} off={off:<3} max_dev={max_dev:.3e}");
        let allowed = if feature.contains("Feret") {
            *n / 200 // 99.5 %
        } else {
            0
        };
        if *off > allowed {
            failures.push(format!("{feature}: {off} of {n} objects off"));
        }
    }
    assert!(objects > 800, "only {objects} objects compared");
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn measure_writes_named_channels_and_selected_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels.png");
    let dna = tmp.path().join("dna.tif");
    let oct4 = tmp.path().join("oct4.tif");
    // Two objects; label 3 is absent and gets no row.
    let lab: Vec<u16> = (0..64)
        .map(|i| match (i / 8, i % 8) {
            (1..=3, 1..=3) => 1,
            (5..=6, 2..=7) => 4,
            _ => 0,
        })
        .collect();
    let px: Vec<u16> = (0..64).map(|i| (i * 1000) as u16).collect();
    ipscope_io::write_png(
        &labels,
        ipscope_image::Image::from_vec(8, 8, lab).unwrap().view(),
    )
    .expect("write labels");
    ipscope_io::write_tiff(
        &dna,
        ipscope_image::Image::from_vec(8, 8, px.clone())
            .unwrap()
            .view(),
    )
    .expect("write dna");
    ipscope_io::write_tiff(
        &oct4,
        ipscope_image::Image::from_vec(8, 8, px).unwrap().view(),
    )
    .expect("write oct4");
    let out = tmp.path().join("cells.parquet");
    let o = ipscope(&[
        "measure",
        p(&dna),
        "--labels",
        p(&labels),
        "--object",
        "Cells",
        "--channel",
        &format!("OCT4={}", p(&oct4)),
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = read_batch(&out);
    assert_eq!(
        column_u32(&b, "ObjectNumber").unwrap().values().to_vec(),
        vec![1, 4]
    );
    assert_eq!(
        column_f64(&b, "Cells_AreaShape_Area")
            .unwrap()
            .values()
            .to_vec(),
        vec![9.0, 12.0]
    );
    let dna_mean = column_f64(&b, "Cells_Intensity_MeanIntensity_dna")
        .unwrap()
        .value(0);
    let oct4_mean = column_f64(&b, "Cells_Intensity_MeanIntensity_OCT4")
        .unwrap()
        .value(0);
    // Pixels (r, c) in 1..=3: values 1000·(8r + c), mean 1000·18, CellProfiler-scaled.
    assert!((dna_mean - 18000.0 / 65535.0).abs() < 1e-12);
    assert_eq!(dna_mean, oct4_mean);

    // --features picks groups; unimplemented and unknown groups are refused with a reason.
    let out2 = tmp.path().join("shape.arrow");
    let o = ipscope(&[
        "measure",
        p(&dna),
        "--labels",
        p(&labels),
        "--features",
        "AreaShape",
        "-o",
        p(&out2),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = read_batch(&out2);
    let schema = b.schema();
    assert!(schema
        .fields()
        .iter()
        .all(|f| !f.name().contains("Intensity")));
    assert!(schema.field_with_name("Nuclei_AreaShape_Perimeter").is_ok());
    let o = ipscope(&[
        "measure",
        p(&dna),
        "--labels",
        p(&labels),
        "--features",
        "neighbors",
        "-o",
        p(&out2),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Objects 1 (rows 1..=3, cols 1..=3, centroid (2, 2)) and 4 (rows 5..=6, cols 2..=7,
    // centroid (5.5, 4.5)) are two rows apart: neighbours within 5 px, centroids √18.5 apart.
    let b = read_batch(&out2);
    assert_eq!(
        column_u32(&b, "Nuclei_Neighbors_NumberOfNeighbors_5")
            .unwrap()
            .values()
            .to_vec(),
        vec![1, 1]
    );
    assert_eq!(
        column_u32(&b, "Nuclei_Neighbors_FirstClosestObjectNumber_5")
            .unwrap()
            .values()
            .to_vec(),
        vec![4, 1]
    );
    let dist = column_f64(&b, "Nuclei_Neighbors_FirstClosestDistance_5").unwrap();
    assert!((dist.value(0) - 18.5f64.sqrt()).abs() < 1e-12);
    assert!(b.schema().field_with_name("Nuclei_AreaShape_Area").is_err());
    let o = ipscope(&[
        "measure",
        p(&dna),
        "--labels",
        p(&labels),
        "--features",
        "Children",
        "-o",
        p(&out2),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not implemented"));

    // Labels of another size are refused.
    let small = tmp.path().join("small.png");
    ipscope_io::write_png(&small, ipscope_image::Image::new(4, 4, 1u16).view()).unwrap();
    let o = ipscope(&["measure", p(&dna), "--labels", p(&small), "-o", p(&out2)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("8x8"));
}

#[test]
fn schema_documents_every_column() {
    let o = ipscope(&["schema", "--channel", "DNA", "--channel", "OCT4", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let names: Vec<&str> = lines.iter().map(|v| v["name"].as_str().unwrap()).collect();
    for want in [
        "Nuclei_AreaShape_Area",
        "Nuclei_AreaShape_Perimeter",
        "Nuclei_Location_Center_X",
        "Nuclei_Intensity_MeanIntensity_OCT4",
        "Nuclei_Intensity_IntegratedIntensity_DNA",
        "Nuclei_Location_CenterMassIntensity_X_DNA",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
    for v in &lines {
        assert!(!v["unit"].as_str().unwrap().is_empty(), "{v}");
        assert!(v["definition"].as_str().unwrap().len() > 10, "{v}");
    }
    let o = ipscope(&["schema", "--object", "Cells"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Cells_Intensity_MADIntensity_<channel>"));
    let o = ipscope(&["schema", "--features", "neighbors", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let names: Vec<&str> = lines.iter().map(|v| v["name"].as_str().unwrap()).collect();
    for f in [
        "NumberOfNeighbors",
        "PercentTouching",
        "FirstClosestObjectNumber",
        "FirstClosestDistance",
        "SecondClosestObjectNumber",
        "SecondClosestDistance",
        "AngleBetweenNeighbors",
    ] {
        let want = format!("Nuclei_Neighbors_{f}_5");
        assert!(
            names.contains(&want.as_str()),
            "{want} missing from {names:?}"
        );
    }
}
