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

use crate::common;
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

/// The opt-in groups chosen with `[measure] features` reach the run's Nuclei and Colonies
/// tables, with the numbers `ipscope measure` gives for the same field and labels (run and
/// `segment` use the same default segmentation, of nuclei and of colonies from nuclei); the
/// Neighbors distance of `[measure] neighbors_distance` names the columns as
/// `--neighbors-distance` does; the Image table has the fields' granular spectra.
#[test]
fn run_writes_the_feature_groups_the_config_selects() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let out = tmp.path().join("out");
    let cfg = tmp.path().join("features.toml");
    let groups = "Texture,Zernike,Correlation,Granularity,RadialDistribution,Neighbors";
    let listed: Vec<String> = groups.split(',').map(|g| format!("\"{g}\"")).collect();
    std::fs::write(
        &cfg,
        format!(
            "[measure]\nfeatures = [\"AreaShape\", \"Location\", \"Intensity\", {}]\nneighbors_distance = 3\n",
            listed.join(", ")
        ),
    )
    .unwrap();
    let mut args = small_run_args(&plate, &out);
    args.extend(["--config", p(&cfg), "--colonies", "nuclei"]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let nuclei = read_batch(&out.join("Nuclei.parquet"));

    // One field of the run, measured again through segment + measure.
    let image = read_batch(&out.join("Image.parquet"));
    let numbers = column_u32(&image, "ImageNumber").unwrap();
    let wells = ipscope_table::column_str(&image, "Metadata_Well").unwrap();
    let sites = column_u32(&image, "Metadata_Site").unwrap();
    // The field with the most colonies (ties: the first).
    let counts = u64s(&image, "Count_Colonies");
    let i = (0..counts.len())
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap();
    let (image_number, well, site) = (numbers.value(i), wells.value(i), sites.value(i));
    let field = |ch: &str| {
        std::fs::read_dir(&plate)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|f| {
                let n = f.file_name().unwrap().to_str().unwrap();
                n.contains(&format!("_{well}_s{site}_{ch}"))
            })
            .unwrap_or_else(|| panic!("no {ch} file for {well} s{site}"))
    };
    let (dna, oct4) = (field("w1"), field("w2"));
    let labels = tmp.path().join("labels.tif");
    let o = ipscope(&["segment", p(&dna), "--labels", p(&labels)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let oct4_arg = format!("OCT4={}", p(&oct4));
    let measure = |labels: &Path, object: &str| {
        let measured = tmp.path().join(format!("{object}.parquet"));
        let o = ipscope(&[
            "measure",
            p(&dna),
            "--name",
            "DNA",
            "--labels",
            p(labels),
            "--object",
            object,
            "--channel",
            &oct4_arg,
            "--features",
            &format!("default,{groups}"),
            "--neighbors-distance",
            "3",
            "-o",
            p(&measured),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        read_batch(&measured)
    };
    let reference = measure(&labels, "Nuclei");
    let names: Vec<String> = nuclei
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(names.contains(&"Nuclei_Neighbors_NumberOfNeighbors_3".to_string()));
    assert!(!names
        .iter()
        .any(|n| n.ends_with("Neighbors_NumberOfNeighbors_5")));

    let rows: Vec<usize> = (0..nuclei.num_rows())
        .filter(|&r| column_u32(&nuclei, "ImageNumber").unwrap().value(r) == image_number)
        .collect();
    assert_eq!(
        rows.len(),
        reference.num_rows(),
        "objects in field {image_number}"
    );
    let mut compared = 0;
    for name in [
        "Texture_",
        "Zernike_",
        "Correlation_",
        "Granularity_",
        "RadialDistribution_",
        "Neighbors_",
    ] {
        let cols: Vec<String> = reference
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| c.contains(name))
            .collect();
        assert!(!cols.is_empty(), "measure wrote no {name} columns");
        for c in cols {
            let run = values(&nuclei, &c);
            let want = values(&reference, &c);
            for (k, &r) in rows.iter().enumerate() {
                let (a, b) = (run[r], want[k]);
                assert!(
                    (a.is_nan() && b.is_nan()) || close(a, b, 1e-12),
                    "{c} object {k}: run {a} vs measure {b}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "only {compared} values compared");

    // Colonies: every column `measure` writes for the colony label image of the field (the
    // default and the opt-in groups) equals the run's Colonies row of the same colony.
    let colony_labels = tmp.path().join("colonies.tif");
    let o = ipscope(&[
        "segment",
        p(&dna),
        "--object",
        "colonies",
        "--colonies-from",
        "nuclei",
        "--labels",
        p(&colony_labels),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let colony_ref = measure(&colony_labels, "Colonies");
    let colonies = read_batch(&out.join("Colonies.parquet"));
    let rows: Vec<usize> = (0..colonies.num_rows())
        .filter(|&r| column_u32(&colonies, "ImageNumber").unwrap().value(r) == image_number)
        .collect();
    assert!(!rows.is_empty(), "no colonies in field {image_number}");
    assert_eq!(rows.len(), colony_ref.num_rows(), "colonies in the field");
    let run_ids = values(&colonies, "ObjectNumber");
    let ref_ids = values(&colony_ref, "ObjectNumber");
    let mut colony_values = 0;
    for f in colony_ref.schema().fields().iter().skip(2) {
        let c = f.name();
        let run = values(&colonies, c);
        let want = values(&colony_ref, c);
        for (k, &r) in rows.iter().enumerate() {
            assert_eq!(run_ids[r], ref_ids[k], "colony order");
            let (a, b) = (run[r], want[k]);
            assert!(
                (a.is_nan() && b.is_nan()) || close(a, b, 1e-12),
                "{c} colony {}: run {a} vs measure {b}",
                ref_ids[k]
            );
            colony_values += 1;
        }
    }
    let colony_cols = colony_ref.num_columns() - 2;
    println!(
        "{} colonies, {colony_cols} columns, {colony_values} values equal",
        rows.len()
    );
    // AreaShape 22, Location 2, per channel Intensity 19, Granularity 16, RadialDistribution
    // 12, Texture 52, then Zernike 30, Correlation 9, Neighbors 7.
    assert_eq!(colony_cols, 22 + 2 + 2 * (19 + 16 + 12 + 52) + 30 + 9 + 7);
    assert!(rows.len() >= 2, "only {} colonies compared", rows.len());

    // Image: the granular spectrum of each field and channel, as CellProfiler's image
    // measurement (parity with the reference in ipscope-core's measure_granularity test).
    for ch in ["DNA", "OCT4"] {
        for n in 1..=16 {
            let g = values(&image, &format!("Granularity_{n}_{ch}"));
            assert!(
                g.iter().all(|v| v.is_finite()),
                "Granularity_{n}_{ch}: {g:?}"
            );
        }
    }
}

/// `--neighbors-distance` changes the Neighbors columns' suffix and the neighbourhoods:
/// on a real label image, at d = 2 and d = 5 every object's NumberOfNeighbors and
/// PercentTouching equal cp-measure's MeasureObjectNeighbors at that distance
/// (`testdata/reference/measure/neighbors.json`), and the counts differ between the two.
#[test]
fn neighbors_distance_names_the_columns_and_matches_cp_measure() {
    let data = data_dir();
    let lab = "dsb2018_fluo_subset/labels/700afb1cd830a808.png";
    let img = "dsb2018_fluo_subset/images/700afb1cd830a808.png";
    if !data.join(lab).exists() {
        println!(
            "skipped: {} not found (set IPSCOPE_DATA)",
            data.join(lab).display()
        );
        return;
    }
    let text = std::fs::read_to_string(repo().join("testdata/reference/measure/neighbors.json"))
        .expect("neighbors.json");
    let r: Value = serde_json::from_str(&text).expect("valid JSON");
    let field = r["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["labels"] == lab)
        .expect("field in neighbors.json");
    let col = |name: &str| -> Vec<f64> {
        field["columns"][name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} not in the reference"))
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for d in ["2", "5"] {
        let out = tmp.path().join(format!("n{d}.parquet"));
        let o = ipscope(&[
            "measure",
            p(&data.join(img)),
            "--labels",
            p(&data.join(lab)),
            "--features",
            "neighbors",
            "--neighbors-distance",
            d,
            "-o",
            p(&out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let b = read_batch(&out);
        let other = if d == "2" { "5" } else { "2" };
        assert!(b
            .column_by_name(&format!("Nuclei_Neighbors_NumberOfNeighbors_{other}"))
            .is_none());
        assert_eq!(values(&b, "ObjectNumber"), col("label"));
        let n = values(&b, &format!("Nuclei_Neighbors_NumberOfNeighbors_{d}"));
        assert_eq!(n, col(&format!("NumberOfNeighbors_{d}")), "d = {d}");
        let pt = values(&b, &format!("Nuclei_Neighbors_PercentTouching_{d}"));
        for (k, (a, w)) in pt
            .iter()
            .zip(col(&format!("PercentTouching_{d}")))
            .enumerate()
        {
            assert!(
                close(*a, w, 1e-9),
                "PercentTouching_{d} object {k}: {a} vs {w}"
            );
        }
        counts.push(n);
    }
    let changed = counts[0]
        .iter()
        .zip(&counts[1])
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        changed > 0,
        "d = 2 and d = 5 give the same neighbour counts"
    );
    println!(
        "{} objects, {changed} with other neighbour counts at d = 5 than at d = 2",
        counts[0].len()
    );
}
