//! ipscope against CellProfiler 4.0.6 on its ExampleHuman images (`$IPSCOPE_DATA/cp_examplehuman`,
//! default `../shared/data`; the test prints a message and passes when absent).
//!
//! ipscope segments nuclei in DNA (d0), grows cells by propagation in the cell-body image (d2)
//! with the cppipe's settings (`CellsParams::default()`: minimum cross-entropy × 0.8,
//! regularisation 0.05), takes cytoplasm = cell − nucleus and measures all three with the
//! default feature set on the cppipe's channels DNA and PH3 (d1). Objects are matched to the rows
//! of CellProfiler's Nuclei.csv / Cells.csv / Cytoplasm.csv by centroid (mutual nearest, within
//! 3 px).
//!
//! Checks:
//! - column names: every ipscope column (object prefix removed) is a CellProfiler column, except
//!   `AreaShape_ConvexArea`, which CellProfiler 4.0.6 does not write;
//! - at least half of CellProfiler's objects are matched;
//! - matched objects: `Intensity_MaxIntensity_DNA` and `Location_MaxIntensity_{X,Y}_DNA`
//!   equal CellProfiler's (1e-6: CellProfiler stores float32) on at least 80 % of them (the brightest pixel lies inside both
//!   outlines even where they differ, so this checks channel mapping, scaling and position);
//!   (Nuclei and Cells; a cytoplasm's brightest DNA pixel is on the nuclear rim, which moves
//!   with the segmentation);
//! - same-mask objects (equal area and bounding box, centroid within 1e-6 px; at least 5 over
//!   the three tables, 10 at the time of writing): every shared AreaShape/Intensity/Location
//!   column equals CellProfiler's within 1e-6 relative (absolute below 1), except three
//!   documented CellProfiler 4.0.6 differences: Orientation is stored in radians (compared
//!   after × 180/π), Solidity uses an older scikit-image convex hull that leaves out some
//!   pixel centres on the hull's edges (CellProfiler's implied convex area is at most
//!   ipscope's, by at most the perimeter), and the position of a tied maximum is unspecified
//!   (compared where the maximum is unique); see `docs/measurements.md`;
//! - matched Nuclei and Cells whose areas agree within 1 % (45 cells, 5 nuclei at the time of
//!   writing; at least 20 cells): median relative deviation of mean, integrated and std
//!   intensity and axis lengths within 1 %, of perimeter, form factor, solidity and
//!   eccentricity within 5 %;
//! - printed, not asserted: median relative deviation of area, mean and integrated DNA
//!   intensity and eccentricity over all matched objects (limited by the segmentation
//!   differences, not by the measurement maths, which the regionprops/cp-measure parity tests
//!   check). Image.csv has no intensity totals, only counts and thresholds, which depend on
//!   the segmentation, so no Image column is compared.
//!
//! The nuclei count off the border is asserted within 3 % of CellProfiler's 289 (issue #4;
//! the cppipe discards border objects), and the median area of the matched nuclei within 5 %
//! of CellProfiler's (issue #4), both as the ratio of the two medians and as the median
//! per-nucleus relative deviation (see docs/segmentation.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipscope::core::{segment_cells, segment_nuclei, CellsParams, NucleiParams};
use ipscope::features::{add_object_columns, measure_objects, FeatureSet};
use ipscope::image::{with_dyn_image, DynImage, Labels, Pixel};
use ipscope::io::{read_image, ReadOptions};
use ipscope_table::arrow_array::{Array, Float64Array, UInt32Array};
use ipscope_table::TableBuilder;

fn data_dir() -> PathBuf {
    std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

/// A CellProfiler CSV as column name -> values (all numeric in the object tables).
fn read_csv(path: &Path) -> BTreeMap<String, Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut cols: BTreeMap<String, Vec<f64>> =
        header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines.filter(|l| !l.is_empty()) {
        for (h, v) in header.iter().zip(line.split(',')) {
            cols.get_mut(h)
                .unwrap()
                .push(v.trim().parse().unwrap_or(f64::NAN));
        }
    }
    cols
}

/// ipscope's columns for `object` as name (prefix removed) -> values, one per present label.
fn ipscope_table(
    object: &str,
    labels: &Labels,
    images: &[&DynImage],
) -> BTreeMap<String, Vec<f64>> {
    let set = FeatureSet::default();
    let m = measure_objects(labels, images, &set).unwrap();
    let keep: Vec<usize> = (0..m.shapes.len())
        .filter(|&i| m.shapes[i].area > 0)
        .collect();
    let mut b = TableBuilder::new();
    let channels = vec!["DNA".to_string(), "PH3".to_string()];
    add_object_columns(
        &mut b,
        object,
        &channels,
        &set,
        &m.shapes,
        &m.intensities,
        &keep,
    );
    let batch = b.finish().unwrap();
    let mut out = BTreeMap::new();
    out.insert(
        "ObjectNumber".to_string(),
        keep.iter().map(|&i| f64::from(m.shapes[i].label)).collect(),
    );
    for (i, f) in batch.schema().fields().iter().enumerate() {
        let col = batch.column(i);
        let vals: Vec<f64> = if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
            a.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
        } else if let Some(a) = col.as_any().downcast_ref::<UInt32Array>() {
            a.iter().map(|v| v.map_or(f64::NAN, f64::from)).collect()
        } else {
            continue;
        };
        let name = f.name().strip_prefix(&format!("{object}_")).unwrap();
        out.insert(name.to_string(), vals);
    }
    out
}

/// Mutual-nearest centroid pairs (ipscope row, CellProfiler row) within `max_d` px.
fn match_centroids(a: &[(f64, f64)], b: &[(f64, f64)], max_d: f64) -> Vec<(usize, usize)> {
    let nearest = |p: (f64, f64), set: &[(f64, f64)]| {
        set.iter()
            .enumerate()
            .map(|(i, q)| (i, (p.0 - q.0).hypot(p.1 - q.1)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
    };
    let mut out = Vec::new();
    for (i, &p) in a.iter().enumerate() {
        if let Some((j, d)) = nearest(p, b) {
            if d <= max_d && nearest(b[j], a).map(|x| x.0) == Some(i) {
                out.push((i, j));
            }
        }
    }
    out
}

/// Whether the brightest pixel of object `label` in `image` is unique (CellProfiler's
/// `scipy.ndimage.maximum_position` has no fixed order among tied maxima).
fn unique_max(labels: &Labels, image: &DynImage, label: u32) -> bool {
    let lab = labels.image();
    let vals: Vec<f64> = with_dyn_image!(image, img => {
        let v = img.view();
        let mut out = Vec::new();
        for r in 0..lab.height() {
            for c in 0..lab.width() {
                if lab.get(r, c) == label {
                    out.push(v.get(r, c).to_f64());
                }
            }
        }
        out
    });
    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    vals.iter().filter(|&&v| v == max).count() == 1
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

#[test]
fn examplehuman_matches_cellprofiler() {
    let d = data_dir().join("cp_examplehuman");
    if !d.is_dir() {
        eprintln!(
            "skipping ExampleHuman comparison: {} not found (set IPSCOPE_DATA)",
            d.display()
        );
        return;
    }
    let read = |f: &str| read_image(&d.join(f), 0, &ReadOptions::default()).unwrap();
    let dna = read("AS_09125_050116030001_D03f00d0.tif");
    let ph3 = read("AS_09125_050116030001_D03f00d1.tif");
    let body = read("AS_09125_050116030001_D03f00d2.tif");
    let nuclei = with_dyn_image!(&dna, i => segment_nuclei(i.view(), &NucleiParams::default()));
    // Issue #4: the nuclei count within 3 % of CellProfiler's 289 (280..=298). The cppipe
    // discards objects touching the border, so those are left out of ipscope's count too.
    let lab = nuclei.labels.image();
    let (w, h) = (lab.width(), lab.height());
    let mut on_border = vec![false; nuclei.labels.count() as usize + 1];
    let mut present = vec![false; nuclei.labels.count() as usize + 1];
    for y in 0..h {
        for x in 0..w {
            let l = lab.get(y, x) as usize;
            present[l] = true;
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                on_border[l] = true;
            }
        }
    }
    let inner = (1..present.len())
        .filter(|&k| present[k] && !on_border[k])
        .count();
    println!("Nuclei off the border: ipscope {inner}, CellProfiler 289");
    assert!(
        (280..=298).contains(&inner),
        "{inner} nuclei off the border"
    );
    let cells = with_dyn_image!(&body, i => segment_cells(i.view(), &nuclei.labels, &CellsParams::default()))
        .unwrap();
    let images = [&dna, &ph3];
    let mut total_identical = 0usize;
    for (object, labels, csv) in [
        ("Nuclei", &nuclei.labels, "Nuclei.csv"),
        ("Cells", &cells.cells, "Cells.csv"),
        ("Cytoplasm", &cells.cytoplasm, "Cytoplasm.csv"),
    ] {
        let ours = ipscope_table(object, labels, &images);
        let cp = read_csv(&d.join(csv));
        let n_ours = ours["AreaShape_Area"].len();
        let n_cp = cp["AreaShape_Area"].len();

        // Column names of the shared families.
        let missing: Vec<&String> = ours.keys().filter(|k| !cp.contains_key(*k)).collect();
        assert!(
            missing.iter().all(|k| *k == "AreaShape_ConvexArea"),
            "{object}: ipscope columns CellProfiler does not have: {missing:?}"
        );
        let cp_only: Vec<&String> = cp
            .keys()
            .filter(|k| {
                (k.starts_with("AreaShape_")
                    || k.starts_with("Intensity_")
                    || k.starts_with("Location_"))
                    && !ours.contains_key(*k)
            })
            .collect();

        let centres = |t: &BTreeMap<String, Vec<f64>>| -> Vec<(f64, f64)> {
            t["Location_Center_X"]
                .iter()
                .zip(&t["Location_Center_Y"])
                .map(|(&x, &y)| (x, y))
                .collect()
        };
        let pairs = match_centroids(&centres(&ours), &centres(&cp), 3.0);
        println!(
            "{object}: ipscope {n_ours}, CellProfiler {n_cp}, matched {} ({} CellProfiler-only columns in the shared families, e.g. {:?})",
            pairs.len(),
            cp_only.len(),
            cp_only.iter().take(4).collect::<Vec<_>>()
        );
        assert!(
            pairs.len() * 2 >= n_cp,
            "{object}: only {} of {n_cp} CellProfiler objects matched",
            pairs.len()
        );

        // Same mask: equal area and bounding box, same centroid.
        let same_mask = |&(i, j): &(usize, usize)| {
            [
                "AreaShape_Area",
                "AreaShape_BoundingBoxMinimum_X",
                "AreaShape_BoundingBoxMinimum_Y",
                "AreaShape_BoundingBoxMaximum_X",
                "AreaShape_BoundingBoxMaximum_Y",
            ]
            .iter()
            .all(|k| ours[*k][i] == cp[*k][j])
                && (ours["Location_Center_X"][i] - cp["Location_Center_X"][j]).abs() < 1e-6
                && (ours["Location_Center_Y"][i] - cp["Location_Center_Y"][j]).abs() < 1e-6
        };
        // For testdata/reference/measure/cp_examplehuman_hull.py: the label images.
        if let Some(dir) = std::env::var_os("IPSCOPE_EXAMPLEHUMAN_LABELS") {
            let path = Path::new(&dir).join(format!("{object}.tif"));
            let l16 = labels.image().map(|v| v as u16);
            ipscope::io::write_tiff(&path, l16.view()).unwrap();
        }
        let identical: Vec<(usize, usize)> = pairs.iter().copied().filter(same_mask).collect();
        total_identical += identical.len();
        // Same mask: every shared column equals CellProfiler's (1e-6 relative, absolute below
        // 1; CellProfiler computes in float32), with CellProfiler 4.0.6's documented
        // differences: Orientation in radians, Solidity over an older scikit-image convex
        // hull (some pixel centres on the hull's edges left out: its solidity is at least
        // ipscope's, by at most 2 %), and the position of a tied maximum unspecified.
        let mut off: Vec<String> = Vec::new();
        let mut compared = 0usize;
        for (name, vals) in &ours {
            let Some(want) = cp.get(name) else { continue };
            if name == "ObjectNumber" {
                continue;
            }
            for &(i, j) in &identical {
                let (a, b) = (vals[i], want[j]);
                let ok = match name.as_str() {
                    "AreaShape_Orientation" => rel(a, b.to_degrees()) <= 1e-6,
                    "AreaShape_Solidity" => {
                        // CellProfiler's hull leaves out some pixel centres on its edges:
                        // never more than the hull's length (at most the object's perimeter).
                        let area = ours["AreaShape_Area"][i];
                        let (hull, cp_hull) = (ours["AreaShape_ConvexArea"][i], area / b);
                        cp_hull <= hull + 1e-6 && hull - cp_hull <= ours["AreaShape_Perimeter"][i]
                    }
                    n if n.starts_with("Location_MaxIntensity_") => {
                        let ch = if n.ends_with("_DNA") { &dna } else { &ph3 };
                        let label = ours["ObjectNumber"][i] as u32;
                        !unique_max(labels, ch, label) || a == b
                    }
                    _ => (a.is_nan() && b.is_nan()) || rel(a, b) <= 1e-6,
                };
                compared += 1;
                if !ok {
                    off.push(format!(
                        "{name} object {}: ipscope {a}, CellProfiler {b}",
                        i + 1
                    ));
                }
            }
        }
        println!(
            "{object}: {} matched objects with the same mask, {compared} values compared",
            identical.len()
        );
        assert!(
            off.is_empty(),
            "{object}: same-mask objects differ: {off:#?}"
        );
        // All matched objects: the brightest DNA and PH3 pixel lies inside both masks for
        // almost every matched object, so its value and position must be CellProfiler's
        // exactly (scaling by 1/255, raster-order ties) even where the outlines differ.
        for ch in ["DNA", "PH3"] {
            let max = format!("Intensity_MaxIntensity_{ch}");
            let (mx, my) = (
                format!("Location_MaxIntensity_X_{ch}"),
                format!("Location_MaxIntensity_Y_{ch}"),
            );
            let same = pairs
                .iter()
                .filter(|&&(i, j)| {
                    (ours[&max][i] - cp[&max][j]).abs() < 1e-6
                        && ours[&mx][i] == cp[&mx][j]
                        && ours[&my][i] == cp[&my][j]
                })
                .count();
            println!(
                "{object}: {same} of {} matched objects have CellProfiler's {max} and its position",
                pairs.len()
            );
            // PH3 is mostly background inside a nucleus: its brightest pixel sits anywhere,
            // often on the rim or tied, so only DNA's is asserted.
            assert!(
                ch != "DNA" || object == "Cytoplasm" || same * 10 >= pairs.len() * 8,
                "{object}: {max} equals CellProfiler's on only {same} of {} matched objects",
                pairs.len()
            );
        }
        // Near-equal masks: matched objects whose areas agree within 1 %.
        let near: Vec<(usize, usize)> = pairs
            .iter()
            .copied()
            .filter(|&(i, j)| rel(ours["AreaShape_Area"][i], cp["AreaShape_Area"][j]) <= 0.01)
            .collect();
        // Median relative deviation over them: averages over the mask and axis lengths within
        // 1 %, boundary features (perimeter, form factor, solidity, eccentricity) within 5 %
        // (a few moved boundary pixels change them more).
        // Cytoplasm is left out: a ring of the same area can lie differently around the
        // nucleus (its DNA mean differs by 12 % at equal area).
        if object != "Cytoplasm" {
            for (feature, tol) in [
                ("Intensity_MeanIntensity_DNA", 0.01),
                ("Intensity_MeanIntensity_PH3", 0.01),
                ("Intensity_IntegratedIntensity_DNA", 0.01),
                ("Intensity_IntegratedIntensity_PH3", 0.01),
                ("Intensity_StdIntensity_DNA", 0.01),
                ("AreaShape_MajorAxisLength", 0.01),
                ("AreaShape_MinorAxisLength", 0.01),
                ("AreaShape_Perimeter", 0.05),
                ("AreaShape_Eccentricity", 0.05),
                ("AreaShape_FormFactor", 0.05),
                ("AreaShape_Solidity", 0.05),
            ] {
                let m = median(
                    near.iter()
                        .map(|&(i, j)| {
                            let (a, b) = (ours[feature][i], cp[feature][j]);
                            (a - b).abs() / b.abs().max(1e-12)
                        })
                        .collect(),
                );
                println!(
                    "{object}: {feature} over {} objects of equal area (1 %): median relative deviation {m:.4} (allowed {tol})",
                    near.len()
                );
                assert!(
                    m <= tol,
                    "{object}: {feature} median relative deviation {m} > {tol}"
                );
            }
            assert!(
                near.len() >= if object == "Cells" { 20 } else { 3 },
                "{object}: only {} matched objects of equal area",
                near.len()
            );
        }
        // Segmentation-limited agreement: printed for the record, not asserted.
        for feature in [
            "AreaShape_Area",
            "Intensity_MeanIntensity_DNA",
            "Intensity_IntegratedIntensity_DNA",
            "AreaShape_Eccentricity",
        ] {
            let signed: Vec<f64> = pairs
                .iter()
                .map(|&(i, j)| (ours[feature][i] - cp[feature][j]) / cp[feature][j].abs())
                .collect();
            let m = median(signed.iter().map(|v| v.abs()).collect());
            let bias = median(signed);
            println!(
                "{object}: {feature} over matched objects: median |relative deviation| {m:.3}, median signed {bias:+.3}"
            );
        }
        if object == "Nuclei" {
            // Issue #4: the median area of centroid-matched nuclei within 5 % of
            // CellProfiler's, read both ways: the medians of the two matched sets, and the
            // median of the per-nucleus relative deviations.
            let ours_med = median(
                pairs
                    .iter()
                    .map(|&(i, _)| ours["AreaShape_Area"][i])
                    .collect(),
            );
            let cp_med = median(
                pairs
                    .iter()
                    .map(|&(_, j)| cp["AreaShape_Area"][j])
                    .collect(),
            );
            let signed = median(
                pairs
                    .iter()
                    .map(|&(i, j)| {
                        (ours["AreaShape_Area"][i] - cp["AreaShape_Area"][j])
                            / cp["AreaShape_Area"][j]
                    })
                    .collect(),
            );
            println!(
                "Nuclei: median area of {} matched nuclei {ours_med} px, CellProfiler {cp_med} px; median relative deviation {signed:+.3}",
                pairs.len()
            );
            assert!(
                (ours_med / cp_med - 1.0).abs() <= 0.05,
                "matched nuclei median area {ours_med} px vs CellProfiler {cp_med} px"
            );
            assert!(
                signed.abs() <= 0.05,
                "median relative area deviation of matched nuclei {signed:+.3}"
            );
        }
    }
    println!("same-mask objects over the three tables: {total_identical}");
    // Six cells at the time of writing; fewer would leave the exact comparison above with too
    // little to check.
    assert!(
        total_identical >= 5,
        "only {total_identical} same-mask objects to compare exactly"
    );
}
