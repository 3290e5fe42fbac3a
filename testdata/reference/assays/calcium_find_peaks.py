"""Reference peaks for ipscope's calcium beat detection: scipy.signal.find_peaks.

Writes calcium_find_peaks.json: synthetic ΔF/F0-like traces (regular, fast, irregular,
with early-afterdepolarisation-like bumps, plateau tops, pure noise) and, for several
(height, distance, prominence) settings, the peaks SciPy finds with their prominences and
bases. crates/ipscope-core/tests/algorithms/calcium_reference.rs runs ops::signal::find_peaks on the
same traces and settings and must find the same peaks. Traces are rounded to 6 decimals
before SciPy sees them, so both sides read the same numbers from the JSON.
"""

import json
import pathlib

import numpy as np
import scipy
from scipy.signal import find_peaks


def transient(s, tau_r, tau_d):
    s = np.asarray(s, dtype=float)
    out = np.zeros_like(s)
    m = s > 0
    out[m] = (1 - np.exp(-s[m] / tau_r)) * np.exp(-s[m] / tau_d)
    return out / out.max() if out.max() > 0 else out


def train(rng, n, fps, onsets, amp, tau_r, tau_d, noise, ead_at=None):
    t = np.arange(n) / fps
    x = np.zeros(n)
    for o in onsets:
        x += amp * transient(t - o, tau_r, tau_d)
        if ead_at is not None:
            x += 0.3 * amp * transient(t - o - ead_at, 0.02, 0.08)
    return np.round(x + noise * rng.standard_normal(n), 6)


def main():
    rng = np.random.default_rng(20261125)
    n, fps = 600, 50.0
    traces = {
        "regular_60bpm": train(rng, n, fps, np.arange(0.2, 12, 1.0), 0.8, 0.03, 0.2, 0.01),
        "fast_120bpm": train(rng, n, fps, np.arange(0.1, 12, 0.5), 0.5, 0.02, 0.1, 0.02),
        "irregular": train(
            rng, n, fps, np.cumsum(rng.uniform(0.5, 1.6, 12)), 0.6, 0.03, 0.15, 0.015
        ),
        "ead": train(rng, n, fps, np.arange(0.3, 12, 1.5), 0.7, 0.03, 0.25, 0.01, ead_at=0.45),
        "noisy": train(rng, n, fps, np.arange(0.2, 12, 0.8), 0.3, 0.03, 0.15, 0.06),
        "noise_only": np.round(0.02 * rng.standard_normal(n), 6),
        "plateaus": np.round(np.repeat(rng.integers(0, 6, n // 4).astype(float), 4) / 5, 6),
    }
    settings = [
        {"height": None, "distance": None, "prominence": None},
        {"height": None, "distance": 12.5, "prominence": 0.1},
        {"height": 0.05, "distance": 5, "prominence": 0.05},
        {"height": None, "distance": 25, "prominence": 0.2},
        {"height": None, "distance": 1, "prominence": 0.02},
    ]
    cases = []
    for name, x in traces.items():
        for s in settings:
            if name == "plateaus" and (s["distance"] or 0) > 1:
                # Equal heights: SciPy orders ties by np.argsort's unstable sort, whose
                # order depends on NumPy's SIMD sort on the machine; not a fixed reference.
                continue
            kwargs = {k: v for k, v in s.items() if v is not None}
            # prominence=0 only asks SciPy to report prominences; it filters nothing.
            kwargs["prominence"] = s["prominence"] if s["prominence"] is not None else 0
            peaks, props = find_peaks(x, **kwargs)
            cases.append(
                {
                    "trace": name,
                    **s,
                    "peaks": peaks.tolist(),
                    "prominences": props["prominences"].tolist(),
                    "left_bases": props["left_bases"].tolist(),
                    "right_bases": props["right_bases"].tolist(),
                }
            )
    out = {
        "generator": "testdata/reference/assays/calcium_find_peaks.py",
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "traces": {k: v.tolist() for k, v in traces.items()},
        "cases": cases,
    }
    path = pathlib.Path(__file__).with_name("calcium_find_peaks.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
