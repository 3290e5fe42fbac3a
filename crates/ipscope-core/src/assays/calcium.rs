//! Cardiomyocyte calcium transients from a fluorescence time-lapse (Fluo-4, Cal-520,
//! GCaMP): beating region, field trace, ΔF/F0, beats and their kinetics.
//!
//! Steps:
//! 1. **Beating region.** The first frames (up to [`CalciumParams::mask_window_s`], at
//!    most [`CalciumParams::max_buffer_frames`]) form the window. The per-pixel temporal
//!    standard deviation of at most [`CalciumParams::mask_frames`] of them, evenly spaced
//!    (every ⌈window / `mask_frames`⌉-th frame from the first), is thresholded with Otsu
//!    (256 bins, as `skimage.filters.threshold_otsu`). Pixels above it are the beating
//!    region. The window's frames are either kept until then and dropped, or, when the
//!    reader can seek cheaply ([`TraceBuilder::preview_frames`]), the sampled frames are
//!    read first and reduced to running sums, and then every frame is read once, in
//!    order; either way memory does not grow with the number of frames, and the values
//!    are the same.
//! 2. **Field trace.** F(t) = mean over the beating pixels of frame t.
//! 3. **Baseline.** F0(t) = rolling [`CalciumParams::baseline_percentile`]-th percentile
//!    over [`CalciumParams::baseline_window_s`] (ignores transients), then
//!    exp(quadratic least-squares fit of its logarithm) (a smooth photobleaching curve, free
//!    of the steps the rolling percentile takes as diastoles enter its window).
//!    ΔF/F0 = (F − F0) / F0.
//! 4. **Beats.** `scipy.signal.find_peaks` on ΔF/F0 ([`crate::ops::signal::find_peaks`]) with
//!    `distance` = the refractory period and `prominence` ≥ max(`min_prominence`,
//!    `noise_k` · σ), σ the noise from the first differences. A peak that comes before the
//!    previous beat has recovered 90 % is an early-afterdepolarisation-like event (EAD) of
//!    that beat, not a beat.
//! 5. **Per beat** (`b` = baseline, median of ΔF/F0 over the `baseline_span_s` before the
//!    foot of the upstroke; `A` = peak − b): onset = time the upstroke crosses b + 10 % A
//!    (linear interpolation); time to peak = peak − onset; maximum upstroke velocity =
//!    largest dΔF/F0/dt between onset and peak; CTDx = time from onset to the first
//!    crossing after the peak of b + (100 − x) % A, i.e. x % recovered (x = 30, 50, 90);
//!    decay τ = −1/slope of ln(ΔF/F0 − b) against time between 30 % and 90 % recovery.
//!    A rise of more than `ead_rise` · A above the running minimum between peak and 90 %
//!    recovery is an EAD too.
//! 6. **Per field**: beat count, rate = 60 / mean RR (bpm), RR coefficient of variation,
//!    means of amplitude and CTDs, Fridericia CTD90c = CTD90 / RR^(1/3) (seconds, RR in
//!    seconds, as QTcF), EAD count, irregular rhythm (RR CV > `irregular_rr_cv`) and
//!    arrest (no beat) flags.

use crate::ops::label::{label, Connectivity};
use crate::ops::signal::{find_peaks, noise_sigma, percentile_mut, rolling_percentile, PeakParams};
use crate::ops::threshold::otsu;
use ipscope_image::ImageView;

/// Parameters of the calcium assay; defaults suit hiPSC-cardiomyocytes at 10–100 frames/s.
#[derive(Debug, Clone, PartialEq)]
pub struct CalciumParams {
    /// Seconds of frames used to find the beating region (at least two beats at 30 bpm).
    pub mask_window_s: f64,
    /// Upper bound on the frames kept in memory for the beating region.
    pub max_buffer_frames: usize,
    /// At most this many of the window's frames, evenly spaced, give the beating region's
    /// temporal standard deviation (every ⌈window / `mask_frames`⌉-th frame, from the
    /// first). 50 frames over 4 s sample a transient every 80 ms; a value at least the
    /// window uses every frame.
    pub mask_frames: usize,
    /// Window of the rolling baseline, seconds.
    pub baseline_window_s: f64,
    /// Percentile of the rolling baseline.
    pub baseline_percentile: f64,
    /// Refractory period: peaks closer than this are one beat (the higher), seconds.
    pub refractory_s: f64,
    /// Smallest prominence of a beat in ΔF/F0.
    pub min_prominence: f64,
    /// Smallest prominence of a beat in noise standard deviations.
    pub noise_k: f64,
    /// Span before the upstroke's foot whose median is a beat's baseline, seconds.
    pub baseline_span_s: f64,
    /// A rise of this fraction of the amplitude during the decay is an EAD-like event.
    pub ead_rise: f64,
    /// RR-interval coefficient of variation above which the rhythm is irregular.
    pub irregular_rr_cv: f64,
}

impl Default for CalciumParams {
    fn default() -> Self {
        CalciumParams {
            mask_window_s: 4.0,
            max_buffer_frames: 400,
            mask_frames: 50,
            baseline_window_s: 4.0,
            baseline_percentile: 10.0,
            refractory_s: 0.25,
            min_prominence: 0.02,
            noise_k: 6.0,
            baseline_span_s: 0.1,
            ead_rise: 0.1,
            irregular_rr_cv: 0.2,
        }
    }
}

/// Errors of the calcium and contraction assays.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    /// Fewer frames than an analysis needs.
    #[error("{frames} frame(s); at least {needed} are needed")]
    TooFewFrames { frames: usize, needed: usize },
    /// A frame with the wrong number of samples.
    #[error("frame {frame} has {got} samples, expected {expected}")]
    FrameLength {
        frame: usize,
        expected: usize,
        got: usize,
    },
    /// The frame interval is not a positive number of seconds.
    #[error("frame interval {0} s is not a positive number")]
    Interval(f64),
    /// A previewing builder ([`TraceBuilder::preview_frames`]) was given the frames in
    /// order before all the frames the beating region is learnt from.
    #[error("{frames} frame(s) of the beating region's preview were not pushed first")]
    PreviewMissing { frames: usize },
}

/// Pixel types a frame can hold; sums run in integers where they can.
pub trait Sample: Copy + Send + Sync {
    fn to_f32(self) -> f32;
    /// Sum of a run of samples.
    fn sum(run: &[Self]) -> f64;
    /// Appends a frame to the beating-region buffer: 8- and 16-bit frames as they are (a
    /// copy, no conversion), others as `f32` (as is the whole buffer once types mix).
    /// `capacity`: samples the buffer will hold.
    fn append(data: &[Self], buf: &mut Stored, capacity: usize);
    /// Whether the type is `u8` or `u16`: [`Sample::to_i32`] is exact and squared
    /// differences fit a `u32`.
    const SMALL_INT: bool = false;
    /// The value as `i32` (exact for `u8` and `u16`).
    fn to_i32(self) -> i32;
    /// Sum of the samples whose `mask` is 1 (the others' mask is 0; `ones` of them are 1),
    /// for types whose sums are exact integers (so equal to adding run by run); `None`
    /// otherwise.
    #[inline(always)]
    fn dense_sum(_data: &[Self], _mask: &[u8], _ones: usize) -> Option<f64> {
        None
    }
}

/// The beating-region buffer: the first frames back to back, in their sample type.
#[derive(Debug, Default)]
pub enum Stored {
    #[default]
    Empty,
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// Buffers and accumulators of finished builders, reused by the next series on the same
/// thread: the beating-region buffer is tens of MB per series, and fresh memory costs a
/// page fault (and the kernel zeroing the page) every 4 kB, more than decoding the frames.
/// Holds at most one buffer of each sample type per thread (the largest a series needed).
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) u8s: Vec<u8>,
    pub(crate) u16s: Vec<u16>,
    pub(crate) f32s: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// An empty vector from the thread's scratch (`pick` chooses which), with room for
/// `capacity` values.
pub(crate) fn take_scratch<T>(pick: fn(&mut Scratch) -> &mut Vec<T>, capacity: usize) -> Vec<T> {
    let mut v = SCRATCH
        .try_with(|s| std::mem::take(pick(&mut s.borrow_mut())))
        .unwrap_or_default();
    v.clear();
    v.reserve_exact(capacity);
    v
}

/// Gives a vector back to the thread's scratch (kept if larger than what is there).
pub(crate) fn give_scratch<T>(pick: fn(&mut Scratch) -> &mut Vec<T>, v: Vec<T>) {
    let _ = SCRATCH.try_with(|s| {
        let mut s = s.borrow_mut();
        let slot = pick(&mut s);
        if v.capacity() > slot.capacity() {
            *slot = v;
        }
    });
}

impl Stored {
    /// Appends `data` as `f32`, converting what is buffered when it is of another type.
    fn append_f32<T: Sample>(&mut self, data: &[T], capacity: usize) {
        let mut v = match std::mem::take(self) {
            Stored::F32(v) => v,
            Stored::Empty => take_scratch(|s| &mut s.f32s, capacity),
            Stored::U8(u) => {
                let mut v = take_scratch(|s| &mut s.f32s, capacity);
                v.extend(u.iter().map(|&x| f32::from(x)));
                give_scratch(|s| &mut s.u8s, u);
                v
            }
            Stored::U16(u) => {
                let mut v = take_scratch(|s| &mut s.f32s, capacity);
                v.extend(u.iter().map(|&x| f32::from(x)));
                give_scratch(|s| &mut s.u16s, u);
                v
            }
        };
        v.extend(data.iter().map(|x| x.to_f32()));
        *self = Stored::F32(v);
    }

    /// Empties the buffer, giving its memory back to the thread's scratch.
    fn recycle(&mut self) {
        match std::mem::take(self) {
            Stored::Empty => {}
            Stored::U8(v) => give_scratch(|s| &mut s.u8s, v),
            Stored::U16(v) => give_scratch(|s| &mut s.u16s, v),
            Stored::F32(v) => give_scratch(|s| &mut s.f32s, v),
        }
    }
}

/// Sum of a run of 8- or 16-bit samples: `u32` lanes over chunks that cannot overflow,
/// added up in `u64`. Exact, so equal to any other order of adding.
macro_rules! small_int_sample {
    ($t:ty, $chunk:expr, $variant:ident, $field:ident, $fast:expr) => {
        impl Sample for $t {
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn sum(run: &[Self]) -> f64 {
                let mut total = 0u64;
                for c in run.chunks($chunk) {
                    total += u64::from(c.iter().map(|&v| u32::from(v)).sum::<u32>());
                }
                total as f64
            }
            const SMALL_INT: bool = true;
            #[inline(always)]
            fn to_i32(self) -> i32 {
                i32::from(self)
            }
            /// Σ m·v = Σ m·(v − 2^15) + 2^15·Σ m ([`dense_offset_sum`]).
            #[inline(always)]
            fn dense_sum(data: &[Self], mask: &[u8], ones: usize) -> Option<f64> {
                let fast: fn(&[Self], &[u8]) -> Option<i64> = $fast;
                let total = fast(data, mask).unwrap_or_else(|| dense_offset_sum(data, mask));
                Some((total + (ones as i64) * (1 << 15)) as f64)
            }
            fn append(data: &[Self], buf: &mut Stored, capacity: usize) {
                match buf {
                    Stored::$variant(v) => v.extend_from_slice(data),
                    Stored::Empty => {
                        let mut v = take_scratch(|s| &mut s.$field, capacity);
                        v.extend_from_slice(data);
                        *buf = Stored::$variant(v);
                    }
                    other => other.append_f32(data, capacity),
                }
            }
        }
    };
}
// 2^16 samples of at most 2^16 − 1 (2^24 of at most 2^8 − 1) stay below 2^32.
small_int_sample!(u8, 1 << 24, U8, u8s, |_, _| None);
small_int_sample!(u16, 1 << 16, U16, u16s, dense_offset_sum_u16);

/// Σ m·(v − 2^15) of 16-bit values `v` and a 0/1 byte mask `m`, in `i32` over runs of 2^15
/// pixels (each term at most 2^15 in magnitude), added up in `i64`: exact. The reference
/// for [`dense_offset_sum_u16`]'s AVX2 loop.
#[inline(always)]
fn dense_offset_sum<T: Copy + Into<u16>>(data: &[T], mask: &[u8]) -> i64 {
    let mut total = 0i64;
    for (d, m) in data.chunks(1 << 15).zip(mask.chunks(1 << 15)) {
        total += i64::from(
            d.iter()
                .zip(m)
                .map(|(&v, &m)| i32::from((v.into() ^ 0x8000) as i16) * i32::from(m))
                .sum::<i32>(),
        );
    }
    total
}

/// [`dense_offset_sum`] of a 16-bit frame with AVX2 when the CPU has it (`None`
/// otherwise): 16 pixels per multiply-add (`vpmaddwd` of v − 2^15 against the mask widened
/// to 16 bits). The byte mask is half the traffic of a 16-bit one; the frame is read once.
fn dense_offset_sum_u16(data: &[u16], mask: &[u8]) -> Option<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return Some(unsafe { dense_offset_avx2(data, mask) });
        }
    }
    let _ = (data, mask);
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dense_offset_avx2(data: &[u16], mask: &[u8]) -> i64 {
    use std::arch::x86_64::*;
    let n = data.len().min(mask.len());
    let flip = _mm256_set1_epi16(i16::MIN);
    let mut total = 0i64;
    let mut start = 0;
    // Blocks of 2^16 pixels: each i32 lane of each accumulator adds 2^16 / 32 multiply-add
    // results of at most 2 · 2^15 in magnitude, below 2^31.
    while start + 32 <= n {
        let end = (start + (1 << 16)).min(n) / 32 * 32;
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = start;
        while i < end {
            // SAFETY: i + 32 <= end <= n, within both slices.
            let (d0, d1, m0, m1) = unsafe {
                (
                    _mm256_loadu_si256(data.as_ptr().add(i) as *const __m256i),
                    _mm256_loadu_si256(data.as_ptr().add(i + 16) as *const __m256i),
                    _mm_loadu_si128(mask.as_ptr().add(i) as *const __m128i),
                    _mm_loadu_si128(mask.as_ptr().add(i + 16) as *const __m128i),
                )
            };
            let p0 = _mm256_madd_epi16(_mm256_xor_si256(d0, flip), _mm256_cvtepu8_epi16(m0));
            let p1 = _mm256_madd_epi16(_mm256_xor_si256(d1, flip), _mm256_cvtepu8_epi16(m1));
            a0 = _mm256_add_epi32(a0, p0);
            a1 = _mm256_add_epi32(a1, p1);
            i += 32;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds 8 i32, one 256-bit store.
        unsafe {
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, _mm256_add_epi32(a0, a1));
        }
        total += lanes.iter().map(|&l| i64::from(l)).sum::<i64>();
        start = end;
    }
    total + dense_offset_sum(&data[start..n], &mask[start..n])
}

impl Sample for u32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn sum(run: &[Self]) -> f64 {
        run.iter().map(|&v| u64::from(v)).sum::<u64>() as f64
    }
    fn append(data: &[Self], buf: &mut Stored, capacity: usize) {
        buf.append_f32(data, capacity);
    }
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
}

impl Sample for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    /// Eight independent f64 lanes added in a fixed order (vectorises; deterministic, and
    /// exact, so equal to a sequential sum, for integer-valued data such as decoded
    /// 8/16-bit frames).
    #[inline(always)]
    fn sum(run: &[Self]) -> f64 {
        let mut lanes = [0.0f64; 8];
        let chunks = run.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f64::from(v);
            }
        }
        let mut s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
            + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
        for &v in rest {
            s += f64::from(v);
        }
        s
    }
    fn append(data: &[Self], buf: &mut Stored, capacity: usize) {
        match buf {
            Stored::F32(v) => v.extend_from_slice(data),
            other => other.append_f32(data, capacity),
        }
    }
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
}

crate::ops::dispatched! {
    /// Sum of the samples in `runs` ((start, len), row-major), or of those whose `dense`
    /// mask is 1 (`ones` of them) when it covers the frame and the type's sums are exact.
    fn masked_sum<T: Sample>(data: &[T], runs: &[(usize, usize)], dense: &[u8], ones: usize) -> f64 {
        if dense.len() == data.len() {
            if let Some(s) = T::dense_sum(data, dense, ones) {
                return s;
            }
        }
        let mut s = 0.0;
        for &(start, len) in runs {
            s += T::sum(&data[start..start + len]);
        }
        s
    }
}

crate::ops::dispatched! {
    /// Per-pixel temporal standard deviation of `k` frames of `n` samples stored back to
    /// back every `stride` frames (frames 0, `stride`, 2·`stride`, …), a block of pixels at
    /// a time (each frame's block one contiguous run; the sums stay in L1). 8/16-bit
    /// frames: sums and sums of squares in integers (exact, so equal to the f64 sums of
    /// any order); others: f64 sums of the `f32` value, each pixel's frames added in time
    /// order.
    fn temporal_sd<T: Sample>(frames: &[T], n: usize, k: usize, stride: usize) -> Vec<f32> {
        const BLOCK: usize = 2048;
        let mut sd = vec![0.0f32; n];
        let kf = k.max(1) as f64;
        let sd_of = |s: f64, q: f64| ((q / kf - (s / kf) * (s / kf)).max(0.0)).sqrt() as f32;
        // k · 65535 < 2^32 keeps the u32 sums exact. Squares add up in u32 while the
        // frames' maxima say they cannot overflow (12-bit cameras: hundreds of frames),
        // then move to u64; larger blocks (64 kB per frame) keep the reads sequential.
        if T::SMALL_INT && k <= 1 << 16 {
            const INT_BLOCK: usize = 32768;
            let mut sum = vec![0u32; INT_BLOCK];
            let (mut sq32, mut sq) = (vec![0u32; INT_BLOCK], vec![0u64; INT_BLOCK]);
            for (b, out) in sd.chunks_mut(INT_BLOCK).enumerate() {
                let (start, len) = (b * INT_BLOCK, out.len());
                let (sum, sq32, sq) = (&mut sum[..len], &mut sq32[..len], &mut sq[..len]);
                sum.fill(0);
                sq32.fill(0);
                sq.fill(0);
                let flush = |sq32: &mut [u32], sq: &mut [u64]| {
                    for (q, q32) in sq.iter_mut().zip(sq32.iter_mut()) {
                        *q += u64::from(*q32);
                        *q32 = 0;
                    }
                };
                let mut bound = 0u64;
                for f in (0..k).map(|f| f * stride) {
                    let data = &frames[f * n + start..f * n + start + len];
                    let max = data.iter().map(|&v| v.to_i32() as u32).max().unwrap_or(0);
                    let max_sq = u64::from(max) * u64::from(max);
                    if bound + max_sq > u64::from(u32::MAX) {
                        flush(sq32, sq);
                        bound = 0;
                    }
                    bound += max_sq;
                    for ((s, q), &v) in sum.iter_mut().zip(sq32.iter_mut()).zip(data) {
                        let v = v.to_i32() as u32;
                        *s += v;
                        *q += v * v;
                    }
                }
                flush(sq32, sq);
                for ((o, &s), &q) in out.iter_mut().zip(sum.iter()).zip(sq.iter()) {
                    *o = sd_of(f64::from(s), q as f64);
                }
            }
            return sd;
        }
        let (mut sum, mut sq) = (vec![0.0f64; BLOCK], vec![0.0f64; BLOCK]);
        for (b, out) in sd.chunks_mut(BLOCK).enumerate() {
            let (start, len) = (b * BLOCK, out.len());
            let (sum, sq) = (&mut sum[..len], &mut sq[..len]);
            sum.fill(0.0);
            sq.fill(0.0);
            for f in (0..k).map(|f| f * stride) {
                let data = &frames[f * n + start..f * n + start + len];
                for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(data) {
                    let v = f64::from(v.to_f32());
                    *s += v;
                    *q += v * v;
                }
            }
            for ((o, &s), &q) in out.iter_mut().zip(sum.iter()).zip(sq.iter()) {
                *o = sd_of(s, q);
            }
        }
        sd
    }
}

crate::ops::dispatched! {
    /// Adds one 8/16-bit frame to per-pixel running sums: `sum` and `sq32` in `u32`, `sq32`
    /// moved into `sq` first when the frame's maximum could overflow it (`bound`: the most
    /// `sq32` can hold now). Returns the new bound. The sums are [`temporal_sd`]'s, exactly.
    fn accumulate_int<T: Sample>(
        data: &[T],
        sum: &mut [u32],
        sq32: &mut [u32],
        sq: &mut [u64],
        bound: u64,
    ) -> u64 {
        let max = data.iter().map(|&v| v.to_i32() as u32).max().unwrap_or(0);
        let max_sq = u64::from(max) * u64::from(max);
        let mut bound = bound;
        if bound + max_sq > u64::from(u32::MAX) {
            for (q, q32) in sq.iter_mut().zip(sq32.iter_mut()) {
                *q += u64::from(*q32);
                *q32 = 0;
            }
            bound = 0;
        }
        for ((s, q), &v) in sum.iter_mut().zip(sq32.iter_mut()).zip(data) {
            let v = v.to_i32() as u32;
            *s += v;
            *q += v * v;
        }
        bound + max_sq
    }
}

crate::ops::dispatched! {
    /// Adds one frame to per-pixel `f64` running sums of its `f32` value (time order per
    /// pixel, as [`temporal_sd`]'s float path).
    fn accumulate_float<T: Sample>(data: &[T], sum: &mut [f64], sq: &mut [f64]) -> () {
        for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(data) {
            let v = f64::from(v.to_f32());
            *s += v;
            *q += v * v;
        }
    }
}

/// Per-pixel running sums of the preview frames of a previewing [`TraceBuilder`]: the same
/// sums [`temporal_sd`] forms over a buffer, formed while each frame is still in cache.
/// 8/16-bit frames add up in exact integers; the first frame of another type turns them
/// into `f64` (exact: integer sums below 2^53), as the buffer turns into `f32`.
#[derive(Debug, Default)]
enum RunningSd {
    #[default]
    Empty,
    Int {
        sum: Vec<u32>,
        sq32: Vec<u32>,
        sq: Vec<u64>,
        bound: u64,
    },
    Float {
        sum: Vec<f64>,
        sq: Vec<f64>,
    },
}

impl RunningSd {
    /// Adds a frame of `n` samples; `int_ok`: integer sums cannot overflow over the window.
    fn add<T: Sample>(&mut self, data: &[T], int_ok: bool) {
        let n = data.len();
        if matches!(self, RunningSd::Empty) {
            *self = if T::SMALL_INT && int_ok {
                RunningSd::Int {
                    sum: vec![0; n],
                    sq32: vec![0; n],
                    sq: vec![0; n],
                    bound: 0,
                }
            } else {
                RunningSd::Float {
                    sum: vec![0.0; n],
                    sq: vec![0.0; n],
                }
            };
        }
        if !T::SMALL_INT {
            if let RunningSd::Int { sum, sq32, sq, .. } = self {
                let sum = sum.iter().map(|&s| f64::from(s)).collect();
                let sq = sq
                    .iter()
                    .zip(sq32.iter())
                    .map(|(&q, &q32)| (q + u64::from(q32)) as f64)
                    .collect();
                *self = RunningSd::Float { sum, sq };
            }
        }
        match self {
            RunningSd::Int {
                sum,
                sq32,
                sq,
                bound,
            } => *bound = accumulate_int(data, sum, sq32, sq, *bound),
            RunningSd::Float { sum, sq } => accumulate_float(data, sum, sq),
            RunningSd::Empty => {}
        }
    }

    /// The temporal standard deviation over the `k` frames added (`n` pixels).
    fn sd(&self, n: usize, k: usize) -> Vec<f32> {
        let kf = k.max(1) as f64;
        let sd_of = |s: f64, q: f64| ((q / kf - (s / kf) * (s / kf)).max(0.0)).sqrt() as f32;
        match self {
            RunningSd::Empty => vec![0.0; n],
            RunningSd::Int { sum, sq32, sq, .. } => sum
                .iter()
                .zip(sq32.iter().zip(sq.iter()))
                .map(|(&s, (&q32, &q))| sd_of(f64::from(s), (q + u64::from(q32)) as f64))
                .collect(),
            RunningSd::Float { sum, sq } => sum
                .iter()
                .zip(sq.iter())
                .map(|(&s, &q)| sd_of(s, q))
                .collect(),
        }
    }
}

/// Builds the field trace from frames pushed one at a time (step 1–2 of the module docs).
#[derive(Debug)]
pub struct TraceBuilder {
    width: usize,
    height: usize,
    buffer_frames: usize,
    /// Every `stride`-th frame of the window gives the temporal SD.
    stride: usize,
    /// The first `buffered` frames, back to back.
    buffer: Stored,
    buffered: usize,
    /// The beating region as a mask of 1 (beating) and 0, when its runs are short enough
    /// that one pass over the frame beats adding run by run (8/16-bit frames).
    dense_mask: Vec<u8>,
    /// (start, len) runs of beating pixels, row-major.
    runs: Vec<(usize, usize)>,
    mask_pixels: usize,
    trace: Vec<f64>,
    pushed: usize,
    /// Smallest beating-region component kept as a cell; `None`: no per-cell traces.
    cell_min_area: Option<usize>,
    /// Runs of each cell (beating-region component), and each cell's trace.
    cell_runs: Vec<Vec<(usize, usize)>>,
    cell_traces: Vec<Vec<f64>>,
    /// [`TraceBuilder::preview_frames`]: running sums of the sampled frames, pushed
    /// first, instead of the buffer.
    preview: bool,
    running: RunningSd,
    /// Preview frames pushed so far.
    previewed: usize,
    /// The beating region is known.
    settled: bool,
}

/// The field trace and the beating region it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTrace {
    /// Mean raw intensity of the beating region, one value per frame.
    pub trace: Vec<f64>,
    /// Pixels in the beating region.
    pub mask_pixels: usize,
    /// Fraction of the field that is beating region.
    pub mask_fraction: f64,
    /// With [`TraceBuilder::per_cell`]: one trace per cell (8-connected component of the
    /// beating region of at least the minimum area, numbered in raster order), and its area.
    pub cells: Vec<Vec<f64>>,
    pub cell_areas: Vec<usize>,
}

impl TraceBuilder {
    /// A builder for frames of `width × height`, `frames` frames `interval_s` apart.
    pub fn new(
        width: usize,
        height: usize,
        frames: usize,
        interval_s: f64,
        params: &CalciumParams,
    ) -> Result<TraceBuilder, SignalError> {
        if !(interval_s.is_finite() && interval_s > 0.0) {
            return Err(SignalError::Interval(interval_s));
        }
        let want = (params.mask_window_s / interval_s).ceil() as usize;
        let buffer_frames = want
            .clamp(2, params.max_buffer_frames.max(2))
            .min(frames.max(1));
        let stride = buffer_frames.div_ceil(params.mask_frames.max(2));
        Ok(TraceBuilder {
            width,
            height,
            buffer_frames,
            stride,
            buffer: Stored::Empty,
            buffered: 0,
            dense_mask: Vec::new(),
            runs: Vec::new(),
            mask_pixels: 0,
            trace: Vec::with_capacity(frames),
            pushed: 0,
            cell_min_area: None,
            cell_runs: Vec::new(),
            cell_traces: Vec::new(),
            preview: false,
            running: RunningSd::Empty,
            previewed: 0,
            settled: false,
        })
    }

    /// Learns the beating region from the sampled frames of the window pushed first, in
    /// any order, with [`TraceBuilder::push_preview`], instead of keeping the window's
    /// frames: returns their indices (every ⌈window / `mask_frames`⌉-th frame from 0, the
    /// window fixed by the `frames` given to [`TraceBuilder::new`]). Each is reduced to
    /// running sums while still in cache, so memory is a few bytes per pixel whatever the
    /// window. Then every frame is pushed once, in order, with [`TraceBuilder::push`]. The
    /// beating region, the trace and every value are those of the buffering builder (test
    /// `previewing_equals_buffering`). Call before pushing any frame.
    pub fn preview_frames(&mut self) -> Vec<usize> {
        self.preview = true;
        (0..self.buffer_frames).step_by(self.stride).collect()
    }

    /// How many of the window's frames the temporal SD is formed from.
    fn sampled_count(&self) -> usize {
        self.buffer_frames.div_ceil(self.stride)
    }

    /// Adds a frame of the preview ([`TraceBuilder::preview_frames`]); the beating region
    /// settles with the last one.
    pub fn push_preview<T: Sample>(&mut self, data: &[T]) -> Result<(), SignalError> {
        let n = self.width * self.height;
        let want = self.sampled_count();
        if data.len() != n {
            return Err(SignalError::FrameLength {
                frame: self.previewed * self.stride,
                expected: n,
                got: data.len(),
            });
        }
        if self.settled || !self.preview {
            return Ok(());
        }
        // k · 65535 < 2^32 keeps the u32 sums exact (as in `temporal_sd`).
        self.running.add(data, want <= 1 << 16);
        self.previewed += 1;
        if self.previewed >= want {
            self.settle_mask();
        }
        Ok(())
    }

    /// Also traces every cell: each 8-connected component of the beating region with at
    /// least `min_area` pixels, as the mean of its pixels.
    pub fn per_cell(mut self, min_area: usize) -> TraceBuilder {
        self.cell_min_area = Some(min_area.max(1));
        self
    }

    fn push_cells<T: Sample>(&mut self, data: &[T]) {
        for (runs, trace) in self.cell_runs.iter().zip(self.cell_traces.iter_mut()) {
            let n: usize = runs.iter().map(|&(_, len)| len).sum();
            trace.push(masked_sum(data, runs, &[], 0) / n.max(1) as f64);
        }
    }

    /// Adds the next frame (row-major, `width * height` samples).
    pub fn push<T: Sample>(&mut self, data: &[T]) -> Result<(), SignalError> {
        let n = self.width * self.height;
        if data.len() != n {
            return Err(SignalError::FrameLength {
                frame: self.pushed,
                expected: n,
                got: data.len(),
            });
        }
        if self.preview && !self.settled {
            return Err(SignalError::PreviewMissing {
                frames: self.sampled_count() - self.previewed,
            });
        }
        self.pushed += 1;
        if self.settled {
            self.trace.push(self.masked_mean(data));
            if !self.cell_runs.is_empty() {
                self.push_cells(data);
            }
            return Ok(());
        }
        T::append(data, &mut self.buffer, self.buffer_frames * n);
        self.buffered += 1;
        if self.buffered >= self.buffer_frames {
            self.settle_mask();
        }
        Ok(())
    }

    #[inline]
    fn masked_mean<T: Sample>(&self, data: &[T]) -> f64 {
        masked_sum(data, &self.runs, &self.dense_mask, self.mask_pixels)
            / self.mask_pixels.max(1) as f64
    }

    /// [`Self::masked_mean`] and [`Self::push_cells`] of every frame of `frames` (frames
    /// of `width * height` samples back to back).
    fn trace_frames<T: Sample>(&mut self, frames: &[T]) {
        let n = self.width * self.height;
        let count = frames.len().checked_div(n).unwrap_or(self.buffered);
        for k in 0..count {
            let f = &frames[k * n..(k + 1) * n];
            let m = self.masked_mean(f);
            self.trace.push(m);
            if !self.cell_runs.is_empty() {
                self.push_cells(f);
            }
        }
    }

    /// Thresholds the temporal SD of the sampled frames (the preview's, or the buffered
    /// window's), traces the buffered frames and drops them.
    fn settle_mask(&mut self) {
        let n = self.width * self.height;
        self.settled = true;
        let sd: Vec<f32> = if self.preview {
            std::mem::take(&mut self.running).sd(n, self.previewed)
        } else {
            let (k, stride) = (self.buffered.div_ceil(self.stride), self.stride);
            match &self.buffer {
                Stored::Empty => vec![0.0; n],
                Stored::U8(d) => temporal_sd(d, n, k, stride),
                Stored::U16(d) => temporal_sd(d, n, k, stride),
                Stored::F32(d) => temporal_sd(d, n, k, stride),
            }
        };
        let threshold = ImageView::from_slice(&sd, self.width, self.height, self.width)
            .ok()
            .and_then(|v| otsu(v, 256));
        let mask: Vec<bool> = match threshold {
            Some(t) => sd.iter().map(|&v| v > t).collect(),
            None => vec![true; n],
        };
        let mask = if mask.iter().any(|&m| m) {
            mask
        } else {
            vec![true; n]
        };
        self.runs.clear();
        let mut i = 0;
        while i < n {
            if mask[i] {
                let start = i;
                while i < n && mask[i] {
                    i += 1;
                }
                self.runs.push((start, i - start));
            } else {
                i += 1;
            }
        }
        self.mask_pixels = mask.iter().filter(|&&m| m).count();
        // Short runs (a speckled region): one masked pass over the frame is cheaper.
        self.dense_mask = if self.runs.len() * 64 > n {
            mask.iter().map(|&m| u8::from(m)).collect()
        } else {
            Vec::new()
        };
        if let Some(min_area) = self.cell_min_area {
            self.settle_cells(&mask, min_area);
        }
        if self.preview {
            return;
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        match &buffer {
            Stored::Empty => {}
            Stored::U8(d) => self.trace_frames(d),
            Stored::U16(d) => self.trace_frames(d),
            Stored::F32(d) => self.trace_frames(d),
        }
        buffer.recycle();
        self.buffered = 0;
    }

    /// Cells: the components of the beating region with at least `min_area` pixels.
    fn settle_cells(&mut self, mask: &[bool], min_area: usize) {
        let Ok(view) = ImageView::from_slice(mask, self.width, self.height, self.width) else {
            return;
        };
        let labels = label(view, Connectivity::Eight);
        let count = labels.count() as usize;
        let mut runs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); count + 1];
        let lab = labels.image().as_slice();
        let mut i = 0;
        while i < lab.len() {
            let l = lab[i] as usize;
            let start = i;
            while i < lab.len() && lab[i] as usize == l && (i == start || i % self.width != 0) {
                i += 1;
            }
            if l > 0 {
                runs[l].push((start, i - start));
            }
        }
        self.cell_runs = runs
            .into_iter()
            .skip(1)
            .filter(|r| r.iter().map(|&(_, n)| n).sum::<usize>() >= min_area)
            .collect();
        self.cell_traces = vec![Vec::with_capacity(self.trace.capacity()); self.cell_runs.len()];
    }

    /// The trace of every frame pushed.
    pub fn finish(mut self) -> Result<FieldTrace, SignalError> {
        if self.pushed < 3 {
            return Err(SignalError::TooFewFrames {
                frames: self.pushed,
                needed: 3,
            });
        }
        if !self.settled {
            self.settle_mask();
        }
        let n = (self.width * self.height).max(1);
        Ok(FieldTrace {
            trace: self.trace,
            mask_pixels: self.mask_pixels,
            mask_fraction: self.mask_pixels as f64 / n as f64,
            cell_areas: self
                .cell_runs
                .iter()
                .map(|r| r.iter().map(|&(_, n)| n).sum())
                .collect(),
            cells: self.cell_traces,
        })
    }
}

/// One beat (times in seconds from the first frame; levels in ΔF/F0).
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    /// Frame index of the peak.
    pub peak_frame: usize,
    pub peak_time: f64,
    /// Upstroke crossing of 10 % amplitude.
    pub onset_time: f64,
    pub baseline: f64,
    pub amplitude: f64,
    pub time_to_peak: f64,
    /// Largest rate of rise between onset and peak, ΔF/F0 per second.
    pub max_upstroke_velocity: f64,
    pub ctd30: Option<f64>,
    pub ctd50: Option<f64>,
    pub ctd90: Option<f64>,
    pub decay_tau: Option<f64>,
    /// Time to the next beat's peak.
    pub rr_interval: Option<f64>,
    /// A secondary rise before 90 % recovery.
    pub ead: bool,
    pub prominence: f64,
}

/// Field-level summary of the beats.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CalciumSummary {
    pub beat_count: usize,
    /// Beats per minute from the mean RR interval; `None` below two beats.
    pub beat_rate_bpm: Option<f64>,
    pub rr_mean_s: Option<f64>,
    pub rr_cv: Option<f64>,
    pub amplitude_mean: Option<f64>,
    pub time_to_peak_mean: Option<f64>,
    pub max_upstroke_velocity_mean: Option<f64>,
    pub decay_tau_mean: Option<f64>,
    pub ctd30_mean: Option<f64>,
    pub ctd50_mean: Option<f64>,
    pub ctd90_mean: Option<f64>,
    /// Fridericia: CTD90 / RR^(1/3), both in seconds.
    pub ctd90c: Option<f64>,
    pub ead_count: usize,
    pub irregular: bool,
    pub arrest: bool,
    /// Noise of ΔF/F0 (standard deviation estimated from first differences).
    pub noise_sigma: f64,
    /// Duration of the recording, seconds.
    pub duration_s: f64,
}

/// ΔF/F0, beats and summary of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceAnalysis {
    pub f0: Vec<f64>,
    pub dff: Vec<f64>,
    pub beats: Vec<Beat>,
    pub summary: CalciumSummary,
}

fn mean(v: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Time where `x` crosses `level` between samples `i` and `i + 1` (linear interpolation).
fn cross(x: &[f64], i: usize, level: f64, dt: f64) -> f64 {
    let (a, b) = (x[i], x[i + 1]);
    let f = if b != a { (level - a) / (b - a) } else { 0.0 };
    (i as f64 + f.clamp(0.0, 1.0)) * dt
}

/// Steps 3–6 of the module docs on a raw field trace sampled every `dt` seconds.
pub fn analyze_trace(
    trace: &[f64],
    dt: f64,
    params: &CalciumParams,
) -> Result<TraceAnalysis, SignalError> {
    if !(dt.is_finite() && dt > 0.0) {
        return Err(SignalError::Interval(dt));
    }
    if trace.len() < 3 {
        return Err(SignalError::TooFewFrames {
            frames: trace.len(),
            needed: 3,
        });
    }
    let window = ((params.baseline_window_s / dt).round() as usize).max(3);
    let step = (window / 16).max(1);
    let rolling = rolling_percentile(trace, window, params.baseline_percentile, step);
    // The rolling percentile steps each time a diastole enters its window; a smooth
    // photobleaching curve through it keeps that ripple out of the decay.
    let f0 = smooth_log_quadratic(&rolling).unwrap_or(rolling);
    let dff: Vec<f64> = trace
        .iter()
        .zip(&f0)
        .map(|(&f, &b)| if b > 0.0 { (f - b) / b } else { 0.0 })
        .collect();
    let (beats, summary) = detect_beats(&dff, dt, params);
    Ok(TraceAnalysis {
        f0,
        dff,
        beats,
        summary,
    })
}

/// Steps 4–6 of the module docs on a baseline-corrected signal (ΔF/F0, or any signal whose
/// rest level is about 0) sampled every `dt` seconds.
pub fn detect_beats(
    signal: &[f64],
    dt: f64,
    params: &CalciumParams,
) -> (Vec<Beat>, CalciumSummary) {
    let n = signal.len();
    let sigma = noise_sigma(signal);
    let candidates = find_peaks(
        signal,
        &PeakParams {
            height: None,
            distance: Some((params.refractory_s / dt).max(1.0)),
            prominence: Some(params.min_prominence.max(params.noise_k * sigma)),
        },
    );
    let span = ((params.baseline_span_s / dt).round() as usize).max(2);
    let mut beats: Vec<Beat> = Vec::new();
    for c in &candidates {
        let p = c.index;
        // Before the previous beat has recovered 90 %: a secondary rise of that beat.
        if let Some(prev) = beats.last_mut() {
            let level = prev.baseline + 0.1 * prev.amplitude;
            if signal[prev.peak_frame..p].iter().all(|&v| v > level) {
                prev.ead = true;
                continue;
            }
        }
        let foot = c.left_base.min(p);
        let lo = foot.saturating_sub(span);
        let mut base_vals = signal[lo..=foot].to_vec();
        let baseline = percentile_mut(&mut base_vals, 50.0).unwrap_or(signal[foot]);
        let amplitude = signal[p] - baseline;
        if amplitude <= 0.0 {
            continue;
        }
        let level_on = baseline + 0.1 * amplitude;
        let mut j = p;
        while j > 0 && signal[j - 1] > level_on {
            j -= 1;
        }
        let onset_time = if j > 0 {
            cross(signal, j - 1, level_on, dt)
        } else {
            0.0
        };
        let max_upstroke_velocity = (j.saturating_sub(1)..p)
            .map(|i| (signal[i + 1] - signal[i]) / dt)
            .fold(0.0f64, f64::max);
        // Decay: first crossings of 30/50/90 % recovery, and EAD-like rises before 90 %.
        let levels = [0.7, 0.5, 0.1].map(|f| baseline + f * amplitude);
        let mut times: [Option<f64>; 3] = [None; 3];
        let mut running_min = signal[p];
        let mut ead = false;
        let mut k = p;
        let rise = (params.ead_rise * amplitude).max(params.noise_k * sigma);
        while k + 1 < n {
            for (t, &l) in times.iter_mut().zip(&levels) {
                if t.is_none() && signal[k] > l && signal[k + 1] <= l {
                    *t = Some(cross(signal, k, l, dt));
                }
            }
            if times[2].is_some() {
                break;
            }
            running_min = running_min.min(signal[k + 1]);
            if signal[k + 1] - running_min > rise {
                ead = true;
            }
            k += 1;
        }
        let ctd = |t: Option<f64>| t.map(|t| t - onset_time);
        // Decay τ from a straight-line fit of ln(ΔF/F0 − b) between 30 % and 90 % recovery.
        let decay_tau = match (times[0], times[2]) {
            (Some(t30), Some(t90)) => {
                let a = (t30 / dt).ceil() as usize;
                let b = ((t90 / dt).floor() as usize).min(n - 1);
                let pts: Vec<(f64, f64)> = (a..=b)
                    .filter(|&i| signal[i] - baseline > 0.0)
                    .map(|i| (i as f64 * dt, (signal[i] - baseline).ln()))
                    .collect();
                slope(&pts).and_then(|s| (s < 0.0).then(|| -1.0 / s))
            }
            _ => None,
        };
        let peak_time = p as f64 * dt;
        beats.push(Beat {
            peak_frame: p,
            peak_time,
            onset_time,
            baseline,
            amplitude,
            time_to_peak: peak_time - onset_time,
            max_upstroke_velocity,
            ctd30: ctd(times[0]),
            ctd50: ctd(times[1]),
            ctd90: ctd(times[2]),
            decay_tau,
            rr_interval: None,
            ead,
            prominence: c.prominence,
        });
    }
    for i in 1..beats.len() {
        let rr = beats[i].peak_time - beats[i - 1].peak_time;
        beats[i - 1].rr_interval = Some(rr);
    }
    let rr: Vec<f64> = beats.iter().filter_map(|b| b.rr_interval).collect();
    let rr_mean = mean(rr.iter().copied());
    let rr_cv = rr_mean.and_then(|m| {
        (rr.len() >= 2 && m > 0.0).then(|| {
            let var = rr.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / (rr.len() - 1) as f64;
            var.sqrt() / m
        })
    });
    let ctd90_mean = mean(beats.iter().filter_map(|b| b.ctd90));
    let summary = CalciumSummary {
        beat_count: beats.len(),
        beat_rate_bpm: rr_mean.and_then(|m| (m > 0.0).then(|| 60.0 / m)),
        rr_mean_s: rr_mean,
        rr_cv,
        amplitude_mean: mean(beats.iter().map(|b| b.amplitude)),
        time_to_peak_mean: mean(beats.iter().map(|b| b.time_to_peak)),
        max_upstroke_velocity_mean: mean(beats.iter().map(|b| b.max_upstroke_velocity)),
        decay_tau_mean: mean(beats.iter().filter_map(|b| b.decay_tau)),
        ctd30_mean: mean(beats.iter().filter_map(|b| b.ctd30)),
        ctd50_mean: mean(beats.iter().filter_map(|b| b.ctd50)),
        ctd90_mean,
        ctd90c: match (ctd90_mean, rr_mean) {
            (Some(c), Some(r)) if r > 0.0 => Some(c / r.cbrt()),
            _ => None,
        },
        ead_count: beats.iter().filter(|b| b.ead).count(),
        irregular: rr_cv.is_some_and(|cv| cv > params.irregular_rr_cv),
        arrest: beats.is_empty(),
        noise_sigma: sigma,
        duration_s: n as f64 * dt,
    };
    (beats, summary)
}

/// Asynchrony of the cells of a field: for every beat of the field trace, each cell's beat
/// whose onset is nearest the field beat's (within half the shortest RR interval, at most
/// 0.5 s) gives that cell's activation time relative to the field; the sample standard
/// deviation of those times over the cells (at least two) is the beat's asynchrony, and the
/// result is its mean over the beats (seconds). `None` when no beat has two cells.
pub fn asynchrony(field: &[Beat], cells: &[Vec<Beat>]) -> Option<f64> {
    let min_rr = field
        .iter()
        .filter_map(|b| b.rr_interval)
        .fold(f64::INFINITY, f64::min);
    let window = (0.5 * min_rr).min(0.5);
    let per_beat: Vec<f64> = field
        .iter()
        .filter_map(|fb| {
            let d: Vec<f64> = cells
                .iter()
                .filter_map(|cb| {
                    cb.iter()
                        .map(|b| b.onset_time - fb.onset_time)
                        .filter(|d| d.abs() <= window)
                        .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                })
                .collect();
            (d.len() >= 2).then(|| {
                let m = d.iter().sum::<f64>() / d.len() as f64;
                (d.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (d.len() - 1) as f64).sqrt()
            })
        })
        .collect();
    mean(per_beat)
}

/// exp of the least-squares quadratic through ln(x) (sample index scaled to −1..1): a
/// smooth photobleaching curve. `None` when a value is not positive or the fit is singular.
fn smooth_log_quadratic(x: &[f64]) -> Option<Vec<f64>> {
    let n = x.len();
    if n < 3 || x.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
        return None;
    }
    let u = |i: usize| 2.0 * i as f64 / (n - 1) as f64 - 1.0;
    // Normal equations for y = c0 + c1 u + c2 u².
    let mut m = [[0.0f64; 3]; 3];
    let mut r = [0.0f64; 3];
    for (i, &v) in x.iter().enumerate() {
        let p = [1.0, u(i), u(i) * u(i)];
        let y = v.ln();
        for a in 0..3 {
            r[a] += p[a] * y;
            for b in 0..3 {
                m[a][b] += p[a] * p[b];
            }
        }
    }
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut c = [0.0f64; 3];
    for (k, ck) in c.iter_mut().enumerate() {
        let mut mk = m;
        for row in 0..3 {
            mk[row][k] = r[row];
        }
        *ck = det(&mk) / d;
    }
    Some(
        (0..n)
            .map(|i| (c[0] + c[1] * u(i) + c[2] * u(i) * u(i)).exp())
            .collect(),
    )
}

/// Least-squares slope of y against x; `None` below three points.
fn slope(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The model transient of the demo and the tests: y(s) = N · (1 − e^(−s/τr)) · e^(−s/τd) for
/// s ≥ 0 (0 before), scaled so that its peak is 1.
pub fn model_transient(s: f64, tau_rise: f64, tau_decay: f64) -> f64 {
    if s <= 0.0 {
        return 0.0;
    }
    // Peak of (1 − e^(−s/τr)) e^(−s/τd) at s* = τr ln(1 + τd/τr).
    let sp = tau_rise * (1.0 + tau_decay / tau_rise).ln();
    let peak = (1.0 - (-sp / tau_rise).exp()) * (-sp / tau_decay).exp();
    (1.0 - (-s / tau_rise).exp()) * (-s / tau_decay).exp() / peak
}

/// CTD30/50/90 of [`model_transient`] by the definitions above (onset at 10 % of the rise),
/// found by bisection: the exact durations of the noise-free model.
pub fn model_ctd(tau_rise: f64, tau_decay: f64) -> [f64; 3] {
    let sp = tau_rise * (1.0 + tau_decay / tau_rise).ln();
    let f = |s: f64| model_transient(s, tau_rise, tau_decay);
    let bisect = |mut a: f64, mut b: f64, level: f64, rising: bool| {
        for _ in 0..200 {
            let m = 0.5 * (a + b);
            if (f(m) < level) == rising {
                a = m;
            } else {
                b = m;
            }
        }
        0.5 * (a + b)
    };
    let onset = bisect(0.0, sp, 0.1, true);
    let end = sp + 50.0 * tau_decay;
    [0.7, 0.5, 0.1].map(|l| bisect(sp, end, l, false) - onset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(rate_bpm: f64, tau_d: f64, fps: f64, seconds: f64, noise: f64) -> Vec<f64> {
        let period = 60.0 / rate_bpm;
        let n = (seconds * fps) as usize;
        let mut state = 12345u64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        (0..n)
            .map(|i| {
                let t = i as f64 / fps;
                let s = (t - 0.3).rem_euclid(period);
                let bleach = (-t / 60.0).exp();
                1000.0 * bleach * (1.0 + 0.8 * model_transient(s, 0.03, tau_d)) + noise * rnd()
            })
            .collect()
    }

    #[test]
    fn rate_and_ctd90_of_a_clean_model_trace() {
        let fps = 100.0;
        // τd = 0.15 s decays to 0.1 % within the 1 s period, so beats do not overlap.
        let trace = synthetic(60.0, 0.15, fps, 12.0, 2.0);
        let a = analyze_trace(&trace, 1.0 / fps, &CalciumParams::default()).unwrap();
        let truth = model_ctd(0.03, 0.15);
        assert!(a.summary.beat_count >= 11, "{:?}", a.summary);
        let rate = a.summary.beat_rate_bpm.unwrap();
        assert!((rate - 60.0).abs() < 0.6, "rate {rate}");
        let ctd90 = a.summary.ctd90_mean.unwrap();
        assert!(
            (ctd90 / truth[2] - 1.0).abs() < 0.03,
            "{ctd90} vs {}",
            truth[2]
        );
        assert_eq!(a.summary.ead_count, 0);
        assert!(!a.summary.irregular && !a.summary.arrest);
    }

    #[test]
    fn flat_trace_is_arrest_not_an_error() {
        let trace = synthetic(60.0, 0.25, 50.0, 6.0, 2.0)
            .iter()
            .enumerate()
            .map(|(i, _)| 1000.0 + ((i * 7919) % 13) as f64 * 0.1)
            .collect::<Vec<_>>();
        let a = analyze_trace(&trace, 0.02, &CalciumParams::default()).unwrap();
        assert!(a.summary.arrest);
        assert_eq!(a.summary.beat_count, 0);
        assert_eq!(a.summary.beat_rate_bpm, None);
    }

    #[test]
    fn one_frame_and_bad_interval_are_named_errors() {
        let p = CalciumParams::default();
        assert!(matches!(
            analyze_trace(&[1.0], 0.02, &p),
            Err(SignalError::TooFewFrames { frames: 1, .. })
        ));
        assert!(matches!(
            analyze_trace(&[1.0; 10], 0.0, &p),
            Err(SignalError::Interval(_))
        ));
        let mut b = TraceBuilder::new(4, 4, 1, 0.02, &p).unwrap();
        b.push(&[1u16; 16]).unwrap();
        assert!(matches!(
            b.finish(),
            Err(SignalError::TooFewFrames { frames: 1, .. })
        ));
        let mut b = TraceBuilder::new(4, 4, 5, 0.02, &p).unwrap();
        assert!(matches!(
            b.push(&[1u16; 15]),
            Err(SignalError::FrameLength { got: 15, .. })
        ));
    }

    /// `frames` frames of `w × h` at `dt` s: columns of 9 pixels alternately beating (the
    /// model transient, 0.8 s period) and still, `scale` times the level, plus noise 0–6
    /// from the xorshift `state`.
    fn model_video(
        w: usize,
        h: usize,
        frames: usize,
        dt: f64,
        scale: f64,
        state: &mut u64,
    ) -> Vec<Vec<f64>> {
        let mut rnd = || {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state
        };
        (0..frames)
            .map(|f| {
                let y = model_transient((f as f64 * dt).rem_euclid(0.8), 0.03, 0.15);
                (0..w * h)
                    .map(|i| {
                        let beating = ((i % w) / 9).is_multiple_of(2) && (i / w) > 3;
                        let v = if beating { 0.4 + 0.5 * y } else { 0.6 };
                        (scale * v).floor() + (rnd() % 7) as f64
                    })
                    .collect()
            })
            .collect()
    }

    /// The field trace computed directly: per-pixel SD of every `stride`-th of the first
    /// `window` frames from f64 sums, Otsu, then the mean of the beating pixels of every
    /// frame, added one pixel after the other.
    fn direct_trace(
        frames: &[Vec<f64>],
        w: usize,
        h: usize,
        window: usize,
        stride: usize,
    ) -> (Vec<f64>, usize) {
        let n = w * h;
        let k = window.div_ceil(stride) as f64;
        let (mut sum, mut sq) = (vec![0.0f64; n], vec![0.0f64; n]);
        for f in frames[..window].iter().step_by(stride) {
            for i in 0..n {
                sum[i] += f[i];
                sq[i] += f[i] * f[i];
            }
        }
        let sd: Vec<f32> = (0..n)
            .map(|i| ((sq[i] / k - (sum[i] / k) * (sum[i] / k)).max(0.0)).sqrt() as f32)
            .collect();
        let t = otsu(ImageView::from_slice(&sd, w, h, w).unwrap(), 256).unwrap();
        let mask: Vec<usize> = (0..n).filter(|&i| sd[i] > t).collect();
        let trace = frames
            .iter()
            .map(|f| mask.iter().map(|&i| f[i]).sum::<f64>() / mask.len() as f64)
            .collect();
        (trace, mask.len())
    }

    #[test]
    fn streamed_trace_equals_the_direct_computation_for_every_sample_type() {
        // 300 frames at 50 frames/s: the 4 s window (200 frames) is buffered, every 4th of
        // them (50) gives the SD, the rest streams; odd sizes so runs cross rows and sums
        // have remainders.
        let (w, h, frames, dt) = (37, 23, 300, 0.02);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let video = |scale: f64, state: &mut u64| model_video(w, h, frames, dt, scale, state);
        let p = CalciumParams::default();
        let run = |frames_f64: &[Vec<f64>], push: &dyn Fn(&mut TraceBuilder, &[f64])| {
            let mut b = TraceBuilder::new(w, h, frames, dt, &p).unwrap();
            for f in frames_f64 {
                push(&mut b, f);
            }
            b.finish().unwrap()
        };
        let v16 = video(60000.0, &mut state);
        let (want, pixels) = direct_trace(&v16, w, h, 200, 4);
        assert!(pixels > 0 && pixels < w * h, "{pixels}");
        let as_u16 = |b: &mut TraceBuilder, f: &[f64]| {
            b.push(&f.iter().map(|&v| v as u16).collect::<Vec<_>>())
                .unwrap()
        };
        // Twice on this thread: the second series reuses the first one's buffers.
        for _ in 0..2 {
            let got = run(&v16, &as_u16);
            assert_eq!(got.trace, want);
            assert_eq!(got.mask_pixels, pixels);
        }
        let as_f32 = |b: &mut TraceBuilder, f: &[f64]| {
            b.push(&f.iter().map(|&v| v as f32).collect::<Vec<_>>())
                .unwrap()
        };
        assert_eq!(run(&v16, &as_f32).trace, want);
        let as_u32 = |b: &mut TraceBuilder, f: &[f64]| {
            b.push(&f.iter().map(|&v| v as u32).collect::<Vec<_>>())
                .unwrap()
        };
        assert_eq!(run(&v16, &as_u32).trace, want);
        let v8 = video(240.0, &mut state);
        let (want8, _) = direct_trace(&v8, w, h, 200, 4);
        let as_u8 = |b: &mut TraceBuilder, f: &[f64]| {
            b.push(&f.iter().map(|&v| v as u8).collect::<Vec<_>>())
                .unwrap()
        };
        assert_eq!(run(&v8, &as_u8).trace, want8);
        // Frames of mixed types (one file per frame): the buffer turns into f32.
        let mixed = |b: &mut TraceBuilder, f: &[f64]| {
            if b.pushed % 3 == 1 {
                b.push(&f.iter().map(|&v| v as u16).collect::<Vec<_>>())
            } else {
                b.push(&f.iter().map(|&v| v as u8).collect::<Vec<_>>())
            }
            .unwrap()
        };
        assert_eq!(run(&v8, &mixed).trace, want8);
    }

    /// `push(builder, index, frame, preview)`: pushes a frame as some sample type.
    type Push = dyn Fn(&mut TraceBuilder, usize, &[f64], bool);

    /// Pushes `frames` into a previewing builder as a seeking reader would: the frames it
    /// asks for first, then every frame in order.
    fn previewed(
        mut b: TraceBuilder,
        frames: &[Vec<f64>],
        push: &Push,
    ) -> Result<FieldTrace, SignalError> {
        for i in b.preview_frames() {
            push(&mut b, i, &frames[i], true);
        }
        for (i, f) in frames.iter().enumerate() {
            push(&mut b, i, f, false);
        }
        b.finish()
    }

    #[test]
    fn previewing_equals_buffering() {
        // Window 200 frames (4 s at 50 frames/s); 300 frames stream past it, 120 end
        // before it fills. Values near 60,000 overflow 32-bit sums of squares every frame.
        let (w, h, dt) = (37, 23, 0.02);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let video = |frames: usize, scale: f64, state: &mut u64| {
            model_video(w, h, frames, dt, scale, state)
        };
        fn put<T: Sample>(b: &mut TraceBuilder, f: Vec<T>, preview: bool) {
            if preview {
                b.push_preview(&f).unwrap()
            } else {
                b.push(&f).unwrap()
            }
        }
        let u16s: &Push = &|b, _, f, p| put(b, f.iter().map(|&v| v as u16).collect(), p);
        let u8s: &Push = &|b, _, f, p| put(b, f.iter().map(|&v| v as u8).collect(), p);
        let f32s: &Push = &|b, _, f, p| put(b, f.iter().map(|&v| v as f32).collect(), p);
        let u32s: &Push = &|b, _, f, p| put(b, f.iter().map(|&v| v as u32).collect(), p);
        // Frames of mixed types (one file per frame); the same frame has the same type
        // when it is pushed again. Frame 150 is not sampled (stride 4): the buffer turns
        // into f32, the preview's sums stay integers, and both give the same SD.
        let mixed8: &Push = &|b, i, f, p| match i % 3 {
            1 => put(b, f.iter().map(|&v| v as u16).collect(), p),
            _ => put(b, f.iter().map(|&v| v as u8).collect(), p),
        };
        let mixed16: &Push = &|b, i, f, p| match i {
            150 | 152 => put(b, f.iter().map(|&v| v as f32).collect(), p),
            _ => put(b, f.iter().map(|&v| v as u16).collect(), p),
        };
        let v16 = video(300, 60000.0, &mut state);
        let v8 = video(300, 240.0, &mut state);
        let short = video(120, 3000.0, &mut state);
        let cases: [(&str, &[Vec<f64>], &Push); 7] = [
            ("u16", &v16, u16s),
            ("f32", &v16, f32s),
            ("u32", &v16, u32s),
            ("u8", &v8, u8s),
            ("u8 and u16", &v8, mixed8),
            ("u16 and f32", &v16, mixed16),
            ("shorter than the window", &short, u16s),
        ];
        // 50 sampled frames (the default), and every frame of the window.
        for mask_frames in [50, 400] {
            let p = CalciumParams {
                mask_frames,
                ..CalciumParams::default()
            };
            for (name, frames, push) in cases {
                let window = frames.len().min(200);
                let stride = window.div_ceil(mask_frames);
                for cells in [None, Some(4)] {
                    let new = || {
                        let b = TraceBuilder::new(w, h, frames.len(), dt, &p).unwrap();
                        match cells {
                            Some(a) => b.per_cell(a),
                            None => b,
                        }
                    };
                    let mut buffered = new();
                    for (i, f) in frames.iter().enumerate() {
                        push(&mut buffered, i, f, false);
                    }
                    let want = buffered.finish().unwrap();
                    let got = previewed(new(), frames, push).unwrap();
                    let what = format!("{name}, cells {cells:?}, mask_frames {mask_frames}");
                    assert_eq!(got, want, "{what}");
                    assert_eq!(got.trace.len(), frames.len(), "{what}");
                    let (direct, pixels) = direct_trace(frames, w, h, window, stride);
                    assert_eq!(got.trace, direct, "{what}");
                    assert_eq!(got.mask_pixels, pixels, "{what}");
                    assert!(cells.is_none() || !got.cells.is_empty(), "{what}");
                }
            }
        }
        // Frames in order before the preview is complete: a named error, not a trace from
        // a region learnt on part of the preview.
        let p = CalciumParams::default();
        let mut b = TraceBuilder::new(w, h, 300, dt, &p).unwrap();
        let first = b.preview_frames();
        assert_eq!(first, (0..200).step_by(4).collect::<Vec<_>>());
        let f0: Vec<u16> = v16[0].iter().map(|&v| v as u16).collect();
        b.push_preview(&f0).unwrap();
        assert_eq!(b.push(&f0), Err(SignalError::PreviewMissing { frames: 49 }));
    }

    #[test]
    fn dense_masked_sums_equal_the_reference() {
        // Lengths around the AVX2 loop's 32-pixel steps and 2^16-pixel blocks; values up to
        // 65535 (the offset's extremes) and a mask with every pattern.
        let mut rnd = crate::testing::xorshift(0x2545_F491_4F6C_DD1D);
        for n in [
            0,
            1,
            31,
            32,
            33,
            1000,
            (1 << 16) - 1,
            1 << 16,
            (1 << 16) + 47,
            200_003,
        ] {
            let data: Vec<u16> = (0..n)
                .map(|i| match i % 5 {
                    0 => 65535,
                    1 => 0,
                    _ => rnd() as u16,
                })
                .collect();
            let mask: Vec<u8> = (0..n).map(|_| u8::from(!rnd().is_multiple_of(3))).collect();
            let want: i64 = data
                .iter()
                .zip(&mask)
                .map(|(&v, &m)| i64::from(m) * (i64::from(v) - 32768))
                .sum();
            assert_eq!(dense_offset_sum(&data, &mask), want, "{n}");
            if let Some(got) = dense_offset_sum_u16(&data, &mask) {
                assert_eq!(got, want, "{n}");
            }
            let ones = mask.iter().filter(|&&m| m == 1).count();
            let plain: u64 = data
                .iter()
                .zip(&mask)
                .map(|(&v, &m)| u64::from(m) * u64::from(v))
                .sum();
            assert_eq!(
                u16::dense_sum(&data, &mask, ones),
                Some(plain as f64),
                "{n}"
            );
        }
    }

    #[test]
    fn beating_region_excludes_still_pixels() {
        // Left half beats, right half is still and brighter: the trace must beat.
        let (w, h, frames) = (16, 8, 200);
        let p = CalciumParams::default();
        let mut b = TraceBuilder::new(w, h, frames, 0.02, &p).unwrap();
        for f in 0..frames {
            let s = (f as f64 * 0.02).rem_euclid(1.0);
            let y = model_transient(s, 0.03, 0.2);
            let frame: Vec<u16> = (0..w * h)
                .map(|i| {
                    if i % w < w / 2 {
                        (500.0 * (1.0 + y)) as u16
                    } else {
                        3000
                    }
                })
                .collect();
            b.push(&frame).unwrap();
        }
        let t = b.finish().unwrap();
        assert_eq!(t.mask_pixels, w * h / 2);
        assert_eq!(t.trace.len(), frames);
        let max = t.trace.iter().cloned().fold(f64::MIN, f64::max);
        assert!((max - 1000.0).abs() < 5.0, "{max}");
    }
}
