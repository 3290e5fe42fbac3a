//! One-dimensional signal operations for time-lapse traces: peak finding with SciPy's
//! semantics, rolling percentiles, robust noise estimates.
//!
//! [`find_peaks`] follows `scipy.signal.find_peaks` (SciPy 1.x, `_peak_finding.py` and
//! `_peak_finding_utils.pyx`): local maxima with flat tops reduced to their middle sample
//! (rounded down), then the `height`, `distance` and `prominence` conditions applied in that
//! order, as SciPy does. Prominences are computed with an unbounded window (`wlen=None`).
//! `testdata/reference/assays/calcium_find_peaks.py` checks it against SciPy.

/// Conditions for [`find_peaks`]; `None` skips a condition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeakParams {
    /// Minimum peak height.
    pub height: Option<f64>,
    /// Minimum distance in samples between neighbouring peaks (≥ 1); smaller peaks go first.
    pub distance: Option<f64>,
    /// Minimum prominence.
    pub prominence: Option<f64>,
}

/// A peak found by [`find_peaks`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Sample index of the peak.
    pub index: usize,
    /// Prominence (`scipy.signal.peak_prominences`).
    pub prominence: f64,
    /// Index of the lowest sample on the left within the peak's reach (SciPy's `left_bases`).
    pub left_base: usize,
    /// Same on the right (`right_bases`).
    pub right_base: usize,
}

/// Local maxima of `x` (SciPy's `_local_maxima_1d`): a sample, or the middle of a flat run,
/// strictly higher than both neighbours. The ends are never peaks. NaN never is one.
pub fn local_maxima(x: &[f64]) -> Vec<usize> {
    let mut out = Vec::new();
    if x.len() < 3 {
        return out;
    }
    let i_max = x.len() - 1;
    let mut i = 1;
    while i < i_max {
        if x[i - 1] < x[i] {
            let mut ahead = i + 1;
            while ahead < i_max && x[ahead] == x[i] {
                ahead += 1;
            }
            if x[ahead] < x[i] {
                out.push((i + ahead - 1) / 2);
                i = ahead;
            }
        }
        i += 1;
    }
    out
}

/// Prominence and bases of the peak at `peak` (SciPy's `_peak_prominences`, `wlen=None`).
pub fn prominence(x: &[f64], peak: usize) -> (f64, usize, usize) {
    let h = x[peak];
    let (mut left_min, mut left_base) = (h, peak);
    let mut i = peak as isize;
    while i >= 0 && x[i as usize] <= h {
        if x[i as usize] < left_min {
            left_min = x[i as usize];
            left_base = i as usize;
        }
        i -= 1;
    }
    let (mut right_min, mut right_base) = (h, peak);
    let mut i = peak;
    while i < x.len() && x[i] <= h {
        if x[i] < right_min {
            right_min = x[i];
            right_base = i;
        }
        i += 1;
    }
    (h - left_min.max(right_min), left_base, right_base)
}

/// Keeps the highest peaks at least `distance` samples apart (SciPy's
/// `_select_by_peak_distance`; equal heights are taken in index order, last first).
fn select_by_distance(x: &[f64], peaks: &[usize], distance: f64) -> Vec<bool> {
    let n = peaks.len();
    let mut keep = vec![true; n];
    let d = distance.ceil().max(1.0) as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[peaks[a]].total_cmp(&x[peaks[b]]).then(a.cmp(&b)));
    for &j in order.iter().rev() {
        if !keep[j] {
            continue;
        }
        let mut k = j;
        while k > 0 && peaks[j] - peaks[k - 1] < d {
            keep[k - 1] = false;
            k -= 1;
        }
        let mut k = j + 1;
        while k < n && peaks[k] - peaks[j] < d {
            keep[k] = false;
            k += 1;
        }
    }
    keep
}

/// Peaks of `x` that meet `params`, in index order (`scipy.signal.find_peaks`).
pub fn find_peaks(x: &[f64], params: &PeakParams) -> Vec<Peak> {
    let mut peaks = local_maxima(x);
    if let Some(h) = params.height {
        peaks.retain(|&p| x[p] >= h);
    }
    if let Some(d) = params.distance {
        let keep = select_by_distance(x, &peaks, d);
        peaks = peaks
            .into_iter()
            .zip(keep)
            .filter_map(|(p, k)| k.then_some(p))
            .collect();
    }
    peaks
        .into_iter()
        .filter_map(|p| {
            let (prom, left_base, right_base) = prominence(x, p);
            let ok = params.prominence.is_none_or(|m| prom >= m);
            ok.then_some(Peak {
                index: p,
                prominence: prom,
                left_base,
                right_base,
            })
        })
        .collect()
}

/// The `q`-th percentile (0..=100) of `values` with linear interpolation between closest
/// ranks (NumPy's default `method="linear"`); `None` when empty. Sorts `values` in place.
pub fn percentile_mut(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = (q.clamp(0.0, 100.0) / 100.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let f = pos - lo as f64;
    Some(values[lo] + (values[hi] - values[lo]) * f)
}

/// Rolling `q`-th percentile over a centred window of `window` samples (clipped at the ends),
/// evaluated every `step` samples and linearly interpolated between, which keeps long traces
/// cheap; `step = 1` is exact.
pub fn rolling_percentile(x: &[f64], window: usize, q: f64, step: usize) -> Vec<f64> {
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let half = window.max(1) / 2;
    let step = step.max(1);
    let mut knots: Vec<usize> = (0..n).step_by(step).collect();
    if knots.last() != Some(&(n - 1)) {
        knots.push(n - 1);
    }
    let mut buf = Vec::with_capacity(2 * half + 1);
    let vals: Vec<f64> = knots
        .iter()
        .map(|&i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(n);
            buf.clear();
            buf.extend_from_slice(&x[lo..hi]);
            percentile_mut(&mut buf, q).unwrap_or(x[i])
        })
        .collect();
    let mut out = vec![0.0; n];
    for w in 0..knots.len() {
        let (a, va) = (knots[w], vals[w]);
        if w + 1 == knots.len() {
            out[a] = va;
            break;
        }
        let (b, vb) = (knots[w + 1], vals[w + 1]);
        for (i, o) in out.iter_mut().enumerate().take(b).skip(a) {
            *o = va + (vb - va) * (i - a) as f64 / (b - a) as f64;
        }
    }
    out
}

/// Noise standard deviation of a trace from its first differences: 1.4826 · MAD(Δx) / √2,
/// which ignores slow drifts and the few large steps of transients.
pub fn noise_sigma(x: &[f64]) -> f64 {
    if x.len() < 3 {
        return 0.0;
    }
    let mut d: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let med = percentile_mut(&mut d, 50.0).unwrap_or(0.0);
    let mut dev: Vec<f64> = d.iter().map(|v| (v - med).abs()).collect();
    1.4826 * percentile_mut(&mut dev, 50.0).unwrap_or(0.0) / std::f64::consts::SQRT_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_peak_is_its_middle_rounded_down_and_ends_are_not_peaks() {
        let x = [5.0, 1.0, 3.0, 3.0, 3.0, 3.0, 1.0, 2.0, 0.0, 9.0];
        assert_eq!(local_maxima(&x), vec![3, 7]);
    }

    #[test]
    fn prominence_uses_the_higher_of_the_two_bases() {
        let x = [0.0, 4.0, 1.0, 3.0, 2.0, 5.0, 0.5];
        let (p, l, r) = prominence(&x, 3);
        assert_eq!((p, l, r), (1.0, 2, 4));
        let peaks = find_peaks(
            &x,
            &PeakParams {
                prominence: Some(2.5),
                ..Default::default()
            },
        );
        assert_eq!(
            peaks.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![1, 5]
        );
    }

    #[test]
    fn distance_keeps_the_higher_peak() {
        let x = [0.0, 2.0, 0.0, 3.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0, 0.0];
        let peaks = find_peaks(
            &x,
            &PeakParams {
                distance: Some(3.0),
                ..Default::default()
            },
        );
        assert_eq!(
            peaks.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![3, 9]
        );
    }

    #[test]
    fn rolling_percentile_with_steps_matches_exact_on_a_line() {
        let x: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let exact = rolling_percentile(&x, 11, 50.0, 1);
        let coarse = rolling_percentile(&x, 11, 50.0, 4);
        // Knots 8..=40 have unclipped windows on both sides.
        for i in 8..=40 {
            assert!((exact[i] - i as f64).abs() < 1e-12);
            assert!((coarse[i] - i as f64).abs() < 1e-12);
        }
    }
}
