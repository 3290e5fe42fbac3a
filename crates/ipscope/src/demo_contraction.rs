//! A synthetic brightfield video plate of beating hiPSC-cardiomyocyte sheets with known truth.
//!
//! 24 wells (rows B–C, columns 2–13), one multi-page 16-bit TIFF per well
//! (`CON01_B02_s1_w1.tif`, ImageJ description with `finterval`). Each well is a textured
//! cell sheet (a sum of oriented sinusoids, as the granular texture of a brightfield
//! monolayer) that contracts towards the field centre: the image at time t is the texture
//! sampled at c + (x − c)(1 + S · y(t − onset)), with S the peak strain and y the model
//! transient of [`ipscope_core::assays::calcium::model_transient`] (peak 1, rise τr, decay
//! τd), plus Gaussian noise. Every beat is independent, so the MUSCLEMOTION kinetics of y
//! (time to peak from 10 % of the rise, relaxation to 10 % above rest, contraction duration
//! between those) are exact and do not depend on the rate; for displacements well below the
//! texture's wavelength the image difference is proportional to S · y.
//!
//! Design: compound `CMPD-BRADY` in 8 concentrations × 2 replicates slows the rate as a Hill
//! curve from 60 to 30 bpm with a known EC50; 4 DMSO wells at 60 bpm; 2 wells at half the
//! strain (`CMPD-WEAK`, same rate and kinetics); 1 arrested well (sheet, no motion) and 1
//! DMSO well. `truth/wells.csv` holds each well's rate, kinetics and strain.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ipscope_core::assays::calcium::{model_ctd, model_transient};
use ipscope_io::timelapse::StackWriter;

use crate::{Error, Result};

/// Plate id in the file names.
pub const PLATE_ID: &str = "CON01";
/// The compound that slows the beat rate with a known EC50.
pub const COMPOUND: &str = "CMPD-BRADY";
/// True EC50 of the rate reduction, µM.
pub const EC50_UM: f64 = 0.3;
const HILL: f64 = 1.0;
/// Beat rate at zero and infinite concentration, bpm.
const RATE_TOP: f64 = 60.0;
const RATE_BOTTOM: f64 = 30.0;
const TAU_RISE: f64 = 0.1;
const TAU_DECAY: f64 = 0.15;
/// Peak strain of the sheet (relative shortening towards the centre).
const STRAIN: f64 = 0.025;
const CONCENTRATIONS: [f64; 8] = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0];

/// Size and timing of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractionDemoParams {
    pub seed: u64,
    /// Field width and height, pixels.
    pub size: usize,
    pub fps: f64,
    pub seconds: f64,
    /// Standard deviation of the Gaussian noise, grey levels (sheet mean 2000).
    pub noise: f64,
}

impl Default for ContractionDemoParams {
    fn default() -> Self {
        ContractionDemoParams {
            seed: 1,
            size: 48,
            fps: 100.0,
            seconds: 10.0,
            noise: 4.0,
        }
    }
}

/// What a well shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKind {
    Beating,
    Arrest,
}

/// The truth of one well.
#[derive(Debug, Clone, PartialEq)]
pub struct WellTruth {
    pub well: String,
    pub compound: String,
    pub concentration: f64,
    pub role: &'static str,
    pub kind: WellKind,
    /// Beats per minute (beating wells).
    pub rate_bpm: Option<f64>,
    /// Peak strain S (0 in the arrested well).
    pub strain: f64,
    /// MUSCLEMOTION kinetics of the model contraction, s: time to peak, relaxation time,
    /// contraction duration (beating wells).
    pub time_to_peak: Option<f64>,
    pub relaxation_time: Option<f64>,
    pub contraction_duration: Option<f64>,
    /// Peak times of every beat before the last frame, s.
    pub beats: Vec<f64>,
    /// Beats that have also relaxed to 10 % of their amplitude before the last frame (a
    /// beat cut by the end of the recording may or may not be prominent enough to count).
    pub complete_beats: usize,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct ContractionDemoSummary {
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

/// True beat rate of `CMPD-BRADY` at `conc` µM, bpm: a four-parameter Hill curve.
pub fn rate_at(conc: f64) -> f64 {
    let h = if conc > 0.0 {
        1.0 / (1.0 + (EC50_UM / conc).powf(HILL))
    } else {
        0.0
    };
    RATE_TOP + (RATE_BOTTOM - RATE_TOP) * h
}

/// MUSCLEMOTION kinetics of the model contraction: (time to peak, relaxation time,
/// contraction duration), s. The onset and the end of relaxation are the crossings of
/// 10 % of the amplitude, so the duration is the model's CTD90.
pub fn model_kinetics() -> (f64, f64, f64) {
    let duration = model_ctd(TAU_RISE, TAU_DECAY)[2];
    let peak = TAU_RISE * (1.0 + TAU_DECAY / TAU_RISE).ln();
    // Onset: the 10 % crossing of the rise (bisection on the rising flank).
    let (mut a, mut b) = (0.0, peak);
    for _ in 0..200 {
        let m = 0.5 * (a + b);
        if model_transient(m, TAU_RISE, TAU_DECAY) < 0.1 {
            a = m;
        } else {
            b = m;
        }
    }
    let ttp = peak - 0.5 * (a + b);
    (ttp, duration - ttp, duration)
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
                WellKind::Beating,
            ));
        }
    }
    for c in 10..=13 {
        out.push((w('B', c), "DMSO".into(), 0.0, "negative", WellKind::Beating));
    }
    out.push((
        w('C', 10),
        "CMPD-WEAK".into(),
        1.0,
        "positive",
        WellKind::Beating,
    ));
    out.push((
        w('C', 11),
        "CMPD-WEAK".into(),
        1.0,
        "positive",
        WellKind::Beating,
    ));
    out.push((
        w('C', 12),
        "CMPD-STOP".into(),
        1.0,
        "positive",
        WellKind::Arrest,
    ));
    out.push((
        w('C', 13),
        "DMSO".into(),
        0.0,
        "negative",
        WellKind::Beating,
    ));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes the plate into `dir` (created if needed): images, `layout.csv`, `truth/wells.csv`.
pub fn generate(dir: &Path, params: &ContractionDemoParams) -> Result<ContractionDemoSummary> {
    if !(params.fps > 0.0 && params.seconds > 0.0 && params.size >= 16 && params.noise >= 0.0) {
        return Err(Error::Invalid(
            "contraction demo: fps and seconds must be positive, size at least 16 and noise \
             not negative"
                .into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let truth_dir = dir.join("truth");
    std::fs::create_dir_all(&truth_dir).map_err(|e| Error::io(&truth_dir, e))?;
    let frames = (params.seconds * params.fps).round() as usize;
    let dt = 1.0 / params.fps;
    let n = params.size;
    let centre = (n as f64 - 1.0) / 2.0;
    let (ttp, relax, duration) = model_kinetics();
    let peak_s = TAU_RISE * (1.0 + TAU_DECAY / TAU_RISE).ln();
    let mut wells = Vec::new();
    let mut layout =
        String::from("Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role\n");
    let mut truth = String::from(
        "Metadata_Well,Kind,RateBpm,Strain,TimeToPeak,RelaxationTime,ContractionDuration,Beats,\
         CompleteBeats\n",
    );
    for (wi, (well, compound, conc, role, kind)) in design().into_iter().enumerate() {
        let mut rng = Rng(params.seed.wrapping_mul(1_000_003).wrapping_add(wi as u64));
        // Texture: oriented sinusoids of 7–14 px wavelength, random phase.
        let components: Vec<(f64, f64, f64, f64)> = (0..4)
            .map(|_| {
                let angle = std::f64::consts::PI * rng.uniform();
                let k = 2.0 * std::f64::consts::PI / (7.0 + 7.0 * rng.uniform());
                let phase = 2.0 * std::f64::consts::PI * rng.uniform();
                let amp = 150.0 + 150.0 * rng.uniform();
                (k * angle.cos(), k * angle.sin(), phase, amp)
            })
            .collect();
        let texture = |x: f64, y: f64| -> f64 {
            2000.0
                + components
                    .iter()
                    .map(|&(kx, ky, ph, a)| a * (kx * x + ky * y + ph).sin())
                    .sum::<f64>()
        };
        let rate = match (kind, compound.as_str()) {
            (WellKind::Arrest, _) => None,
            (_, COMPOUND) => Some(rate_at(conc)),
            _ => Some(RATE_TOP),
        };
        let strain = match (kind, compound.as_str()) {
            (WellKind::Arrest, _) => 0.0,
            (_, "CMPD-WEAK") => 0.5 * STRAIN,
            _ => STRAIN,
        };
        // At rest for at least 0.6 s before the first beat.
        let first = 0.6 + 0.3 * rng.uniform();
        let onsets: Vec<f64> = match rate {
            None => Vec::new(),
            Some(r) => {
                let period = 60.0 / r;
                let mut v = Vec::new();
                let mut t = first;
                while t < params.seconds {
                    v.push(t);
                    t += period;
                }
                v
            }
        };
        let y_at = |t: f64| -> f64 {
            onsets
                .iter()
                .rev()
                .find(|&&o| o <= t)
                .map_or(0.0, |&o| model_transient(t - o, TAU_RISE, TAU_DECAY))
        };
        let path = dir.join(format!("{PLATE_ID}_{well}_s1_w1.tif"));
        let mut writer = StackWriter::create(&path, n, n, frames, Some(dt))?;
        let mut buf = vec![0u16; n * n];
        for f in 0..frames {
            let scale = 1.0 + strain * y_at(f as f64 * dt);
            for (i, px) in buf.iter_mut().enumerate() {
                let (r, c) = ((i / n) as f64, (i % n) as f64);
                let v = texture(centre + (c - centre) * scale, centre + (r - centre) * scale)
                    + params.noise * rng.normal();
                *px = v.round().clamp(0.0, 65535.0) as u16;
            }
            writer.write_frame(&buf)?;
        }
        writer.finish()?;
        let last = (frames.max(1) - 1) as f64 * dt;
        let beats: Vec<f64> = onsets
            .iter()
            .map(|o| o + peak_s)
            .filter(|&p| p <= last)
            .collect();
        let complete_beats = onsets
            .iter()
            .filter(|&&o| o + peak_s - ttp + duration <= last)
            .count();
        let beating = rate.is_some();
        let some = |v: f64| beating.then_some(v);
        let _ = writeln!(layout, "{well},{compound},{conc},{role}");
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        let _ = writeln!(
            truth,
            "{well},{kind:?},{},{strain},{},{},{},{},{complete_beats}",
            opt(rate),
            opt(some(ttp)),
            opt(some(relax)),
            opt(some(duration)),
            beats.len()
        );
        wells.push(WellTruth {
            well,
            compound,
            concentration: conc,
            role,
            kind,
            rate_bpm: rate,
            strain,
            time_to_peak: some(ttp),
            relaxation_time: some(relax),
            contraction_duration: some(duration),
            beats,
            complete_beats,
        });
    }
    let layout_path = dir.join("layout.csv");
    std::fs::write(&layout_path, layout).map_err(|e| Error::io(&layout_path, e))?;
    let truth_csv = truth_dir.join("wells.csv");
    std::fs::write(&truth_csv, truth).map_err(|e| Error::io(&truth_csv, e))?;
    Ok(ContractionDemoSummary {
        dir: dir.to_path_buf(),
        layout: layout_path,
        truth_csv,
        wells,
        frames,
        fps: params.fps,
        channels: vec![("w1".to_string(), "BF".to_string())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_follows_the_design() {
        let (ttp, relax, dur) = model_kinetics();
        assert!(ttp > 0.0 && relax > ttp && (ttp + relax - dur).abs() < 1e-12);
        assert!((rate_at(EC50_UM) - 0.5 * (RATE_TOP + RATE_BOTTOM)).abs() < 1e-9);
        assert!(rate_at(0.0) == RATE_TOP && rate_at(1e6) < RATE_BOTTOM + 0.01);
        // The fastest beat is at rest (below 1 % of its peak) when the next one starts.
        assert!(model_transient(60.0 / RATE_TOP, TAU_RISE, TAU_DECAY) < 0.01);
    }
}
