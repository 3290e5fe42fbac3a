#!/usr/bin/env python3
"""Reference spots for ipscope-core's ops/blob.rs, computed by skimage.feature.blob_log.

Float32 images (0..1 scale) of Gaussian spots of several sizes and brightnesses on a noisy
background, some close together; `blob_log(image, min_sigma, max_sigma, num_sigma,
threshold, overlap)` gives rows, cols and sigmas. Writes blob_log.json.
Regenerate from the repository root:
    .venv/bin/python testdata/reference/assays/blob_log_ref.py
"""

import base64
import json
import os

import numpy as np
import skimage
from skimage.feature import blob_log

OUT = os.path.dirname(os.path.abspath(__file__))


def enc(a):
    h, w = a.shape
    data = base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()
    return {"width": int(w), "height": int(h), "dtype": "f32le-b64", "data": data}


def spots(seed, shape, n, sigmas, noise):
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = np.zeros(shape, np.float64)
    for _ in range(n):
        r, c = rng.uniform(3, shape[0] - 3), rng.uniform(3, shape[1] - 3)
        s = rng.choice(sigmas)
        a = rng.uniform(0.3, 1.0)
        img += a * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * s * s))
    img += rng.normal(0, noise, shape)
    return img.astype(np.float32)


def main():
    cases = []
    for seed, shape, n, sig, noise, params in [
        (1, (64, 64), 12, [1.0, 2.0], 0.01, dict(min_sigma=1, max_sigma=5, num_sigma=5, threshold=0.05, overlap=0.5)),
        (2, (80, 60), 25, [1.5, 3.0], 0.02, dict(min_sigma=1, max_sigma=4, num_sigma=7, threshold=0.05, overlap=0.5)),
        (3, (48, 72), 30, [1.0], 0.03, dict(min_sigma=1, max_sigma=3, num_sigma=3, threshold=0.08, overlap=0.5)),
    ]:
        img = spots(seed, shape, n, sig, noise)
        blobs = blob_log(img, **params)
        cases.append(
            {
                "params": params,
                "image": enc(img),
                "blobs": [[int(b[0]), int(b[1]), float(b[2])] for b in blobs],
            }
        )
    with open(os.path.join(OUT, "blob_log.json"), "w") as f:
        json.dump({"skimage": skimage.__version__, "cases": cases}, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
