//! CellProfiler's `MeasureObjectIntensity` for every object: one pass over the objects' runs
//! of pixels, which are found once per label image ([`ObjectRuns`]) and shared by the channels.
//!
//! Pixel values are on CellProfiler's scale (divided by the type's [`Pixel::MAX`]).
//! Definitions (CellProfiler 4 `measureobjectintensity.py`, as packaged by cp-measure with
//! `legacy=True`):
//! - Integrated/Mean/Std (population)/Min/Max over the object's pixels.
//! - Quartiles and median: sorted values `v`, position `p = n·f`, `lo = min(⌊p⌋, n−1)`,
//!   `hi = min(lo+1, n−1)`, value `v[lo]·(1−(p−lo)) + v[hi]·(p−lo)` (CellProfiler's own
//!   interpolation, not `numpy.percentile`).
//! - MAD: the same interpolation at `f = ½` of the sorted `|v − median|`.
//! - Edge: the object's pixels on CellProfiler 4's outline,
//!   `skimage.segmentation.find_boundaries(labels, mode="inner")`: a pixel with a 4-neighbour
//!   (N, S, E, W) of another label or background. The image border is not an edge (outside
//!   neighbours are reflections of the pixel itself). CellProfiler ≤ 3 used `centrosome.outline`
//!   (8-neighbourhood and image border) instead; CellProfiler 4.0.6's ExampleHuman output
//!   agrees with `find_boundaries` (see `docs/measurements.md`).
//! - `CenterMassIntensity`: intensity-weighted centroid; `MassDisplacement`: its distance from
//!   the unweighted centroid; `MaxIntensity_X/Y`: first maximum in raster order (as
//!   cp-measure; CellProfiler's `scipy.ndimage.maximum_position` has no fixed order on ties).

use ipscope_image::{ImageView, Labels, Pixel, SampleType};
use rayon::prelude::*;

/// Intensity features of one object in one channel; NaN for an absent label (and NaN edge
/// values for an object without edge pixels, which cannot happen for a finite object).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntensityFeatures {
    /// The object's label.
    pub label: u32,
    pub integrated: f64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub lower_quartile: f64,
    pub median: f64,
    pub upper_quartile: f64,
    pub mad: f64,
    pub integrated_edge: f64,
    pub mean_edge: f64,
    pub std_edge: f64,
    pub min_edge: f64,
    pub max_edge: f64,
    pub mass_displacement: f64,
    /// Intensity-weighted mean column (`Location_CenterMassIntensity_X`).
    pub center_mass_x: f64,
    /// Intensity-weighted mean row (`Location_CenterMassIntensity_Y`).
    pub center_mass_y: f64,
    /// Column of the first brightest pixel in raster order (`Location_MaxIntensity_X`).
    pub max_x: f64,
    /// Row of that pixel (`Location_MaxIntensity_Y`).
    pub max_y: f64,
}

impl IntensityFeatures {
    fn absent(label: u32) -> Self {
        let nan = f64::NAN;
        IntensityFeatures {
            label,
            integrated: 0.0,
            mean: nan,
            std: nan,
            min: nan,
            max: nan,
            lower_quartile: nan,
            median: nan,
            upper_quartile: nan,
            mad: nan,
            integrated_edge: 0.0,
            mean_edge: nan,
            std_edge: nan,
            min_edge: nan,
            max_edge: nan,
            mass_displacement: nan,
            center_mass_x: nan,
            center_mass_y: nan,
            max_x: nan,
            max_y: nan,
        }
    }
}

/// CellProfiler's interpolated quantile of sorted values (see the module docs); the
/// reference the selection below is tested against.
#[cfg(test)]
fn cp_quantile(sorted: &[f64], f: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = n as f64 * f;
    let lo = (pos as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = pos - lo as f64;
    sorted[lo] * (1.0 - t) + sorted[hi] * t
}

/// Rank `lo` of `values` in `f64::total_cmp` order and, if there is one, rank `lo + 1` (the
/// least of the elements after rank `lo`). `values` is reordered: the elements before index
/// `lo` are those of lower rank. A sort would put the same values (bits) at those ranks.
fn rank_pair<K: Rank>(values: &mut [K], lo: usize) -> (f64, Option<f64>) {
    let (_, &mut at_lo, above) = values.select_nth_unstable_by(lo, K::cmp_rank);
    (
        at_lo.value(),
        above.iter().copied().min_by(K::cmp_rank).map(K::value),
    )
}

/// A value as the quantile selections order it: `f64` by `f64::total_cmp`, or the bits of
/// an `f64` that is neither negative (sign bit clear) nor NaN, whose order as integers is
/// that same order, compared in one instruction.
trait Rank: Copy {
    fn cmp_rank(&self, other: &Self) -> std::cmp::Ordering;
    fn value(self) -> f64;
}

impl Rank for f64 {
    #[inline(always)]
    fn cmp_rank(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
    #[inline(always)]
    fn value(self) -> f64 {
        self
    }
}

/// The bits of a non-negative, non-NaN `f64` (sign bit clear).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PositiveBits(u64);

impl Rank for PositiveBits {
    #[inline(always)]
    fn cmp_rank(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
    #[inline(always)]
    fn value(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// Position `lo` and fraction `t` of CellProfiler's quantile `f` among `n > 0` sorted values.
fn quantile_position(n: usize, f: f64) -> (usize, f64) {
    let pos = n as f64 * f;
    let lo = (pos as usize).min(n - 1);
    (lo, pos - lo as f64)
}

fn interpolate(at_lo: f64, at_hi: f64, t: f64) -> f64 {
    at_lo * (1.0 - t) + at_hi * t
}

/// CellProfiler's interpolated quantile of `values` as if sorted (`f64::total_cmp`), by selection instead of a
/// sort: the elements of ranks `lo` and `lo + 1` are those a sort would put there, so the
/// result is the same bits. `values` is reordered.
fn cp_quantile_select<K: Rank>(values: &mut [K], f: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let (lo, t) = quantile_position(values.len(), f);
    let (at_lo, at_hi) = rank_pair(values, lo);
    interpolate(at_lo, at_hi.unwrap_or(at_lo), t)
}

/// CellProfiler's lower quartile, median and upper quartile of `values` (as
/// [`cp_quantile_select`] gives each): after the median's selection each quartile is
/// selected in the half of `values` on its side. `values` is reordered.
fn cp_quartiles<K: Rank>(values: &mut [K]) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let (m, tm) = quantile_position(n, 0.5);
    let (m_lo, m_hi) = rank_pair(values, m);
    let m_hi = m_hi.unwrap_or(m_lo);
    let mut quartile = |f: f64| {
        let (q, t) = quantile_position(n, f);
        let (at_lo, at_hi) = match q.cmp(&m) {
            // Ranks below the median's are in values[..m]; rank m is the median's own.
            std::cmp::Ordering::Less => {
                let (a, b) = rank_pair(&mut values[..m], q);
                (a, b.unwrap_or(m_lo))
            }
            std::cmp::Ordering::Equal => (m_lo, m_hi),
            std::cmp::Ordering::Greater => {
                let (a, b) = rank_pair(&mut values[m + 1..], q - m - 1);
                (a, b.unwrap_or(a))
            }
        };
        interpolate(at_lo, at_hi, t)
    };
    let lower = quartile(0.25);
    let upper = quartile(0.75);
    (lower, interpolate(m_lo, m_hi, tm), upper)
}

/// Sum, mean, population std (two-pass), min, max.
fn moments(v: &[f64]) -> (f64, f64, f64, f64, f64) {
    if v.is_empty() {
        return (0.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    }
    let sum: f64 = v.iter().sum();
    let mean = sum / v.len() as f64;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64;
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    (sum, mean, var.sqrt(), lo, hi)
}

/// Sorts 16-bit values ascending: two counting passes (low byte into `tmp`, high byte back),
/// a pass skipped when all values share that byte; short lists by `sort_unstable`.
fn sort_u16(v: &mut [u16], tmp: &mut Vec<u16>) {
    let n = v.len();
    if n < 64 {
        v.sort_unstable();
        return;
    }
    let (mut low, mut high) = ([0u32; 256], [0u32; 256]);
    for &x in v.iter() {
        low[usize::from(x & 0xff)] += 1;
        high[usize::from(x >> 8)] += 1;
    }
    // Counts into first positions; false (no pass needed) when one bucket holds every value.
    let starts = |counts: &mut [u32; 256]| {
        if counts.iter().any(|&c| c as usize == n) {
            return false;
        }
        let mut at = 0u32;
        for c in counts.iter_mut() {
            let k = *c;
            *c = at;
            at += k;
        }
        true
    };
    let by_low = starts(&mut low);
    let by_high = starts(&mut high);
    tmp.clear();
    tmp.resize(n, 0);
    if by_low {
        for &x in v.iter() {
            let d = usize::from(x & 0xff);
            tmp[low[d] as usize] = x;
            low[d] += 1;
        }
    } else {
        tmp.copy_from_slice(v);
    }
    if by_high {
        for &x in tmp.iter() {
            let d = usize::from(x >> 8);
            v[high[d] as usize] = x;
            high[d] += 1;
        }
    } else {
        v.copy_from_slice(tmp);
    }
}

/// The lower quartile, median, upper quartile and MAD (median absolute deviation from the
/// median) of a 16-bit object's pixels, each scaled by `scale` as the intensity features
/// read them: the same bits as [`cp_quartiles`] and [`cp_quantile_select`] on the scaled
/// values, from the raw values sorted once. The scaled values keep the raw values' order
/// (distinct integers give distinct quotients), so the quartiles are read at their ranks.
/// The deviations of the values at or below the median, taken downwards, and of those
/// above it, taken upwards, are two non-decreasing lists (rounding is monotonic); the MAD's
/// two ranks of their union are found by a binary search over how many come from the first.
/// `raw` is sorted; NaN for no pixels.
fn quartiles_and_mad_u16(raw: &mut [u16], tmp: &mut Vec<u16>, scale: f64) -> [f64; 4] {
    let n = raw.len();
    if n == 0 {
        return [f64::NAN; 4];
    }
    sort_u16(raw, tmp);
    let raw = &*raw;
    let v = |i: usize| f64::from(raw[i]) / scale;
    let at = |f: f64| {
        let (q, t) = quantile_position(n, f);
        interpolate(v(q), v((q + 1).min(n - 1)), t)
    };
    let (lower, median, upper) = (at(0.25), at(0.5), at(0.75));
    // Deviations: `below(a)`, a = 0.. from the median down; `above(b)`, b = 0.. upwards.
    let split = raw.partition_point(|&x| f64::from(x) / scale <= median);
    let (nl, nr) = (split, n - split);
    let below = |a: usize| (v(split - 1 - a) - median).abs();
    let above = |b: usize| (v(split + b) - median).abs();
    let (k, t) = quantile_position(n, 0.5);
    // The k + 1 smallest deviations: `a` of them below, the rest above; the fewest `a`
    // at which the last one taken above is not greater than the next one below.
    let take = k + 1;
    let (mut lo, mut hi) = (take.saturating_sub(nr), take.min(nl));
    while lo < hi {
        let a = (lo + hi) / 2;
        if above(take - a - 1) > below(a) {
            lo = a + 1;
        } else {
            hi = a;
        }
    }
    let (a, b) = (lo, take - lo);
    let last = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => x.max(y),
        (x, y) => x.or(y).unwrap_or(f64::NAN),
    };
    let at_k = last((a > 0).then(|| below(a - 1)), (b > 0).then(|| above(b - 1)));
    let next = match ((a < nl).then(|| below(a)), (b < nr).then(|| above(b))) {
        (Some(x), Some(y)) => x.min(y),
        (x, y) => x.or(y).unwrap_or(at_k),
    };
    [lower, median, upper, interpolate(at_k, next, t)]
}

/// Objects per parallel task of the per-object measurements: enough that a task outweighs
/// its scheduling (a 2048² field has ~1,300 nuclei).
pub(crate) const OBJECTS_PER_TASK: usize = 64;

/// One task's buffers for [`measure_intensity_features`], reused from object to object.
#[derive(Default)]
struct IntensityScratch {
    vals: Vec<f64>,
    edge: Vec<f64>,
    keys: Vec<PositiveBits>,
    /// A 16-bit image's raw pixels of the object, and the sort's second buffer.
    raw: Vec<u16>,
    raw_tmp: Vec<u16>,
}

/// The sums of one object's pixels that [`measure_intensity_features`] makes in its raster
/// pass, in the order the pixels come (raster order within the object).
#[derive(Clone, Copy)]
struct RasterSums {
    /// Σ row and Σ column of the pixels.
    sr: u64,
    sc: u64,
    integrated: f64,
    /// Σ value · row and Σ value · column.
    wr: f64,
    wc: f64,
    min: f64,
    max: f64,
    /// The first brightest pixel in raster order, and where it is.
    best: f64,
    best_rc: (usize, usize),
}

impl RasterSums {
    const NEW: RasterSums = RasterSums {
        sr: 0,
        sc: 0,
        // `Iterator::sum` of f64 starts at -0.0.
        integrated: -0.0,
        wr: 0.0,
        wc: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        best: f64::NEG_INFINITY,
        best_rc: (0, 0),
    };
}

/// One run of an object's pixels: row `row`, columns `start..end`, of object `label`, whose
/// pixels are `at..at + (end - start)` of the object's stretch in [`ObjectRuns`].
#[derive(Clone, Copy)]
struct Run {
    row: usize,
    start: usize,
    end: usize,
    label: u32,
    at: usize,
}

/// Where every object's pixels lie, from one raster pass over a label image, for the
/// intensity measurements of any number of channels ([`measure_intensity_features_in`]):
/// the objects' runs in raster order (a run: an object's pixels between two others in a
/// row), each with its place in its object's stretch of one buffer (object `l`'s stretch
/// holds its pixels in raster order), and each pixel's edge flag in that order. Only the
/// labels decide these, so a field's channels share them and read no labels themselves.
pub struct ObjectRuns {
    width: usize,
    height: usize,
    /// Object `l`'s stretch is `begin[l]..begin[l + 1]` (`count + 2` entries).
    begin: Vec<usize>,
    runs: Vec<Run>,
    /// Whether each pixel of the stretches is on its object's edge (see the module docs).
    on_edge: Vec<bool>,
}

impl ObjectRuns {
    /// The runs and edge flags of `labels`' objects `1..=count` (larger values are ignored).
    /// A run's pixels are an edge when the rows above or below differ there, its ends also
    /// when the image goes on beyond them (its left and right neighbours are then another
    /// label).
    pub fn new(labels: &Labels) -> Self {
        let lab = labels.image();
        let (width, height) = (labels.width(), labels.height());
        let areas = labels.areas();
        let count = areas.len().saturating_sub(1);
        let mut begin = Vec::with_capacity(count + 2);
        let mut total = 0usize;
        for &a in areas {
            begin.push(total);
            total += a as usize;
        }
        begin.push(total);
        let mut next = begin.clone();
        let mut on_edge = vec![false; total];
        let mut runs = Vec::new();
        for r in 0..height {
            let lrow = lab.row(r);
            // Beyond the image the neighbour is the pixel itself (never an edge).
            let above = if r > 0 { lab.row(r - 1) } else { lrow };
            let below = if r + 1 < height { lab.row(r + 1) } else { lrow };
            // The labels the next row reads below its objects (this row's scan reads its
            // own labels densely).
            if r + 2 < height {
                ipscope_image::scan::prefetch(lab.row(r + 2));
            }
            ipscope_image::scan::for_each_nonzero_run(lrow, |a, b, label| {
                let l = label as usize;
                if l > count {
                    return;
                }
                let n = b - a;
                let at = next[l];
                next[l] += n;
                runs.push(Run {
                    row: r,
                    start: a,
                    end: b,
                    label,
                    at,
                });
                let (up, down) = (&above[a..b], &below[a..b]);
                let e = &mut on_edge[at..at + n];
                for i in 0..n {
                    e[i] = (up[i] != label) | (down[i] != label);
                }
                e[0] |= a > 0;
                e[n - 1] |= b < width;
            });
        }
        ObjectRuns {
            width,
            height,
            begin,
            runs,
            on_edge,
        }
    }

    /// The largest label measured (`count` of the labels).
    pub fn count(&self) -> usize {
        self.begin.len() - 2
    }
}

/// Intensity features of `image` in every object `1..=count`, index `i` = label `i + 1`
/// ([`measure_intensity_features_in`] with the labels' [`ObjectRuns`]).
///
/// # Panics
/// If `image` does not have the size of `labels`.
pub fn measure_intensity_features<T: Pixel>(
    labels: &Labels,
    image: ImageView<T>,
) -> Vec<IntensityFeatures> {
    measure_intensity_features_in(&ObjectRuns::new(labels), image)
}

/// Runs whose pixels [`measure_intensity_features_in`] asks the memory for ahead of their
/// turn: the runs of a row are scattered over it, which the hardware prefetchers do not follow.
const PREFETCH_RUNS: usize = 8;

/// Intensity features of `image` in every object of `objects` (index `i` = label `i + 1`).
///
/// The pass follows the objects' runs in raster order: each object's scaled values (and a
/// 16-bit image's raw values) go to its stretch of one buffer while its sums (integrated
/// intensity, mass centre, extremes, brightest pixel) are made in that same order, reading
/// the image only where objects are and no labels. The rest of each object's figures then
/// come from its stretch, objects in parallel. Each object's pixels are summed in raster
/// order, so every figure is the same bits as a pixel-by-pixel pass (test
/// `runs_equal_the_pixel_by_pixel_pass`). The quartiles and MAD of a 16-bit image come from
/// its raw values sorted ([`quartiles_and_mad_u16`]), of other integer images by selection
/// on the values' bits (never negative or NaN there): the same values as `f64::total_cmp`
/// gives.
///
/// # Panics
/// If `image` does not have the size of the labels `objects` was made from.
pub fn measure_intensity_features_in<T: Pixel>(
    objects: &ObjectRuns,
    image: ImageView<T>,
) -> Vec<IntensityFeatures> {
    assert!(
        image.width() == objects.width && image.height() == objects.height,
        "measure_intensity_features: image is {}x{}, labels are {}x{}",
        image.width(),
        image.height(),
        objects.width,
        objects.height
    );
    let scale = T::MAX;
    let never_negative = T::SAMPLE != SampleType::F32;
    let image16 = T::as_u16(image);
    let count = objects.count();
    let begin = &objects.begin;
    let total = begin[count + 1];
    let on_edge = &objects.on_edge;
    let mut vals = vec![0.0f64; total];
    let mut raw = vec![0u16; if image16.is_some() { total } else { 0 }];
    let mut sums = vec![RasterSums::NEW; count + 1];
    let runs = &objects.runs;
    for (i, run) in runs.iter().enumerate() {
        if let Some(ahead) = runs.get(i + PREFETCH_RUNS) {
            ipscope_image::scan::prefetch(&image.row(ahead.row)[ahead.start..ahead.end]);
        }
        let Run {
            row: r,
            start: a,
            end: b,
            label,
            at: k,
        } = *run;
        let n = b - a;
        let s = &mut sums[label as usize];
        let len = n as u64;
        s.sr += r as u64 * len;
        s.sc += (a + b - 1) as u64 * len / 2;
        let rf = r as f64;
        // The sums in registers for the run (the same additions in the same order); every
        // slice cut to the run's length once, so the loop has no bounds checks.
        let RasterSums {
            mut integrated,
            mut wr,
            mut wc,
            mut min,
            mut max,
            mut best,
            mut best_rc,
            ..
        } = *s;
        let pixels = &image.row(r)[a..b];
        let v_out = &mut vals[k..k + n];
        for i in 0..n {
            let c = a + i;
            let x = pixels[i].to_f64() / scale;
            v_out[i] = x;
            integrated += x;
            wr += x * rf;
            wc += x * c as f64;
            min = min.min(x);
            max = max.max(x);
            if x > best {
                best = x;
                best_rc = (r, c);
            }
        }
        s.integrated = integrated;
        s.wr = wr;
        s.wc = wc;
        s.min = min;
        s.max = max;
        s.best = best;
        s.best_rc = best_rc;
        if let Some(img) = image16 {
            raw[k..k + n].copy_from_slice(&img.row(r)[a..b]);
        }
    }
    // Objects in parallel when the pool has idle workers (each object's figures are computed
    // by one call as before, so the same bits for any thread count).
    (1..count + 1)
        .into_par_iter()
        .with_min_len(OBJECTS_PER_TASK)
        .map_init(IntensityScratch::default, |scratch, l| {
            let IntensityScratch {
                vals: work,
                edge,
                keys,
                raw: raw_work,
                raw_tmp,
            } = scratch;
            let label = l as u32;
            let span = begin[l]..begin[l + 1];
            if span.is_empty() {
                return IntensityFeatures::absent(label);
            }
            let s = &sums[l];
            let vals = &vals[span.clone()];
            let n = vals.len() as f64;
            let integrated = s.integrated;
            let mean = integrated / n;
            let std = (vals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
            edge.clear();
            edge.extend(
                vals.iter()
                    .zip(&on_edge[span.clone()])
                    .filter(|&(_, &e)| e)
                    .map(|(&v, _)| v),
            );
            let (integrated_edge, mean_edge, std_edge, min_edge, max_edge) = moments(edge);
            let (lower_quartile, median, upper_quartile, mad) = if image16.is_some() {
                raw_work.clear();
                raw_work.extend_from_slice(&raw[span]);
                let [lq, med, uq, mad] = quartiles_and_mad_u16(raw_work, raw_tmp, scale);
                (lq, med, uq, mad)
            } else if never_negative {
                keys.clear();
                keys.extend(vals.iter().map(|v| PositiveBits(v.to_bits())));
                let (lq, med, uq) = cp_quartiles(keys);
                keys.clear();
                keys.extend(vals.iter().map(|v| PositiveBits((v - med).abs().to_bits())));
                (lq, med, uq, cp_quantile_select(keys, 0.5))
            } else {
                work.clear();
                work.extend_from_slice(vals);
                let (lq, med, uq) = cp_quartiles(work);
                for v in work.iter_mut() {
                    *v = (*v - med).abs();
                }
                (lq, med, uq, cp_quantile_select(work, 0.5))
            };
            let (cy, cx) = (s.sr as f64 / n, s.sc as f64 / n);
            let (my, mx) = if integrated != 0.0 {
                (s.wr / integrated, s.wc / integrated)
            } else {
                (f64::NAN, f64::NAN)
            };
            IntensityFeatures {
                label,
                integrated,
                mean,
                std,
                min: s.min,
                max: s.max,
                lower_quartile,
                median,
                upper_quartile,
                mad,
                integrated_edge,
                mean_edge,
                std_edge,
                min_edge,
                max_edge,
                mass_displacement: (my - cy).hypot(mx - cx),
                center_mass_x: mx,
                center_mass_y: my,
                max_x: s.best_rc.1 as f64,
                max_y: s.best_rc.0 as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    /// The pass the run-wise one replaced: every pixel of each box in turn.
    ///
    /// # Panics
    /// If `image` does not have the size of `labels`.
    fn pixel_by_pixel<T: Pixel>(labels: &Labels, image: ImageView<T>) -> Vec<IntensityFeatures> {
        assert!(
            image.width() == labels.width() && image.height() == labels.height(),
            "pixel_by_pixel: image is {}x{}, labels are {}x{}",
            image.width(),
            image.height(),
            labels.width(),
            labels.height()
        );
        let boxes = labels.bounding_boxes();
        let lab = labels.image();
        let (width, height) = (labels.width(), labels.height());
        let scale = T::MAX;
        let mut vals: Vec<f64> = Vec::new();
        let mut edge: Vec<f64> = Vec::new();
        (1..boxes.len())
            .map(|l| {
                let label = l as u32;
                let Some((r0, c0, r1, c1)) = boxes[l] else {
                    return IntensityFeatures::absent(label);
                };
                vals.clear();
                edge.clear();
                let (mut sr, mut sc) = (0u64, 0u64);
                let (mut wr, mut wc) = (0f64, 0f64);
                let (mut best, mut best_rc) = (f64::NEG_INFINITY, (0usize, 0usize));
                for r in r0..r1 {
                    let lrow = lab.row(r);
                    let prow = image.row(r);
                    for c in c0..c1 {
                        if lrow[c] != label {
                            continue;
                        }
                        let v = prow[c].to_f64() / scale;
                        vals.push(v);
                        sr += r as u64;
                        sc += c as u64;
                        wr += v * r as f64;
                        wc += v * c as f64;
                        if v > best {
                            best = v;
                            best_rc = (r, c);
                        }
                        let on_edge = (r > 0 && lab.row(r - 1)[c] != label)
                            || (r + 1 < height && lab.row(r + 1)[c] != label)
                            || (c > 0 && lrow[c - 1] != label)
                            || (c + 1 < width && lrow[c + 1] != label);
                        if on_edge {
                            edge.push(v);
                        }
                    }
                }
                let n = vals.len() as f64;
                let (integrated, mean, std, min, max) = moments(&vals);
                let (integrated_edge, mean_edge, std_edge, min_edge, max_edge) = moments(&edge);
                let median = cp_quantile_select(&mut vals, 0.5);
                let lower_quartile = cp_quantile_select(&mut vals, 0.25);
                let upper_quartile = cp_quantile_select(&mut vals, 0.75);
                for v in vals.iter_mut() {
                    *v = (*v - median).abs();
                }
                let mad = cp_quantile_select(&mut vals, 0.5);
                let (cy, cx) = (sr as f64 / n, sc as f64 / n);
                let (my, mx) = if integrated != 0.0 {
                    (wr / integrated, wc / integrated)
                } else {
                    (f64::NAN, f64::NAN)
                };
                IntensityFeatures {
                    label,
                    integrated,
                    mean,
                    std,
                    min,
                    max,
                    lower_quartile,
                    median,
                    upper_quartile,
                    mad,
                    integrated_edge,
                    mean_edge,
                    std_edge,
                    min_edge,
                    max_edge,
                    mass_displacement: (my - cy).hypot(mx - cx),
                    center_mass_x: mx,
                    center_mass_y: my,
                    max_x: best_rc.1 as f64,
                    max_y: best_rc.0 as f64,
                }
            })
            .collect()
    }

    #[test]
    fn runs_equal_the_pixel_by_pixel_pass() {
        fn same<T: Pixel>(labels: &Labels, img: &Image<T>, case: usize) {
            let got = measure_intensity_features(labels, img.view());
            let want = pixel_by_pixel(labels, img.view());
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                // Debug prints every field; NaN == NaN there, and -0.0 differs from 0.0.
                assert_eq!(format!("{g:?}"), format!("{w:?}"), "case {case}");
            }
        }
        let mut rnd = crate::testing::lcg32(91);
        for case in 0..300 {
            let (w, h) = (1 + (rnd() % 40) as usize, 1 + (rnd() % 40) as usize);
            // Blobs of a few labels with holes and gaps, some labels absent.
            let k = 1 + rnd() % 6;
            let lab = Image::from_fn(w, h, |_, _| match rnd() % 8 {
                0 | 1 => 0,
                _ => 1 + rnd() % k,
            });
            let lab = if case % 2 == 0 {
                // Smoother objects: the label of a coarse cell.
                let cells = Image::from_fn(w / 3 + 1, h / 3 + 1, |_, _| rnd() % (k + 1));
                Image::from_fn(w, h, |r, c| cells.row(r / 3)[c / 3])
            } else {
                lab
            };
            // Some label images hold values past their count, which are no object.
            let labels = if case % 4 == 3 {
                let top = lab.as_slice().iter().copied().max().unwrap_or(0);
                Labels::new(lab, top.saturating_sub(1))
            } else {
                Labels::from_image(lab)
            };
            let levels = [2u32, 256, 65536][case % 3];
            let px16 = Image::from_fn(w, h, |_, _| (rnd() % levels) as u16);
            same(&labels, &px16, case);
            let px8 = px16.map(|v| v as u8);
            same(&labels, &px8, case);
            // No -0.0: which of ±0 `f64::min` returns is unspecified, and differs between
            // the two loops as compiled.
            let pxf = px16.map(|v| v as f32 / 77.0);
            same(&labels, &pxf, case);
        }
    }

    #[test]
    fn quantiles_follow_cellprofiler() {
        // n = 4: median position 2 → v[2]; lower quartile position 1 → v[1].
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(cp_quantile(&v, 0.5), 3.0);
        assert_eq!(cp_quantile(&v, 0.25), 2.0);
        assert_eq!(cp_quantile(&v, 0.75), 4.0);
        assert_eq!(cp_quantile(&[1.0, 2.0, 3.0], 0.5), 2.5);
    }

    #[test]
    fn sixteen_bit_quantiles_from_the_sort_equal_the_selections_bit_for_bit() {
        let mut next = crate::testing::xorshift(29);
        let mut tmp = Vec::new();
        for n in [1usize, 2, 3, 4, 5, 8, 63, 64, 65, 100, 257, 1000, 4099] {
            // Few levels (many ties), one high byte, one low byte, the whole range.
            for (levels, base, step) in [
                (2u64, 0u64, 1u64),
                (7, 3000, 1),
                (200, 512, 1),
                (40, 0, 256),
                (65536, 0, 1),
            ] {
                let raw: Vec<u16> = (0..n)
                    .map(|_| (base + (next() % levels) * step) as u16)
                    .collect();
                let scale = 65535.0;
                let mut vals: Vec<f64> = raw.iter().map(|&x| f64::from(x) / scale).collect();
                let (lq, med, uq) = cp_quartiles(&mut vals);
                for v in vals.iter_mut() {
                    *v = (*v - med).abs();
                }
                let mad = cp_quantile_select(&mut vals, 0.5);
                let mut work = raw.clone();
                let got = quartiles_and_mad_u16(&mut work, &mut tmp, scale);
                assert_eq!(
                    got.map(f64::to_bits),
                    [lq, med, uq, mad].map(f64::to_bits),
                    "n {n}, levels {levels}, base {base}, step {step}"
                );
                let mut sorted = raw.clone();
                sorted.sort_unstable();
                assert_eq!(work, sorted, "n {n}, levels {levels}");
            }
        }
        assert!(quartiles_and_mad_u16(&mut [], &mut tmp, 65535.0)
            .iter()
            .all(|v| v.is_nan()));
    }

    #[test]
    fn selected_quantiles_equal_the_sorted_ones_bit_for_bit() {
        let mut next = crate::testing::xorshift(11);
        for n in [1usize, 2, 3, 4, 5, 7, 16, 31, 100, 257, 1000] {
            for levels in [3u64, 50, 1 << 20] {
                // Few levels give many ties, as 8-bit pixels do; -0.0 sits beside 0.0.
                let vals: Vec<f64> = (0..n)
                    .map(|_| match next() % levels {
                        0 => -0.0,
                        k => (k as f64 - levels as f64 / 3.0) / levels as f64,
                    })
                    .collect();
                let mut sorted = vals.clone();
                sorted.sort_unstable_by(f64::total_cmp);
                let mut work = vals.clone();
                let (lq, med, uq) = cp_quartiles(&mut work);
                let want = [0.25, 0.5, 0.75].map(|f| cp_quantile(&sorted, f).to_bits());
                assert_eq!(
                    [lq, med, uq].map(f64::to_bits),
                    want,
                    "n {n}, levels {levels}"
                );
                for f in [0.5, 0.25, 0.75, 0.0, 0.999] {
                    assert_eq!(
                        cp_quantile_select(&mut work, f).to_bits(),
                        cp_quantile(&sorted, f).to_bits(),
                        "n {n}, levels {levels}, f {f}"
                    );
                }
                // The same selections on the bits of non-negative values (integer images).
                let positive: Vec<f64> = vals.iter().map(|v| v.abs()).collect();
                let mut sorted = positive.clone();
                sorted.sort_unstable_by(f64::total_cmp);
                let mut bits: Vec<PositiveBits> =
                    positive.iter().map(|v| PositiveBits(v.to_bits())).collect();
                let (lq, med, uq) = cp_quartiles(&mut bits);
                let want = [0.25, 0.5, 0.75].map(|f| cp_quantile(&sorted, f).to_bits());
                assert_eq!([lq, med, uq].map(f64::to_bits), want, "bits: n {n}");
                for f in [0.5, 0.25, 0.75, 0.0, 0.999] {
                    assert_eq!(
                        cp_quantile_select(&mut bits, f).to_bits(),
                        cp_quantile(&sorted, f).to_bits(),
                        "bits: n {n}, levels {levels}, f {f}"
                    );
                }
            }
        }
        assert!(cp_quantile_select::<f64>(&mut [], 0.5).is_nan());
        assert!(cp_quartiles::<f64>(&mut []).1.is_nan());
        assert!(cp_quantile_select::<PositiveBits>(&mut [], 0.5).is_nan());
    }

    #[test]
    fn edge_and_mass_centre() {
        // A 3×3 object in a 5×5 image: 8 edge pixels, the centre is interior.
        let lab = Image::from_fn(5, 5, |r, c| {
            u32::from((1..4).contains(&r) && (1..4).contains(&c))
        });
        let px = Image::from_fn(5, 5, |r, c| if (r, c) == (2, 3) { 255u8 } else { 0 });
        let f = measure_intensity_features(&Labels::from_image(lab), px.view())[0];
        assert_eq!(f.integrated, 1.0);
        assert_eq!(f.integrated_edge, 1.0);
        assert_eq!((f.center_mass_x, f.center_mass_y), (3.0, 2.0));
        assert_eq!((f.max_x, f.max_y), (3.0, 2.0));
        assert!((f.mass_displacement - 1.0).abs() < 1e-12);
        assert_eq!(f.min_edge, 0.0);
        assert_eq!(f.median, 0.0);
    }

    #[test]
    fn edge_is_find_boundaries_inner() {
        // skimage.segmentation.find_boundaries(mode="inner") on this 5×5 layout (object 1 in
        // the top-left 3×3 corner, object 2 in the bottom-right 2×2, touching diagonally)
        // marks (0,2) (1,2) (2,0) (2,1) (2,2) of object 1 and (3,3) (3,4) (4,3) of object 2:
        // the image border and the diagonal contact do not make an edge.
        let lab = Image::from_fn(5, 5, |r, c| match (r, c) {
            (0..=2, 0..=2) => 1u32,
            (3..=4, 3..=4) => 2,
            _ => 0,
        });
        // Pixel value = 5·row + col + 1, so each edge set has a distinct sum.
        let px = Image::from_fn(5, 5, |r, c| (5 * r + c + 1) as u8);
        let f = measure_intensity_features(&Labels::from_image(lab), px.view());
        let sum = |cells: &[(usize, usize)]| -> f64 {
            cells
                .iter()
                .map(|&(r, c)| (5 * r + c + 1) as f64 / 255.0)
                .sum()
        };
        let one = sum(&[(0, 2), (1, 2), (2, 0), (2, 1), (2, 2)]);
        let two = sum(&[(3, 3), (3, 4), (4, 3)]);
        assert!(
            (f[0].integrated_edge - one).abs() < 1e-12,
            "{}",
            f[0].integrated_edge
        );
        assert!(
            (f[1].integrated_edge - two).abs() < 1e-12,
            "{}",
            f[1].integrated_edge
        );
        // An object filling the image has no edge pixel: integrated 0, the rest NaN.
        let full = Labels::from_image(Image::new(3, 3, 1u32));
        let small = Image::from_fn(3, 3, |r, c| (3 * r + c) as u8);
        let g = measure_intensity_features(&full, small.view())[0];
        assert_eq!(g.integrated_edge, 0.0);
        assert!(g.mean_edge.is_nan() && g.max_edge.is_nan());
    }
}
