//! A synthetic calcium time-lapse plate of hiPSC-cardiomyocytes with known truth.
//!
//! 37 wells (rows B–D, columns 2–13, and E02), one multi-page 16-bit TIFF per well
//! (`CAL01_B02_s1_w1.tif`, ImageJ description with `finterval`). Each well is a field of
//! Gaussian "cells" on a dim background whose fluorescence follows
//! F = bleach(t) · (background + cells(x − motion(t)) · (1 + A · y(t − onset))) + noise,
//! with y the model transient of [`ipscope_core::assays::calcium::model_transient`]
//! (peak 1, rise τr, decay τd), photobleaching e^(−t/40 s), Gaussian noise and a sub-pixel
//! sideways motion proportional to y. Every beat is independent (the previous transient
//! ends at the next onset), so CTD30/50/90 of the model are exact
//! ([`ipscope_core::assays::calcium::model_ctd`]).
//!
//! Design: 4 DMSO wells (negative) at 50 bpm; compound `CMPD-QT` in 8 concentrations ×
//! 2 replicates at 40 bpm whose CTD90 rises as a Hill curve with a known EC50; 2 wells with
//! early-afterdepolarisation-like secondary rises (`E-4031`), 1 irregular rhythm, 1
//! arrested (cells, no beats), 1 without cells, and the rest DMSO. Well E02 (`CMPD-DESYNC`)
//! has four separate cells at 50 bpm whose beats start [`ASYNC_OFFSET_S`] apart (cell k at
//! k × offset, raster order): its asynchrony (SD of the cells' activation times) is known.
//! `truth/wells.csv` holds each well's rate, CTDs, flags and asynchrony.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ipscope_core::assays::calcium::{model_ctd, model_transient};
use ipscope_io::timelapse::StackWriter;

use crate::{Error, Result};

/// Plate id in the file names.
pub const PLATE_ID: &str = "CAL01";
/// The compound whose CTD90 prolongation has a known EC50.
pub const COMPOUND: &str = "CMPD-QT";
/// True EC50 of CTD90 prolongation, µM.
pub const EC50_UM: f64 = 0.3;
const HILL: f64 = 1.0;
/// CTD90 at zero and infinite concentration, seconds.
const CTD90_BOTTOM: f64 = 0.40;
const CTD90_TOP: f64 = 0.72;
const TAU_RISE: f64 = 0.03;
const CONCENTRATIONS: [f64; 8] = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0];
/// Delay between the activations of successive cells of the asynchronous well, s.
pub const ASYNC_OFFSET_S: f64 = 0.05;
const ASYNC_CELLS: usize = 4;

/// Size and timing of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct CalciumDemoParams {
    pub seed: u64,
    /// Field width and height, pixels.
    pub size: usize,
    pub fps: f64,
    pub seconds: f64,
}

impl Default for CalciumDemoParams {
    fn default() -> Self {
        CalciumDemoParams {
            seed: 1,
            size: 40,
            fps: 40.0,
            seconds: 9.0,
        }
    }
}

/// What a well shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKind {
    Regular,
    Ead,
    Irregular,
    Arrest,
    NoCells,
    /// Four separate cells beating regularly with staggered activation.
    Async,
}

/// The truth of one well.
#[derive(Debug, Clone, PartialEq)]
pub struct WellTruth {
    pub well: String,
    pub compound: String,
    pub concentration: f64,
    pub role: &'static str,
    pub kind: WellKind,
    /// Beats per minute (regular and EAD wells; the mean rate of the irregular well).
    pub rate_bpm: Option<f64>,
    /// Decay time constant of the model transient, s.
    pub tau_decay: f64,
    /// Model CTD30/50/90, s (regular and EAD wells; the EAD bump lengthens the real one).
    pub ctd: Option<[f64; 3]>,
    /// Peak times of every beat, s.
    pub beats: Vec<f64>,
    /// Activation delay of each cell (the asynchronous well; empty elsewhere), s.
    pub cell_offsets: Vec<f64>,
    /// Sample SD of `cell_offsets` (the asynchronous well), s.
    pub asynchrony: Option<f64>,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct CalciumDemoSummary {
    pub dir: PathBuf,
    pub layout: PathBuf,
    pub truth_csv: PathBuf,
    pub wells: Vec<WellTruth>,
    pub frames: usize,
    pub fps: f64,
    /// Raw channel id → name, for `--channel`.
    pub channels: Vec<(String, String)>,
}

/// Deterministic generator (SplitMix64), independent of any crate's RNG.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The decay τ that gives the model transient a CTD90 of `ctd90` seconds (bisection).
pub fn tau_for_ctd90(ctd90: f64) -> f64 {
    let (mut a, mut b) = (0.01, 2.0);
    for _ in 0..100 {
        let m = 0.5 * (a + b);
        if model_ctd(TAU_RISE, m)[2] < ctd90 {
            a = m;
        } else {
            b = m;
        }
    }
    0.5 * (a + b)
}

/// True CTD90 of `CMPD-QT` at `conc` µM: a four-parameter Hill curve.
pub fn ctd90_at(conc: f64) -> f64 {
    let h = if conc > 0.0 {
        1.0 / (1.0 + (EC50_UM / conc).powf(HILL))
    } else {
        0.0
    };
    CTD90_BOTTOM + (CTD90_TOP - CTD90_BOTTOM) * h
}

fn design() -> Vec<(String, String, f64, &'static str, WellKind)> {
    let mut out = Vec::new();
    let w = |r: char, c: u32| format!("{r}{c:02}");
    for (i, &conc) in CONCENTRATIONS.iter().enumerate() {
        for row in ['B', 'C'] {
            out.push((
                w(row, 2 + i as u32),
                COMPOUND.to_string(),
                conc,
                "treated",
                WellKind::Regular,
            ));
        }
    }
    for (c, kind, compound, conc, role) in [
        (10, WellKind::Regular, "DMSO", 0.0, "negative"),
        (11, WellKind::Regular, "DMSO", 0.0, "negative"),
        (12, WellKind::Regular, "DMSO", 0.0, "negative"),
        (13, WellKind::Regular, "DMSO", 0.0, "negative"),
    ] {
        out.push((w('B', c), compound.to_string(), conc, role, kind));
    }
    for (c, kind, compound, conc, role) in [
        (10, WellKind::Ead, "E-4031", 0.1, "positive"),
        (11, WellKind::Ead, "E-4031", 0.1, "positive"),
        (12, WellKind::Irregular, "CMPD-ARR", 1.0, "positive"),
        (13, WellKind::Arrest, "CMPD-STOP", 1.0, "positive"),
    ] {
        out.push((w('C', c), compound.to_string(), conc, role, kind));
    }
    for c in 2..=13u32 {
        let (kind, compound, role) = if c == 13 {
            (WellKind::NoCells, "none", "empty")
        } else {
            (WellKind::Regular, "DMSO", "negative")
        };
        out.push((w('D', c), compound.to_string(), 0.0, role, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // After the sort and the others: the wells above keep their index and so their seed.
    out.push((
        w('E', 2),
        "CMPD-DESYNC".to_string(),
        1.0,
        "treated",
        WellKind::Async,
    ));
    out
}

/// Writes the plate into `dir` (created if needed): images, `layout.csv`, `truth/wells.csv`.
pub fn generate(dir: &Path, params: &CalciumDemoParams) -> Result<CalciumDemoSummary> {
    if !(params.fps > 0.0 && params.seconds > 0.0 && params.size >= 8) {
        return Err(Error::Invalid(
            "calcium demo: fps and seconds must be positive and size at least 8".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let truth_dir = dir.join("truth");
    std::fs::create_dir_all(&truth_dir).map_err(|e| Error::io(&truth_dir, e))?;
    let frames = (params.seconds * params.fps).round() as usize;
    let dt = 1.0 / params.fps;
    let n = params.size;
    let mut wells = Vec::new();
    let mut layout =
        String::from("Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role\n");
    let mut truth =
        String::from("Metadata_Well,Kind,RateBpm,CTD30,CTD50,CTD90,Beats,TauDecay,Asynchrony\n");
    for (wi, (well, compound, conc, role, kind)) in design().into_iter().enumerate() {
        let mut rng = Rng(params.seed.wrapping_mul(1_000_003).wrapping_add(wi as u64));
        // Cells: a few Gaussian blobs; their x-derivative gives the sub-pixel motion.
        let mut cells = vec![0.0f64; n * n];
        let mut dcells = vec![0.0f64; n * n];
        // The asynchronous well: separate cells on a 2 × 2 grid, each with its own delay.
        let offsets: Vec<f64> = if kind == WellKind::Async {
            (0..ASYNC_CELLS)
                .map(|k| k as f64 * ASYNC_OFFSET_S)
                .collect()
        } else {
            Vec::new()
        };
        let async_cells: Vec<Vec<f64>> = (0..offsets.len())
            .map(|k| {
                let (cy, cx) = (
                    n as f64 * (0.25 + 0.5 * (k / 2) as f64),
                    n as f64 * (0.25 + 0.5 * (k % 2) as f64),
                );
                (0..n * n)
                    .map(|i| {
                        let (dy, dx) = ((i / n) as f64 - cy, (i % n) as f64 - cx);
                        1200.0 * (-(dx * dx + dy * dy) / (2.0 * 3.0 * 3.0)).exp()
                    })
                    .collect()
            })
            .collect();
        if !matches!(kind, WellKind::NoCells | WellKind::Async) {
            for _ in 0..5 {
                let (cy, cx) = (rng.uniform() * n as f64, rng.uniform() * n as f64);
                let s = 3.0 + 2.0 * rng.uniform();
                let amp = 900.0 + 600.0 * rng.uniform();
                for r in 0..n {
                    for c in 0..n {
                        let (dy, dx) = (r as f64 - cy, c as f64 - cx);
                        let g = amp * (-(dx * dx + dy * dy) / (2.0 * s * s)).exp();
                        cells[r * n + c] += g;
                        dcells[r * n + c] += -g * dx / (s * s);
                    }
                }
            }
        }
        let ctd90 = if compound == COMPOUND {
            ctd90_at(conc)
        } else {
            CTD90_BOTTOM
        };
        let tau_decay = tau_for_ctd90(ctd90);
        let period = if compound == COMPOUND { 1.5 } else { 1.2 };
        let first = 0.2 + 0.3 * rng.uniform();
        let onsets: Vec<f64> = match kind {
            WellKind::Arrest | WellKind::NoCells => Vec::new(),
            WellKind::Irregular => {
                let mut t = first;
                let mut v = Vec::new();
                while t < params.seconds {
                    v.push(t);
                    t += 0.8 + 1.4 * rng.uniform();
                }
                v
            }
            _ => {
                let mut v = Vec::new();
                let mut t = first;
                while t < params.seconds {
                    v.push(t);
                    t += period;
                }
                v
            }
        };
        let amplitude = 1.5;
        let sp = TAU_RISE * (1.0 + tau_decay / TAU_RISE).ln();
        let y_at = |t: f64| -> f64 {
            let Some(&o) = onsets.iter().rev().find(|&&o| o <= t) else {
                return 0.0;
            };
            let s = t - o;
            let mut y = model_transient(s, TAU_RISE, tau_decay);
            if kind == WellKind::Ead {
                y += 0.4 * model_transient(s - 0.3, 0.03, 0.1);
            }
            y
        };
        let path = dir.join(format!("{PLATE_ID}_{well}_s1_w1.tif"));
        let mut writer = StackWriter::create(&path, n, n, frames, Some(dt))?;
        let mut buf = vec![0u16; n * n];
        for f in 0..frames {
            let t = f as f64 * dt;
            let y = y_at(t);
            let bleach = (-t / 40.0).exp();
            let motion = 0.4 * y;
            let ys: Vec<f64> = offsets.iter().map(|o| y_at(t - o)).collect();
            for (i, px) in buf.iter_mut().enumerate() {
                let c = (cells[i] - motion * dcells[i]).max(0.0);
                let staggered: f64 = async_cells
                    .iter()
                    .zip(&ys)
                    .map(|(g, y)| g[i] * (1.0 + amplitude * y))
                    .sum();
                let v =
                    bleach * (250.0 + c * (1.0 + amplitude * y) + staggered) + 12.0 * rng.normal();
                *px = v.round().clamp(0.0, 65535.0) as u16;
            }
            writer.write_frame(&buf)?;
        }
        writer.finish()?;
        let beats: Vec<f64> = onsets
            .iter()
            .map(|o| o + sp)
            .filter(|&p| p < frames as f64 * dt)
            .collect();
        let rate_bpm = match kind {
            WellKind::Regular | WellKind::Ead | WellKind::Async => Some(60.0 / period),
            WellKind::Irregular if beats.len() > 1 => {
                Some(60.0 * (beats.len() - 1) as f64 / (beats[beats.len() - 1] - beats[0]))
            }
            _ => None,
        };
        let ctd = matches!(
            kind,
            WellKind::Regular | WellKind::Ead | WellKind::Irregular
        )
        .then(|| model_ctd(TAU_RISE, tau_decay));
        let asynchrony = (offsets.len() > 1).then(|| {
            let m = offsets.iter().sum::<f64>() / offsets.len() as f64;
            (offsets.iter().map(|o| (o - m) * (o - m)).sum::<f64>() / (offsets.len() - 1) as f64)
                .sqrt()
        });
        let _ = writeln!(layout, "{well},{compound},{conc},{role}");
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        let _ = writeln!(
            truth,
            "{well},{kind:?},{},{},{},{},{},{tau_decay:.6},{}",
            opt(rate_bpm),
            opt(ctd.map(|c| c[0])),
            opt(ctd.map(|c| c[1])),
            opt(ctd.map(|c| c[2])),
            beats.len(),
            opt(asynchrony)
        );
        wells.push(WellTruth {
            well,
            compound,
            concentration: conc,
            role,
            kind,
            rate_bpm,
            tau_decay,
            ctd,
            beats,
            cell_offsets: offsets,
            asynchrony,
        });
    }
    let layout_path = dir.join("layout.csv");
    std::fs::write(&layout_path, layout).map_err(|e| Error::io(&layout_path, e))?;
    let truth_csv = truth_dir.join("wells.csv");
    std::fs::write(&truth_csv, truth).map_err(|e| Error::io(&truth_csv, e))?;
    Ok(CalciumDemoSummary {
        dir: dir.to_path_buf(),
        layout: layout_path,
        truth_csv,
        wells,
        frames,
        fps: params.fps,
        channels: vec![("w1".to_string(), "Calcium".to_string())],
    })
}
