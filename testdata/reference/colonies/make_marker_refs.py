"""Reference values for ipscope_core::assays::markers, from numpy / scikit-image / SciPy.

    .venv/bin/python testdata/reference/colonies/make_marker_refs.py

writes testdata/reference/colonies/marker_refs.json, read by
crates/ipscope-core/tests/algorithms/markers_reference.rs.
"""
import json
import os

import numpy as np
import scipy.stats
from skimage.filters import threshold_otsu

rng = np.random.default_rng(7)
cases = []
for name, values, controls in [
    # Bimodal log-normal marker: 70 % negative, 30 % positive.
    ("bimodal", np.concatenate([rng.lognormal(-3.0, 0.3, 700), rng.lognormal(-1.2, 0.3, 300)]),
     rng.lognormal(-3.0, 0.3, 400)),
    # Mostly negative with a small positive tail.
    ("rare", np.concatenate([rng.lognormal(-2.5, 0.25, 950), rng.lognormal(-1.0, 0.2, 50)]),
     rng.lognormal(-2.5, 0.25, 300)),
    # Uniform values.
    ("uniform", rng.uniform(0.05, 0.6, 500), rng.uniform(0.05, 0.2, 100)),
]:
    v = values.astype(np.float64)
    # ipscope thresholds f32 values, as scikit-image does for float32 input.
    v32 = v.astype(np.float32)
    t_otsu = float(threshold_otsu(v32))
    t_log = float(np.exp(threshold_otsu(np.log(v).astype(np.float32))))
    p99 = float(np.percentile(controls, 99))
    hist = np.histogram(v, bins=32)[0]
    entropy = float(scipy.stats.entropy(hist))
    # Gini as the mean absolute difference over twice the mean (pairwise definition).
    x = v - min(v.min(), 0)
    gini = float(np.abs(x[:, None] - x[None, :]).mean() / (2 * x.mean()))
    cases.append({
        "name": name,
        "values": v.tolist(),
        "controls": controls.tolist(),
        "otsu": t_otsu,
        "otsu_log": t_log,
        "controls_p99": p99,
        "percent_positive_p99": float(100 * np.mean(v > p99)),
        "cv": float(scipy.stats.variation(v)),
        "entropy": entropy,
        "gini": gini,
    })
out = os.path.join(os.path.dirname(__file__), "marker_refs.json")
with open(out, "w") as f:
    json.dump({"generator": "numpy %s, scipy %s, scikit-image threshold_otsu" % (np.__version__, scipy.__version__),
               "cases": cases}, f)
print(out)
