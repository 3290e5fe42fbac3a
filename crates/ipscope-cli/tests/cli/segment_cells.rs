//! `ipscope segment --object cells --nuclei-channel FROM=TO`: cells grown from the nuclei of
//! each cell-stain image's DNA image, written as label TIFFs (u16) beside the nuclei.
//!
//! On cp_examplehuman (CellProfiler 4.0.6's ExampleHuman outputs; skipped when the data set
//! is absent) the cells are compared with CellProfiler's Cells.csv; a synthetic pair checks
//! the pairing, the parent links and the errors everywhere.

use crate::common;

use std::path::Path;

use common::*;
use ipscope_image::{DynImage, Image};
use ipscope_io::{read_image, write_tiff, ReadOptions};

/// A label image as u32 values; panics unless it was written as u16.
fn labels_u16(path: &Path) -> Image<u32> {
    match read_image(path, 0, &ReadOptions::default()).unwrap() {
        DynImage::U16(l) => l.map(u32::from),
        other => panic!(
            "{}: expected u16 labels, got {:?}",
            path.display(),
            other.sample_type()
        ),
    }
}

/// Pixel areas of labels 1..=max.
fn areas(l: &Image<u32>) -> Vec<u64> {
    let n = l.as_slice().iter().copied().max().unwrap_or(0) as usize;
    let mut a = vec![0u64; n];
    for &v in l.as_slice() {
        if v > 0 {
            a[v as usize - 1] += 1;
        }
    }
    a
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Every nucleus pixel lies in the cell with its number; returns the cell count.
fn check_parents(cells: &Image<u32>, nuclei: &Image<u32>) -> usize {
    for (&c, &n) in cells.as_slice().iter().zip(nuclei.as_slice()) {
        assert!(n == 0 || c == n, "nucleus {n} lies in cell {c}");
    }
    let (nc, nn) = (areas(cells), areas(nuclei));
    assert_eq!(nc.len(), nn.len(), "one cell per nucleus");
    for (k, (c, n)) in nc.iter().zip(&nn).enumerate() {
        assert!(c >= n, "cell {} smaller than its nucleus", k + 1);
    }
    nc.len()
}

#[test]
fn synthetic_pair_gives_one_cell_per_nucleus_and_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h) = (60, 40);
    // Two nuclei, each inside a larger bright cell body; a dim gap between the cells.
    let dna = Image::from_fn(w, h, |r, c| {
        let d1 = (r as f64 - 20.0).powi(2) + (c as f64 - 15.0).powi(2);
        let d2 = (r as f64 - 20.0).powi(2) + (c as f64 - 45.0).powi(2);
        if d1 < 25.0 || d2 < 25.0 {
            200u8
        } else {
            10
        }
    });
    let body = Image::from_fn(w, h, |r, c| {
        let inside = (5..35).contains(&r) && ((3..28).contains(&c) || (32..57).contains(&c));
        if inside {
            150u8
        } else {
            8
        }
    });
    let dir = tmp.path().join("imgs");
    std::fs::create_dir_all(&dir).unwrap();
    write_tiff(&dir.join("field1_ch0.tif"), dna.view()).unwrap();
    write_tiff(&dir.join("field1_ch2.tif"), body.view()).unwrap();
    let labels = tmp.path().join("labels");
    let overlays = tmp.path().join("overlays");
    let input = dir.join("field1_ch2.tif");
    let o = ipscope(&[
        "segment",
        p(&input),
        "--object",
        "cells",
        "--nuclei-channel",
        "ch2=ch0",
        "--labels-dir",
        p(&labels),
        "--overlay-dir",
        p(&overlays),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["object"], "cells");
    assert_eq!(line["objects"], 2);
    assert_eq!(line["nuclei"], 2);
    let cells = labels_u16(&labels.join("field1_ch2.tif"));
    let nuclei = labels_u16(&labels.join("field1_ch2_nuclei.tif"));
    assert_eq!(check_parents(&cells, &nuclei), 2);
    // The cells fill their bodies (25 × 30 px each), not the gap or the background.
    for a in areas(&cells) {
        assert!((700..=750).contains(&a), "cell area {a}");
    }
    assert!(overlays.join("field1_ch2_overlay.png").is_file());

    // A path names the DNA image of a single input.
    let single = tmp.path().join("single.tif");
    let dna_path = dir.join("field1_ch0.tif");
    let o = ipscope(&[
        "segment",
        p(&input),
        "--object",
        "cells",
        "--nuclei-channel",
        p(&dna_path),
        "--labels",
        p(&single),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(labels_u16(&single), cells);

    // Errors name the problem: no pairing, a FROM the name lacks, a missing DNA image.
    let o = ipscope(&["segment", p(&input), "--object", "cells"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--nuclei-channel"), "{}", stderr(&o));
    let o = ipscope(&[
        "segment",
        p(&input),
        "--object",
        "cells",
        "--nuclei-channel",
        "d2=d0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("field1_ch2.tif") && stderr(&o).contains("\"d2\""),
        "{}",
        stderr(&o)
    );
    let o = ipscope(&[
        "segment",
        p(&input),
        "--object",
        "cells",
        "--nuclei-channel",
        "ch2=ch9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("field1_ch9.tif"), "{}", stderr(&o));
    let o = ipscope(&["segment", p(&input), "--nuclei-channel", "ch2=ch0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--object cells"), "{}", stderr(&o));
}

#[test]
fn cp_examplehuman_cells_match_cellprofilers_median_area() {
    let data = data_dir().join("cp_examplehuman");
    let input = data.join("AS_09125_050116030001_D03f00d2.tif");
    if !input.is_file() {
        eprintln!(
            "skipped: {} not found (set IPSCOPE_DATA to the shared data sets)",
            input.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    let o = ipscope(&[
        "segment",
        p(&input),
        "--object",
        "cells",
        "--nuclei-channel",
        "d2=d0",
        "--labels-dir",
        p(&labels),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cells = labels_u16(&labels.join("AS_09125_050116030001_D03f00d2.tif"));
    let nuclei = labels_u16(&labels.join("AS_09125_050116030001_D03f00d2_nuclei.tif"));
    let n = check_parents(&cells, &nuclei);
    assert_eq!(n, areas(&nuclei).len());

    let mut rdr = csv::Reader::from_path(data.join("Cells.csv")).unwrap();
    let col = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "AreaShape_Area")
        .expect("AreaShape_Area in Cells.csv");
    let mut cp: Vec<f64> = rdr
        .records()
        .map(|r| r.unwrap()[col].parse().unwrap())
        .collect();
    // ExampleHuman.cppipe discards nuclei touching the image border, and their cells with
    // them: CellProfiler's median is over the cells of nuclei off the border, so ours is too
    // (the cells cut by the border are the smallest and would pull it down).
    let (w, h) = (nuclei.width(), nuclei.height());
    let mut on_border = vec![false; n + 1];
    for y in 0..h {
        for x in 0..w {
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                on_border[nuclei.get(y, x) as usize] = true;
            }
        }
    }
    let all = areas(&cells);
    let mut ours: Vec<f64> = all
        .iter()
        .enumerate()
        .filter(|&(k, _)| !on_border[k + 1])
        .map(|(_, &a)| a as f64)
        .collect();
    let mut every: Vec<f64> = all.iter().map(|&a| a as f64).collect();
    let (m_cp, m_ours, m_every) = (median(&mut cp), median(&mut ours), median(&mut every));
    println!(
        "cp_examplehuman: {n} cells (CellProfiler {}), {} of nuclei off the border with median area {m_ours} px (CellProfiler {m_cp}); all cells {m_every} px",
        cp.len(),
        ours.len()
    );
    assert!(
        (m_ours - m_cp).abs() <= 0.05 * m_cp,
        "median cell area {m_ours} vs CellProfiler's {m_cp}"
    );
}
