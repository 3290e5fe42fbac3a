#!/usr/bin/env python3
"""Reference illumination functions for ipscope-core's ops::illumination.

Writes illumination.json next to this script; crates/ipscope-core/tests/algorithms/illumination_reference.rs
reads it. Input: three synthetic uint16 fields (56 x 40, fixed seed) of bright discs on a
background, all multiplied by the same off-centre vignetting, with a 3 x 3 patch of zeros in
every field (the polynomial fit and the rescaling skip pixels that are not above 0).
Steps, as CellProfiler 4's CorrectIlluminationCalculate (Regular, All, filter size "Manually"
= 7, so sigma = 7 / 2.35) computes them:
  mean        running float64 sum of field / 65535, divided by the number of fields
  background  the same average of each field's block minima (intensity "Background", block
              size 16: centrosome.cpmorphology.block + scipy.ndimage.minimum, as CellProfiler)
  median      (mean * 65535).astype(uint16), scipy.ndimage.median_filter(footprint=
              centrosome.cpmorphology.strel_disk(max(1, int(sigma + 0.5))), mode='reflect');
              also with the "Automatic" size min(30, 56 / 40)
  gaussian    centrosome.smooth.smooth_with_function_and_mask(mean,
              lambda x: scipy.ndimage.gaussian_filter(x, sigma, mode='constant', cval=0), ones)
  polynomial  centrosome.smooth.fit_polynomial(mean, ones)  (clipped to 0..1)
  rescale     CellProfiler's apply_scaling (restated below: CellProfiler itself is not
              installed): "Yes" = raise values below the 2nd-percentile positive value to it
              and divide by it; "Median" = divide by the median positive value
  corrected   field 0 / 65535 / illumination function (CorrectIlluminationApply, Divide)

Regenerate:  .venv/bin/python testdata/reference/segmentation/make_illumination_refs.py
"""

import base64
import importlib.metadata
import json
import os

import numpy as np
import scipy
import scipy.ndimage as ndi
import centrosome
import centrosome.smooth
from centrosome.cpmorphology import block, strel_disk

OUT = os.path.dirname(os.path.abspath(__file__))
W, H, N = 56, 40, 3
SIZE = 7.0


def enc(a):
    a = np.asarray(a)
    h, w = a.shape
    if a.dtype == np.uint16:
        kind, data = "u16le-b64", np.ascontiguousarray(a, "<u2").tobytes()
    else:
        kind, data = "f64le-b64", np.ascontiguousarray(a, "<f8").tobytes()
    return {"width": w, "height": h, "dtype": kind, "data": base64.b64encode(data).decode()}


def fields():
    rng = np.random.default_rng(20240517)
    r, c = np.mgrid[0:H, 0:W].astype(float)
    gain = 1.0 - 0.55 * ((r - 12.0) ** 2 + (c - 40.0) ** 2) / (W * W)
    out = []
    for _ in range(N):
        img = np.full((H, W), 3000.0)
        for _ in range(12):
            cy, cx, rad = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(2.5, 5.0)
            img[(r - cy) ** 2 + (c - cx) ** 2 <= rad * rad] += rng.uniform(6000, 20000)
        img = rng.poisson(img * gain).astype(float)
        img[20:23, 5:8] = 0
        out.append(np.clip(img, 0, 65535).astype(np.uint16))
    return out


def rescale(p, how):
    """CellProfiler 4 CorrectIlluminationCalculate.apply_scaling, 2-D, no mask."""
    s = np.sort(p[p > 0])
    if s.shape[0] == 0:
        return p
    if how == "Yes":
        m = s[int(s.shape[0] * 0.02)]
        p = p.copy()
        p[p < m] = m
    else:
        m = s[int(s.shape[0] / 2)]
    return p / m


def main():
    fs = fields()
    mean = np.zeros((H, W))
    for f in fs:
        mean += f / 65535.0
    mean = mean / N
    labels, indexes = block((H, W), (16, 16))
    background = np.zeros((H, W))
    for f in fs:
        px = f / 65535.0
        minima = np.asarray(ndi.minimum(px, labels, indexes))
        background += minima[labels]
    background = background / N
    ones = np.ones((H, W), bool)
    sigma = SIZE / 2.35
    q = (mean * 65535).astype(np.uint16)

    def med(sig):
        return ndi.median_filter(q, footprint=strel_disk(max(1, int(sig + 0.5))).astype(bool),
                                 mode="reflect")

    median = med(sigma)
    median_auto = med(min(30.0, max(W, H) / 40.0) / 2.35)
    gauss = centrosome.smooth.smooth_with_function_and_mask(
        mean, lambda x: ndi.gaussian_filter(x, sigma, mode="constant", cval=0), ones)
    poly = centrosome.smooth.fit_polynomial(mean, ones)
    median_f = median.astype(float) / 65535.0
    illum_median = rescale(median_f, "Yes")
    illum_gauss = rescale(gauss, "Median")
    illum_poly = rescale(poly, "Yes")
    corrected = (fs[0] / 65535.0) / illum_median.astype(np.float32)
    refs = {
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__,
                     "centrosome": importlib.metadata.version("centrosome")},
        "size": SIZE,
        "fields": [enc(f) for f in fs],
        "mean": enc(mean),
        "background_block16": enc(background),
        "median_u16": enc(median),
        "median_auto_u16": enc(median_auto),
        "gaussian": enc(gauss),
        "polynomial": enc(poly),
        "illum_median_rescale_yes": enc(illum_median),
        "illum_gaussian_rescale_median": enc(illum_gauss),
        "illum_polynomial_rescale_yes": enc(illum_poly),
        "corrected_field0_median": enc(corrected),
    }
    with open(os.path.join(OUT, "illumination.json"), "w") as fh:
        json.dump(refs, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
