//! Colonies and marker positivity on public data and on degenerate inputs.
//!
//! * AICS whole-well hiPSC brightfield (no ground truth; the AICS CellProfiler colony
//!   pipelines are the reference method): the well is found and colonies are found in each
//!   of the six images, all inside the well.
//! * CellProfiler ExampleHuman: CellProfiler finds 22 PH3 objects among 289 nuclei; ipscope's
//!   PH3-positive fraction of its own nuclei (default log-Otsu gate on the mean nuclear PH3
//!   intensity) agrees within 2 percentage points.
//! * No colonies, the whole field one colony: defined results, exit code 0.

use crate::common;

use common::{data_dir, ipscope, p, stderr};
use ipscope::core::assays::markers::{resolve_gate, summarize, Gate};
use ipscope::core::ops::measure::measure_intensity;
use ipscope::core::{segment_nuclei, NucleiParams};
use ipscope::image::{with_dyn_image, Image, Pixel};
use ipscope::io::{read_image, write_tiff, ReadOptions};

macro_rules! need {
    ($p:expr) => {{
        let p = $p;
        if !p.exists() {
            println!("skipped: {} not found (set IPSCOPE_DATA)", p.display());
            return;
        }
        p
    }};
}

#[test]
fn aics_whole_well_brightfield_well_and_colonies_found() {
    let d = need!(data_dir().join("aics_hipsc_colony_brightfield/96well_wholewell"));
    let mut files: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tiff"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6);
    let tmp = tempfile::tempdir().unwrap();
    for f in &files {
        let labels = tmp.path().join("colonies.tif");
        let o = ipscope(&[
            "segment",
            p(f),
            "--object",
            "colonies",
            "--colonies-from",
            "transmitted",
            "--labels",
            p(&labels),
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let n = v["objects"].as_u64().unwrap();
        let well = &v["well"];
        let (cr, cc, rad) = (
            well["center_row"].as_f64().expect("well found"),
            well["center_col"].as_f64().unwrap(),
            well["radius"].as_f64().unwrap(),
        );
        println!(
            "{}: {n} colonies, well centre ({cc:.0}, {cr:.0}) radius {rad:.0}",
            f.file_name().unwrap().to_string_lossy()
        );
        // 1887 x 1887 images with the well in the middle, about 3/4 of the width across.
        assert!((cr - 943.0).abs() < 60.0 && (cc - 943.0).abs() < 60.0);
        assert!((600.0..800.0).contains(&rad), "radius {rad}");
        assert!(n >= 5, "{n} colonies");
        let lab = read_image(&labels, 0, &ReadOptions::default()).unwrap();
        let lab = with_dyn_image!(&lab, i => i.map(|v| v.to_f64()));
        let mut covered = 0usize;
        for r in 0..lab.height() {
            for c in 0..lab.width() {
                if lab.get(r, c) > 0.0 {
                    covered += 1;
                    let dist = ((r as f64 - cr).powi(2) + (c as f64 - cc).powi(2)).sqrt();
                    assert!(dist <= rad, "colony pixel outside the well");
                }
            }
        }
        let frac = covered as f64 / (std::f64::consts::PI * rad * rad);
        assert!(
            (0.02..0.9).contains(&frac),
            "colonies cover {frac:.3} of the well"
        );
    }
}

#[test]
fn cp_examplehuman_ph3_positive_fraction_matches_cellprofiler() {
    let d = need!(data_dir().join("cp_examplehuman"));
    let opts = ReadOptions::default();
    let dna = read_image(&d.join("AS_09125_050116030001_D03f00d0.tif"), 0, &opts).unwrap();
    let ph3 = read_image(&d.join("AS_09125_050116030001_D03f00d1.tif"), 0, &opts).unwrap();
    let nuclei = with_dyn_image!(&dna, i => segment_nuclei(i.view(), &NucleiParams::default()));
    let means: Vec<f64> = with_dyn_image!(&ph3, i => measure_intensity(&nuclei.labels, i.view()))
        .iter()
        .map(|o| o.mean)
        .filter(|m| m.is_finite())
        .collect();
    // CellProfiler's numbers, read from its own tables.
    let ph3_rows = std::fs::read_to_string(d.join("PH3.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let nuc_rows = std::fs::read_to_string(d.join("Nuclei.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let cp = 100.0 * ph3_rows as f64 / nuc_rows as f64;
    let gate = resolve_gate(&Gate::OtsuLog, &means, &[]).unwrap();
    let s = summarize(&means, gate);
    let linear = summarize(&means, resolve_gate(&Gate::Otsu, &means, &[]).unwrap());
    println!(
        "cp_examplehuman PH3: ipscope {}/{} = {:.2}% (log-Otsu gate {:.4}; linear Otsu {:.2}%), \
         CellProfiler {ph3_rows}/{nuc_rows} = {cp:.2}%",
        s.positive, s.cells, s.percent_positive, s.threshold, linear.percent_positive
    );
    assert!(
        (s.percent_positive - cp).abs() <= 2.0,
        "{:.2}% vs CellProfiler {cp:.2}%",
        s.percent_positive
    );
}

#[test]
fn no_colonies_and_whole_field_colony_are_defined() {
    let tmp = tempfile::tempdir().unwrap();
    // Blank field: no nuclei, no colonies.
    let blank = tmp.path().join("blank.tif");
    write_tiff(&blank, Image::new(64, 48, 100u16).view()).unwrap();
    // Field packed with nuclei (radius 4, 10 px apart): one colony covering the field.
    let packed = tmp.path().join("packed.tif");
    let img = Image::from_fn(120, 100, |r, c| {
        let (dr, dc) = ((r % 10) as f64 - 4.5, (c % 10) as f64 - 4.5);
        if dr * dr + dc * dc <= 16.0 {
            3000u16
        } else {
            200
        }
    });
    write_tiff(&packed, img.view()).unwrap();
    for (f, want) in [(&blank, 0u64), (&packed, 1)] {
        for source in ["nuclei", "transmitted"] {
            let o = ipscope(&[
                "segment",
                p(f),
                "--object",
                "colonies",
                "--colonies-from",
                source,
                "--json",
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if source == "nuclei" {
                assert_eq!(v["objects"].as_u64(), Some(want), "{}", f.display());
            } else {
                // Defined, whatever the texture finds; a blank field has none.
                assert!(v["objects"].as_u64().is_some());
                if want == 0 {
                    assert_eq!(v["objects"].as_u64(), Some(0));
                }
            }
        }
    }
}
