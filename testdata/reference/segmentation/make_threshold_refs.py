#!/usr/bin/env python3
"""Reference thresholds for ipscope-core's ops::threshold, computed by scikit-image.

Writes thresholds.json next to this script; crates/ipscope-core/tests/algorithms/seg_threshold.rs
reads it. Inputs are float32 images (base64 little-endian, bit-exact) built with fixed
seeds: noisy bimodal/trimodal fields, a skewed background-heavy field, a smoothed field
of discs, and a tiny one. Peers:
  multiotsu  skimage.filters.threshold_multiotsu(img, classes, nbins=256)
  li         skimage.filters.threshold_li(img.astype(float64))  (ipscope computes in f64)
  triangle   skimage.filters.threshold_triangle(img, nbins=256)
  robust     centrosome.threshold.get_robust_background_threshold (CellProfiler 4), copied
             below verbatim in logic since centrosome is not installed, on float64
  local      skimage.filters.threshold_local(img, block_size, method='gaussian', offset)

Regenerate:  .venv/bin/python testdata/reference/segmentation/make_threshold_refs.py
"""

import base64
import json
import os

import numpy as np
import skimage
from skimage.filters import (gaussian, threshold_li, threshold_local,
                             threshold_multiotsu, threshold_triangle)
from skimage.segmentation import expand_labels
from skimage.measure import label

OUT = os.path.dirname(os.path.abspath(__file__))


def enc(a):
    a = np.asarray(a)
    h, w = a.shape
    if a.dtype == np.float32:
        return {"width": w, "height": h, "dtype": "f32le-b64",
                "data": base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()}
    return {"width": w, "height": h, "dtype": "u32", "data": a.astype(np.int64).ravel().tolist()}


def robust_background(image, lower=0.05, upper=0.05, deviations=2.0):
    """centrosome.threshold.get_robust_background_threshold with mean / std (CellProfiler 4)."""
    cropped = np.array(image.flat, dtype=np.float64)
    n = np.prod(cropped.shape)
    if n < 3:
        return None
    cropped.sort()
    if cropped[0] == cropped[-1]:
        return None
    low_chop = int(round(n * lower))
    hi_chop = n - int(round(n * upper))
    im = cropped if low_chop == 0 else cropped[low_chop:hi_chop]
    return float(np.mean(im) + np.std(im) * deviations)


def images():
    rng = np.random.default_rng(404)
    out = {}
    a = np.where(rng.random((48, 64)) < 0.3, 0.7, 0.2) + rng.normal(0, 0.08, (48, 64))
    out["bimodal"] = a.astype(np.float32)
    b = rng.choice([0.1, 0.45, 0.9], size=(40, 50), p=[0.6, 0.25, 0.15]) + rng.normal(0, 0.05, (40, 50))
    out["trimodal"] = b.astype(np.float32)
    c = rng.gamma(2.0, 0.02, (50, 50))
    c[10:20, 10:25] += 0.5
    out["skewed"] = c.astype(np.float32)
    rr, cc = np.mgrid[0:64, 0:80]
    d = np.full((64, 80), 0.05)
    for (r, q, rad) in [(15, 20, 7), (30, 50, 10), (50, 15, 6), (45, 60, 8), (20, 70, 5)]:
        d += 0.6 * np.exp(-((rr - r) ** 2 + (cc - q) ** 2) / (2 * (rad / 1.5) ** 2))
    d += 0.1 * cc / 80.0 + rng.normal(0, 0.02, d.shape)
    out["discs"] = gaussian(d.astype(np.float32), sigma=1.0)
    out["tiny"] = np.array([[0.1, 0.5, 0.9], [0.2, 0.6, 0.3]], dtype=np.float32)
    return out


def main():
    cases = []
    for name, img in images().items():
        case = {"name": name, "image": enc(img)}
        case["multiotsu3"] = [float(t) for t in threshold_multiotsu(img, classes=3)]
        case["multiotsu2"] = [float(t) for t in threshold_multiotsu(img, classes=2)]
        case["li"] = float(threshold_li(img.astype(np.float64)))
        case["triangle"] = float(threshold_triangle(img))
        case["robust"] = robust_background(img)
        case["local"] = []
        for bs, off in ([(3, 0.0), (11, 0.01), (51, -0.02)] if name in ("discs", "tiny") else []):
            case["local"].append({"block_size": bs, "offset": off,
                                  "threshold": enc(threshold_local(img, bs, offset=off))})
        cases.append(case)
    # expand_labels: labels from a thresholded field, expanded by several distances.
    rng = np.random.default_rng(7)
    m = rng.random((40, 56)) < 0.02
    lab = label(m | np.roll(m, 1, axis=1), connectivity=2).astype(np.int64)
    expand = {"labels": enc(lab), "cases": []}
    for dist in [1, 2.5, 4, 10]:
        expand["cases"].append({"distance": dist, "expanded": enc(expand_labels(lab, dist))})
    obj = {"skimage": skimage.__version__, "numpy": np.__version__,
           "cases": cases, "expand_labels": expand}
    path = os.path.join(OUT, "thresholds.json")
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"thresholds.json: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
