#!/usr/bin/env python3
"""Reference Frangi and Meijering ridge responses for ipscope-core's ops/ridge.rs.

`skimage.filters.frangi` and `skimage.filters.meijering` (defaults except `sigmas` and
`black_ridges=False`, i.e. bright ridges) on float32 images of drawn curvilinear structures
(lines, a disk and a ring, so that blob suppression and both eigenvalue signs occur) plus
Gaussian noise, at one and several scales (including one below 1 px).

Writes ridge_filters.json next to this script (image encoding as in skeletonize_ref.py).
Run: /path/to/venv/bin/python testdata/reference/assays/ridge_filters_ref.py
"""
import base64
import json
import os

import numpy as np
import scipy.ndimage as ndi
import skimage
from skimage.draw import disk, line
from skimage.filters import frangi, meijering

OUT = os.path.dirname(os.path.abspath(__file__))


def enc(a):
    a = np.ascontiguousarray(np.asarray(a, np.float32), "<f4")
    h, w = a.shape
    return {"width": w, "height": h, "dtype": "f32le-b64", "data": base64.b64encode(a.tobytes()).decode()}


def image(seed, shape):
    r = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for _ in range(4):
        r0, c0, r1, c1 = (int(v) for v in r.integers(0, min(shape), 4))
        rr, cc = line(r0, c0, r1, c1)
        img[rr, cc] = 1.0
    rr, cc = disk((shape[0] // 3, shape[1] // 2), 4, shape=shape)
    img[rr, cc] = 1.0
    rr, cc = disk((2 * shape[0] // 3, shape[1] // 3), 7, shape=shape)
    img[rr, cc] = np.maximum(img[rr, cc], 0.6)
    rr, cc = disk((2 * shape[0] // 3, shape[1] // 3), 5, shape=shape)
    img[rr, cc] = 0.0
    img = ndi.gaussian_filter(img, 0.8).astype(np.float32)
    img += r.normal(0, 0.02, shape).astype(np.float32)
    return img.astype(np.float32)


def main():
    cases = []
    for seed, shape, sigmas in [
        (1, (64, 72), [1.0, 2.0]),
        (2, (50, 40), [1.5]),
        (3, (40, 48), [1.0, 3.0, 5.0]),
        (4, (33, 57), [0.5, 1.0]),
    ]:
        img = image(seed, shape)
        cases.append(
            {
                "sigmas": sigmas,
                "image": enc(img),
                "frangi": enc(frangi(img, sigmas=sigmas, black_ridges=False)),
                "meijering": enc(meijering(img, sigmas=sigmas, black_ridges=False)),
            }
        )
    with open(os.path.join(OUT, "ridge_filters.json"), "w") as f:
        json.dump({"skimage": skimage.__version__, "cases": cases}, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
