#!/usr/bin/env python3
"""Reference skeletons and ridge filters for ipscope-core's ops/skeleton.rs and ops/ridge.rs.

Masks: random blobs (smoothed noise, thresholded), thick drawn lines and branched trees,
rings, and a thresholded crop of a real image (CellProfiler's ExampleHuman, when
$IPSCOPE_DATA or ../shared/data holds it). Each mask is skeletonized with
`skimage.morphology.skeletonize` (Zhang, the 2-D default). Ridge images: `skimage.filters.sato`
with `black_ridges=False` on float32 images of drawn curvilinear structures plus noise.

Writes skeleton.json and ridge.json next to this script (encoding as in ../core/make_core_refs.py).
Regenerate from the repository root:
    .venv/bin/python testdata/reference/assays/skeletonize_ref.py
"""

import base64
import json
import os

import numpy as np
import scipy.ndimage as ndi
import skimage
from skimage.draw import line, disk, circle_perimeter
from skimage.filters import sato, threshold_otsu, gaussian
from skimage.morphology import skeletonize

OUT = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(OUT, "..", "..", ".."))


def enc(a):
    a = np.asarray(a)
    h, w = a.shape
    if a.dtype == np.float32:
        data = base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()
        dtype = "f32le-b64"
    elif a.dtype == np.bool_:
        data = "".join("1" if v else "0" for v in a.ravel())
        dtype = "bool-str"
    else:
        raise TypeError(a.dtype)
    return {"width": int(w), "height": int(h), "dtype": dtype, "data": data}


def blobs(rng, shape, sigma, frac):
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > np.quantile(noise, 1 - frac)


def thick_lines(rng, shape, n, width):
    m = np.zeros(shape, bool)
    for _ in range(n):
        r0, c0, r1, c1 = (int(v) for v in rng.integers(2, min(shape) - 2, 4))
        rr, cc = line(r0, c0, r1, c1)
        m[rr, cc] = True
    return ndi.binary_dilation(m, iterations=width) if width else m


def tree(rng, shape):
    m = np.zeros(shape, bool)
    cr, cc = shape[0] // 2, shape[1] // 2
    rr, c2 = disk((cr, cc), 6, shape=shape)
    m[rr, c2] = True
    for k in range(5):
        ang = rng.uniform(0, 2 * np.pi)
        ln = rng.uniform(15, min(shape) / 2 - 3)
        r1 = int(cr + ln * np.sin(ang))
        c1 = int(cc + ln * np.cos(ang))
        rr, c2 = line(cr, cc, r1, c1)
        m[rr, c2] = True
        # a side branch from the middle
        rm, cm = (cr + r1) // 2, (cc + c1) // 2
        a2 = ang + rng.uniform(0.5, 1.2)
        r2 = int(np.clip(rm + 10 * np.sin(a2), 1, shape[0] - 2))
        c3 = int(np.clip(cm + 10 * np.cos(a2), 1, shape[1] - 2))
        rr, c2 = line(rm, cm, r2, c3)
        m[rr, c2] = True
    return ndi.binary_dilation(m, iterations=1)


def rings(shape):
    m = np.zeros(shape, bool)
    for (r, c, rad) in [(20, 20, 12), (45, 40, 15), (20, 52, 6)]:
        rr, cc = circle_perimeter(r, c, rad, shape=shape)
        m[rr, cc] = True
    return ndi.binary_dilation(m, iterations=2)


def real_mask():
    data = os.environ.get("IPSCOPE_DATA", os.path.join(ROOT, "..", "shared", "data"))
    path = os.path.join(data, "cp_examplehuman", "AS_09125_050116030001_D03f00d0.tif")
    if not os.path.exists(path):
        return None
    import tifffile

    img = tifffile.imread(path).astype(np.float32)
    crop = img[:112, :112]
    crop = gaussian(crop, 1.0)
    return crop > threshold_otsu(crop)


def main():
    rng = np.random.default_rng(11)
    masks = {
        "blobs_small": blobs(rng, (48, 64), 2.0, 0.35),
        "blobs_large": blobs(rng, (96, 80), 4.0, 0.45),
        "lines_thin": thick_lines(rng, (64, 64), 6, 0),
        "lines_thick": thick_lines(rng, (80, 96), 5, 2),
        "tree": tree(rng, (96, 96)),
        "rings": rings((64, 64)),
        "border_touching": np.pad(np.ones((10, 30), bool), ((0, 5), (0, 0))),
        "empty": np.zeros((7, 9), bool),
        "single_pixel": np.pad(np.ones((1, 1), bool), 2),
    }
    real = real_mask()
    if real is not None:
        masks["examplehuman_d0_otsu"] = real
    cases = []
    for name, m in masks.items():
        sk = skeletonize(m)
        cases.append({"name": name, "mask": enc(m), "skeleton": enc(sk)})
    with open(os.path.join(OUT, "skeleton.json"), "w") as f:
        json.dump({"skimage": skimage.__version__, "cases": cases}, f, separators=(",", ":"))

    # Ridge filter: bright curvilinear structures (neurites) on noise.
    ridge_cases = []
    for seed, shape, sigmas in [(1, (64, 72), [1.0, 2.0]), (2, (50, 40), [1.5]), (3, (40, 48), [1.0, 3.0, 5.0])]:
        r = np.random.default_rng(seed)
        img = np.zeros(shape, np.float32)
        for _ in range(4):
            r0, c0, r1, c1 = (int(v) for v in r.integers(0, min(shape), 4))
            rr, cc = line(r0, c0, r1, c1)
            img[rr, cc] = 1.0
        img = ndi.gaussian_filter(img, 0.8).astype(np.float32)
        img += r.normal(0, 0.02, shape).astype(np.float32)
        img = img.astype(np.float32)
        out = sato(img, sigmas=sigmas, black_ridges=False).astype(np.float32)
        ridge_cases.append({"sigmas": sigmas, "image": enc(img), "sato": enc(out)})
    with open(os.path.join(OUT, "ridge.json"), "w") as f:
        json.dump({"skimage": skimage.__version__, "cases": ridge_cases}, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
