//! Cardiomyocyte contraction from brightfield video by image difference, after MUSCLEMOTION
//! (Sala et al., *Circ. Res.* 2018, doi:10.1161/CIRCRESAHA.117.312067): the contraction
//! signal of frame t is the difference between frame t and a reference frame at rest,
//! divided by the reference's mean intensity. MUSCLEMOTION averages the absolute
//! difference; ipscope takes the root-mean-square difference D(t) and removes the noise
//! floor in quadrature, √(D² − D_rest²) (D_rest its 10th percentile): camera noise adds
//! its variance to D², so the result stays proportional to the displacement down to rest,
//! where the mean absolute difference flattens into the noise floor and cuts the start and
//! end of each contraction short.
//!
//! * **Reference frame**: among the first [`ContractionParams::reference_window_s`] seconds
//!   (at most `max_buffer_frames`, the only frames held in memory), the frame whose
//!   neighbourhood of ±`quiet_s` moves least (smallest summed frame-to-frame difference):
//!   sustained rest, not the instant of zero velocity at peak contraction. The reference's
//!   own value (0, its difference from itself) is replaced by the mean of its neighbours'.
//! * **Beats and kinetics**: [`crate::assays::calcium::detect_beats`] on √(D² − D_rest²):
//!   peaks by prominence with a refractory period; per beat, as
//!   MUSCLEMOTION defines them (levels relative to the rest level b before the beat and the
//!   amplitude A = peak − b): amplitude A (relative image difference), time to peak (from
//!   the rise through b + 10 % A to the peak), relaxation time (peak to the fall through
//!   b + 10 % A) and contraction duration (between those two crossings, their sum); rate
//!   (60 / mean peak-to-peak time) and RR CV. Crossings are interpolated linearly between
//!   frames and the peak time by a parabola through the three frames around the peak
//!   (MUSCLEMOTION uses whole frames); as in MUSCLEMOTION a crossing needs three
//!   consecutive frames below the level, so one noisy frame does not end a contraction.

use crate::assays::calcium::{
    detect_beats, give_scratch, take_scratch, Beat, CalciumParams, CalciumSummary, Sample,
    SignalError,
};
use crate::ops::signal::percentile_mut;

/// Parameters of the contraction assay.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractionParams {
    /// Seconds of frames searched for the reference frame.
    pub reference_window_s: f64,
    /// Upper bound on the frames kept in memory.
    pub max_buffer_frames: usize,
    /// Half-width of the neighbourhood that must be still around the reference, seconds.
    pub quiet_s: f64,
    /// Beat detection (its `min_prominence` applies to the relative image difference).
    pub beats: CalciumParams,
}

impl Default for ContractionParams {
    fn default() -> Self {
        ContractionParams {
            reference_window_s: 4.0,
            max_buffer_frames: 400,
            quiet_s: 0.1,
            beats: CalciumParams {
                min_prominence: 0.002,
                ..CalciumParams::default()
            },
        }
    }
}

crate::ops::dispatched! {
    /// Σ (frame − reference)² of 8/16-bit frames: each square an integer below 2^32, the
    /// sum exact in u64.
    fn squared_difference<T: Sample>(reference: &[i32], data: &[T]) -> u64 {
        reference
            .iter()
            .zip(data)
            .map(|(&a, &b)| {
                let d = (b.to_i32() - a).unsigned_abs();
                u64::from(d * d)
            })
            .sum::<u64>()
    }
}

/// Builds the contraction signal from frames pushed one at a time.
#[derive(Debug)]
pub struct MotionBuilder {
    n: usize,
    buffer_frames: usize,
    quiet: usize,
    /// The first `buffered` frames back to back (memory from the thread's scratch).
    buffer: Vec<f32>,
    buffered: usize,
    reference: Option<(usize, Vec<f32>, f64)>,
    /// The reference as integers when the frames are 8- or 16-bit.
    reference_int: Option<Vec<i32>>,
    signal: Vec<f64>,
    pushed: usize,
}

/// The contraction signal and the reference it was measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionTrace {
    /// √(mean (frame − reference)²) / mean(reference), one value per frame.
    pub signal: Vec<f64>,
    pub reference_frame: usize,
}

impl MotionBuilder {
    pub fn new(
        width: usize,
        height: usize,
        frames: usize,
        interval_s: f64,
        params: &ContractionParams,
    ) -> Result<MotionBuilder, SignalError> {
        if !(interval_s.is_finite() && interval_s > 0.0) {
            return Err(SignalError::Interval(interval_s));
        }
        let want = (params.reference_window_s / interval_s).ceil() as usize;
        Ok(MotionBuilder {
            n: width * height,
            buffer_frames: want
                .clamp(3, params.max_buffer_frames.max(3))
                .min(frames.max(1)),
            quiet: ((params.quiet_s / interval_s).round() as usize).max(1),
            buffer: Vec::new(),
            buffered: 0,
            reference: None,
            reference_int: None,
            signal: Vec::with_capacity(frames),
            pushed: 0,
        })
    }

    pub fn push<T: Sample>(&mut self, data: &[T]) -> Result<(), SignalError> {
        if data.len() != self.n {
            return Err(SignalError::FrameLength {
                frame: self.pushed,
                expected: self.n,
                got: data.len(),
            });
        }
        self.pushed += 1;
        if let Some((_, r, mean)) = &self.reference {
            let d: f64 = match &self.reference_int {
                // Every squared difference is an integer below 2^32 and the sum is exact
                // in u64: the sum a sequential f64 loop gives (exact below 2^53), in lanes.
                Some(ri) if T::SMALL_INT => squared_difference(ri, data) as f64,
                _ => r
                    .iter()
                    .zip(data)
                    .map(|(&a, &b)| {
                        let d = f64::from(b.to_f32() - a);
                        d * d
                    })
                    .sum(),
            };
            self.signal.push((d / self.n as f64).sqrt() / mean);
            return Ok(());
        }
        if self.buffered == 0 {
            self.buffer = take_scratch(|s| &mut s.f32s, self.buffer_frames * self.n);
        }
        self.buffer.extend(data.iter().map(|v| v.to_f32()));
        self.buffered += 1;
        if self.buffered >= self.buffer_frames {
            self.settle();
        }
        Ok(())
    }

    fn settle(&mut self) {
        let mad = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| f64::from((x - y).abs()))
                .sum::<f64>()
        };
        let k = self.buffered;
        let n = self.n;
        let buffer = std::mem::take(&mut self.buffer);
        let frame = |i: usize| &buffer[i * n..(i + 1) * n];
        let speed: Vec<f64> = (0..k)
            .map(|i| {
                if i == 0 {
                    0.0
                } else {
                    mad(frame(i), frame(i - 1))
                }
            })
            .collect();
        // Summed motion in a ±quiet neighbourhood; the first minimum wins (deterministic).
        let mut best = (f64::INFINITY, 0usize);
        for i in 0..k {
            let lo = i.saturating_sub(self.quiet).max(1);
            let hi = (i + self.quiet).min(k - 1);
            let s: f64 = speed[lo.min(hi)..=hi].iter().sum();
            if s < best.0 {
                best = (s, i);
            }
        }
        let r = frame(best.1).to_vec();
        let mean = (r.iter().map(|&v| f64::from(v)).sum::<f64>() / self.n.max(1) as f64).max(1e-12);
        let msd = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| {
                    let d = f64::from(x - y);
                    d * d
                })
                .sum::<f64>()
        };
        for i in 0..k {
            self.signal
                .push((msd(frame(i), &r) / self.n as f64).sqrt() / mean);
        }
        // The reference's difference from itself is 0, below the noise floor of every
        // other frame (a false rest level for beat baselines): the mean of its neighbours.
        let i = best.1;
        let neighbours: Vec<f64> = [i.checked_sub(1), Some(i + 1)]
            .into_iter()
            .flatten()
            .filter_map(|j| self.signal.get(j).copied())
            .collect();
        if !neighbours.is_empty() {
            self.signal[i] = neighbours.iter().sum::<f64>() / neighbours.len() as f64;
        }
        give_scratch(|s| &mut s.f32s, buffer);
        self.buffered = 0;
        // 8/16-bit frames give a reference of integers up to 65535.
        self.reference_int = r
            .iter()
            .all(|&v| v.fract() == 0.0 && (0.0..=65535.0).contains(&v))
            .then(|| r.iter().map(|&v| v as i32).collect());
        self.reference = Some((best.1, r, mean));
    }

    pub fn finish(mut self) -> Result<MotionTrace, SignalError> {
        if self.pushed < 3 {
            return Err(SignalError::TooFewFrames {
                frames: self.pushed,
                needed: 3,
            });
        }
        if self.reference.is_none() {
            self.settle();
        }
        Ok(MotionTrace {
            signal: self.signal,
            reference_frame: self.reference.map(|r| r.0).unwrap_or(0),
        })
    }
}

/// One contraction (times in seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Contraction {
    /// Frame index of the peak.
    pub peak_frame: usize,
    pub peak_time: f64,
    pub onset_time: f64,
    /// Relative image difference at peak above rest.
    pub amplitude: f64,
    pub time_to_peak: f64,
    /// 10 % rise to 90 % relaxation.
    pub contraction_duration: Option<f64>,
    /// Peak to 90 % relaxation.
    pub relaxation_time: Option<f64>,
    /// Time to the next contraction's peak (MUSCLEMOTION's peak-to-peak time).
    pub rr_interval: Option<f64>,
}

/// Beats and per-field summary of a contraction signal.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractionAnalysis {
    /// √(D² − D_rest²) per frame: the signal the contractions are measured on.
    pub motion: Vec<f64>,
    pub contractions: Vec<Contraction>,
    /// Rate, RR CV, irregular and arrest flags as for calcium.
    pub summary: CalciumSummary,
    pub amplitude_mean: Option<f64>,
    pub time_to_peak_mean: Option<f64>,
    pub contraction_duration_mean: Option<f64>,
    pub relaxation_time_mean: Option<f64>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Time of the peak at frame `p`: the vertex of the parabola through frames p − 1, p, p + 1
/// (within half a frame of `p`), so the time to peak and the relaxation time are not
/// quantised to whole frames; `p · dt` at the ends of the signal or on a flat top.
fn refined_peak_time(x: &[f64], p: usize, dt: f64) -> f64 {
    if p == 0 || p + 1 >= x.len() {
        return p as f64 * dt;
    }
    let (a, b, c) = (x[p - 1], x[p], x[p + 1]);
    let curvature = a - 2.0 * b + c;
    let shift = if curvature < 0.0 {
        (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    (p as f64 + shift) * dt
}

/// MUSCLEMOTION's 10 % crossings around the peak at frame `p`, searched between frames
/// `lo` and `hi` (the neighbouring peaks): the rise is where, going back from the peak,
/// three consecutive frames first lie below `level`; the end of relaxation is where, going
/// forward, three consecutive frames first do (one noisy frame is no crossing). Times are
/// interpolated linearly between the last frame above and the first below.
fn crossings(
    x: &[f64],
    p: usize,
    level: f64,
    lo: usize,
    hi: usize,
    dt: f64,
) -> (Option<f64>, Option<f64>) {
    let at = |i: usize| {
        let (a, b) = (x[i], x[i + 1]);
        let f = if b != a { (level - a) / (b - a) } else { 0.0 };
        (i as f64 + f.clamp(0.0, 1.0)) * dt
    };
    let below = |i: usize| x[i] < level;
    let onset = (lo + 2..=p)
        .rev()
        .find(|&l| below(l) && below(l - 1) && below(l - 2))
        .map(at);
    let end = (p.max(1)..hi.min(x.len()).saturating_sub(2))
        .find(|&l| below(l) && below(l + 1) && below(l + 2))
        .map(|l| at(l - 1));
    (onset, end)
}

/// Detects contractions in `signal` (from [`MotionBuilder`]) sampled every `dt` seconds.
pub fn analyze_contraction(
    signal: &[f64],
    dt: f64,
    params: &ContractionParams,
) -> Result<ContractionAnalysis, SignalError> {
    if !(dt.is_finite() && dt > 0.0) {
        return Err(SignalError::Interval(dt));
    }
    if signal.len() < 3 {
        return Err(SignalError::TooFewFrames {
            frames: signal.len(),
            needed: 3,
        });
    }
    let mut sorted = signal.to_vec();
    let rest = percentile_mut(&mut sorted, 10.0).unwrap_or(0.0);
    let centred: Vec<f64> = signal
        .iter()
        .map(|v| (v * v - rest * rest).max(0.0).sqrt())
        .collect();
    let (beats, summary) = detect_beats(&centred, dt, &params.beats);
    let contractions: Vec<Contraction> = beats
        .iter()
        .enumerate()
        .map(|(k, b): (usize, &Beat)| {
            let peak_time = refined_peak_time(&centred, b.peak_frame, dt);
            let lo = k.checked_sub(1).map_or(0, |j| beats[j].peak_frame);
            let hi = beats
                .get(k + 1)
                .map_or(centred.len() - 1, |next| next.peak_frame);
            let level = b.baseline + 0.1 * b.amplitude;
            let (onset, end) = crossings(&centred, b.peak_frame, level, lo, hi, dt);
            let onset_time = onset.unwrap_or(b.onset_time);
            Contraction {
                peak_frame: b.peak_frame,
                peak_time,
                onset_time,
                amplitude: b.amplitude,
                time_to_peak: peak_time - onset_time,
                contraction_duration: end.map(|e| e - onset_time),
                relaxation_time: end.map(|e| e - peak_time),
                rr_interval: b.rr_interval,
            }
        })
        .collect();
    Ok(ContractionAnalysis {
        amplitude_mean: mean(contractions.iter().map(|c| c.amplitude)),
        time_to_peak_mean: mean(contractions.iter().map(|c| c.time_to_peak)),
        contraction_duration_mean: mean(contractions.iter().filter_map(|c| c.contraction_duration)),
        relaxation_time_mean: mean(contractions.iter().filter_map(|c| c.relaxation_time)),
        contractions,
        summary,
        motion: centred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assays::calcium::{model_ctd, model_transient};

    /// A brightfield-like texture that slides sideways by up to 0.8 px with the model
    /// transient: the image difference grows linearly with the displacement.
    #[test]
    fn rate_and_durations_of_a_generated_beating_video() {
        let (w, h, fps, seconds) = (48usize, 32usize, 50.0, 8.0);
        let (tau_r, tau_d, period) = (0.04, 0.12, 1.25);
        let frames = (seconds * fps) as usize;
        let texture = |x: f64, y: f64| {
            1000.0 + 300.0 * (x * 0.7).sin() * (y * 0.5).cos() + 200.0 * (x * 0.23 + y * 0.31).sin()
        };
        let params = ContractionParams::default();
        let mut b = MotionBuilder::new(w, h, frames, 1.0 / fps, &params).unwrap();
        let mut state = 99u64;
        for f in 0..frames {
            let t = f as f64 / fps;
            let y = model_transient((t - 0.4).rem_euclid(period), tau_r, tau_d);
            let shift = 0.8 * y;
            let frame: Vec<f32> = (0..w * h)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let noise = (state % 1000) as f64 / 1000.0 - 0.5;
                    let (r, c) = ((i / w) as f64, (i % w) as f64);
                    (texture(c - shift, r) + 2.0 * noise) as f32
                })
                .collect();
            b.push(&frame).unwrap();
        }
        let m = b.finish().unwrap();
        let a = analyze_contraction(&m.signal, 1.0 / fps, &params).unwrap();
        let rate = a.summary.beat_rate_bpm.unwrap();
        assert!((rate / (60.0 / period) - 1.0).abs() < 0.02, "rate {rate}");
        // Every beat whose model peak falls before the last frame.
        let s_peak = tau_r * (1.0 + tau_d / tau_r).ln();
        let last = (frames - 1) as f64 / fps;
        let expected = (0..)
            .map(|k| 0.4 + k as f64 * period + s_peak)
            .take_while(|&t| t < last)
            .count();
        assert_eq!(a.contractions.len(), expected, "{:?}", a.summary);
        // The mean |difference| of a small shift is proportional to |shift|, so the
        // contraction signal has the model's shape and its durations.
        let truth = model_ctd(tau_r, tau_d)[2];
        let d = a.contraction_duration_mean.unwrap();
        assert!((d / truth - 1.0).abs() < 0.1, "duration {d} vs {truth}");
        assert!(a.relaxation_time_mean.unwrap() > 0.0);
        assert!(!a.summary.arrest);
    }

    #[test]
    fn integer_frames_give_the_signal_of_the_same_frames_as_floats() {
        // 8/16-bit frames take the integer path after the reference; the same values pushed
        // as f32 take the sequential f64 sum. Both must give the same bits, on a thread
        // whose scratch buffers were used by the series before.
        let (w, h, fps, frames) = (41usize, 29usize, 50.0, 300usize);
        let params = ContractionParams::default();
        let mut state = 7u64;
        let video: Vec<Vec<u16>> = (0..frames)
            .map(|f| {
                let y = model_transient((f as f64 / fps).rem_euclid(1.0), 0.04, 0.12);
                (0..w * h)
                    .map(|i| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let x = (i % w) as f64 - 3.0 * y;
                        (30000.0 + 20000.0 * (x * 0.7).sin()) as u16 + (state % 50) as u16
                    })
                    .collect()
            })
            .collect();
        let signal = |push: &dyn Fn(&mut MotionBuilder, &[u16])| {
            let mut b = MotionBuilder::new(w, h, frames, 1.0 / fps, &params).unwrap();
            for f in &video {
                push(&mut b, f);
            }
            b.finish().unwrap()
        };
        let floats = signal(&|b, f| {
            b.push(&f.iter().map(|&v| f32::from(v)).collect::<Vec<_>>())
                .unwrap()
        });
        let ints = signal(&|b, f| b.push(f).unwrap());
        let again = signal(&|b, f| b.push(f).unwrap());
        assert!(floats.signal.iter().all(|v| v.is_finite()));
        assert_eq!(ints, floats);
        assert_eq!(again, floats);
    }

    #[test]
    fn peak_time_is_the_vertex_of_a_sampled_parabola() {
        // y = 1 − (t − 0.537)², sampled every 0.1 s: the peak frame is 5, the vertex 0.537.
        let x: Vec<f64> = (0..10)
            .map(|i| 1.0 - (i as f64 * 0.1 - 0.537).powi(2))
            .collect();
        assert!((refined_peak_time(&x, 5, 0.1) - 0.537).abs() < 1e-12);
        assert_eq!(refined_peak_time(&x, 0, 0.1), 0.0);
        assert_eq!(refined_peak_time(&[1.0, 1.0, 1.0], 1, 0.1), 0.1);
    }

    #[test]
    fn still_video_is_arrest_and_one_frame_is_an_error() {
        let params = ContractionParams::default();
        let mut b = MotionBuilder::new(4, 4, 100, 0.02, &params).unwrap();
        for f in 0..100u16 {
            b.push(&[1000u16 + f % 2; 16]).unwrap();
        }
        let m = b.finish().unwrap();
        let a = analyze_contraction(&m.signal, 0.02, &params).unwrap();
        assert!(a.summary.arrest && a.contractions.is_empty());
        let mut b = MotionBuilder::new(4, 4, 1, 0.02, &params).unwrap();
        b.push(&[1u16; 16]).unwrap();
        assert!(matches!(
            b.finish(),
            Err(SignalError::TooFewFrames { frames: 1, .. })
        ));
    }
}
