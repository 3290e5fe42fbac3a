//! Accuracy of [`segment_nuclei`] settings on the shared public data sets, in one process:
//! F1 at IoU 0.5 and DSB2018 AP per set, and on cp_examplehuman the count off the border and
//! the median area of centroid-matched nuclei against CellProfiler's.
//!
//! ```sh
//! cargo run --release -p ipscope-core --example seg_sweep -- '{}' '{"object_contrast": 0.25}'
//! ```
//! Each argument is a `NucleiParams` JSON object (unset keys keep their defaults); the data
//! sets are read from `$IPSCOPE_DATA` (default `../shared/data` beside the repository).

use std::path::{Path, PathBuf};

use ipscope_core::ops::eval::{match_labels, summarize, ImageMatch};
use ipscope_core::ops::label::{label, Connectivity};
use ipscope_core::{segment_cells, segment_nuclei, CellsParams, NucleiParams};
use ipscope_image::{with_dyn_image, DynImage, Image, Labels};
use ipscope_io::{read_image, ReadOptions};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn data_dir() -> PathBuf {
    std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

fn sorted(dir: &Path, ext: &str) -> Res<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|e| e == ext) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

fn truth(path: &Path, binary: bool) -> Res<Image<u32>> {
    let l = match read_image(path, 0, &ReadOptions::default())? {
        DynImage::U8(i) => i.map(u32::from),
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::F32(i) => i.map(|v| v as u32),
    };
    Ok(if binary {
        label(l.map(|v| v != 0).view(), Connectivity::Four).into_image()
    } else {
        l
    })
}

/// A set: (image, truth label image) pairs, truth binary or not.
struct Set {
    name: &'static str,
    pairs: Vec<(DynImage, Image<u32>)>,
}

fn load() -> Res<Vec<Set>> {
    let d = data_dir();
    let mut sets = Vec::new();
    let rd = |p: &Path| read_image(p, 0, &ReadOptions::default());
    let dsb = d.join("dsb2018_fluo_subset");
    let mut pairs = Vec::new();
    for p in sorted(&dsb.join("images"), "png")? {
        let t = dsb.join("labels").join(p.file_name().ok_or("name")?);
        pairs.push((rd(&p)?, truth(&t, false)?));
    }
    sets.push(Set { name: "DSB", pairs });
    for (name, set) in [("GOWT1", "N2DH-GOWT1"), ("HeLa", "N2DL-HeLa")] {
        let m = d.join("mobi_nuclei_gt").join(set);
        let mut pairs = Vec::new();
        for p in sorted(&m.join("img"), "tif")? {
            let n = p.file_name().ok_or("name")?.to_string_lossy()[1..].to_string();
            pairs.push((
                rd(&p)?,
                truth(&m.join("gt").join(format!("man_seg{n}")), false)?,
            ));
        }
        sets.push(Set { name, pairs });
    }
    let m = d.join("mobi_nuclei_gt/NIH3T3");
    let mut pairs = Vec::new();
    for p in sorted(&m.join("img"), "png")? {
        let n = p.file_name().ok_or("name")?.to_string_lossy()[4..].to_string();
        pairs.push((rd(&p)?, truth(&m.join("gt").join(n), true)?));
    }
    sets.push(Set {
        name: "NIH3T3",
        pairs,
    });
    let s = d.join("stardist_dsb2018_sample");
    sets.push(Set {
        name: "StarDist",
        pairs: vec![(
            rd(&s.join("img2d.tif"))?,
            truth(&s.join("mask2d.tif"), false)?,
        )],
    });
    Ok(sets)
}

/// CellProfiler's nuclei: (x, y, area).
fn cp_nuclei(path: &Path) -> Res<Vec<(f64, f64, f64)>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty csv")?.split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).ok_or("column");
    let (cx, cy, ca) = (
        col("Location_Center_X")?,
        col("Location_Center_Y")?,
        col("AreaShape_Area")?,
    );
    let mut out = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let v: Vec<&str> = l.split(',').collect();
        out.push((v[cx].parse()?, v[cy].parse()?, v[ca].parse()?));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// (count off the border, median matched area / CellProfiler's − 1, median signed relative
/// area deviation, matched pairs).
fn examplehuman(labels: &Labels, cp: &[(f64, f64, f64)]) -> (usize, f64, f64, usize) {
    let lab = labels.image();
    let (w, h) = (lab.width(), lab.height());
    let n = labels.count() as usize;
    let mut acc = vec![(0f64, 0f64, 0f64); n + 1];
    let mut border = vec![false; n + 1];
    for y in 0..h {
        for x in 0..w {
            let l = lab.get(y, x) as usize;
            acc[l].0 += x as f64;
            acc[l].1 += y as f64;
            acc[l].2 += 1.0;
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                border[l] = true;
            }
        }
    }
    let ours: Vec<(f64, f64, f64)> = acc[1..]
        .iter()
        .filter(|a| a.2 > 0.0)
        .map(|a| (a.0 / a.2, a.1 / a.2, a.2))
        .collect();
    let inner = (1..=n).filter(|&k| acc[k].2 > 0.0 && !border[k]).count();
    let nearest = |p: (f64, f64), set: &[(f64, f64, f64)]| {
        set.iter()
            .enumerate()
            .map(|(i, q)| (i, (p.0 - q.0).hypot(p.1 - q.1)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
    };
    let mut pairs = Vec::new();
    for (i, &p) in ours.iter().enumerate() {
        if let Some((j, d)) = nearest((p.0, p.1), cp) {
            if d <= 3.0 && nearest((cp[j].0, cp[j].1), &ours).map(|x| x.0) == Some(i) {
                pairs.push((i, j));
            }
        }
    }
    let a: Vec<f64> = pairs.iter().map(|&(i, _)| ours[i].2).collect();
    let b: Vec<f64> = pairs.iter().map(|&(_, j)| cp[j].2).collect();
    let signed: Vec<f64> = pairs
        .iter()
        .map(|&(i, j)| (ours[i].2 - cp[j].2) / cp[j].2)
        .collect();
    (
        inner,
        median(a) / median(b) - 1.0,
        median(signed),
        pairs.len(),
    )
}

fn main() -> Res<()> {
    let sets = load()?;
    let eh = data_dir().join("cp_examplehuman");
    let dna = read_image(
        &eh.join("AS_09125_050116030001_D03f00d0.tif"),
        0,
        &ReadOptions::default(),
    )?;
    let cp = cp_nuclei(&eh.join("Nuclei.csv"))?;
    let body = read_image(
        &eh.join("AS_09125_050116030001_D03f00d2.tif"),
        0,
        &ReadOptions::default(),
    )?;
    let cp_cells = median(
        cp_nuclei(&eh.join("Cells.csv"))?
            .iter()
            .map(|c| c.2)
            .collect(),
    );
    println!("variant | DSB | GOWT1 | HeLa | NIH3T3 | StarDist | EH inner | EH area (medians) | EH area (signed) | matched");
    for arg in std::env::args().skip(1) {
        let params: NucleiParams = serde_json::from_str(&arg)?;
        let mut row = format!("{arg} |");
        let mut seg_time = std::time::Duration::ZERO;
        for set in &sets {
            let matches: Vec<ImageMatch> = set
                .pairs
                .iter()
                .map(|(img, t)| {
                    let start = std::time::Instant::now();
                    let pred = with_dyn_image!(img, i => segment_nuclei(i.view(), &params));
                    seg_time += start.elapsed();
                    match_labels(t.view(), pred.labels.view())
                })
                .collect::<Result<_, _>>()?;
            let s = summarize(&matches);
            row += &format!(" {:.4} ({:.3}) |", s.f1, s.ap_dsb);
            if std::env::var_os("SWEEP_PER_IMAGE").is_some() {
                for (k, m) in matches.iter().enumerate() {
                    let c = &m.counts[0];
                    eprintln!(
                        "{} {k} true {} pred {} tp {} fp {} fn {} iou {:.3}",
                        set.name,
                        m.n_true,
                        m.n_pred,
                        c.tp,
                        c.fp,
                        c.fn_,
                        m.matched_iou_sum / c.tp.max(1) as f64
                    );
                }
            }
        }
        let r = with_dyn_image!(&dna, i => segment_nuclei(i.view(), &params));
        let (inner, ratio, signed, m) = examplehuman(&r.labels, &cp);
        let cells = with_dyn_image!(&body, i => segment_cells(i.view(), &r.labels, &CellsParams::default()))?;
        let mut area = vec![0f64; cells.cells.count() as usize + 1];
        for &l in cells.cells.image().as_slice() {
            area[l as usize] += 1.0;
        }
        let cell_median = median(area[1..].iter().copied().filter(|&a| a > 0.0).collect());
        row += &format!(
            " {inner} | {:+.1} % | {:+.1} % | {m} | cells median {cell_median} px ({:+.1} %)",
            100.0 * ratio,
            100.0 * signed,
            100.0 * (cell_median / cp_cells - 1.0)
        );
        row += &format!(" | segmentation {:.2} s", seg_time.as_secs_f64());
        println!("{row}");
    }
    Ok(())
}
