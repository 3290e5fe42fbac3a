#!/usr/bin/env python3
"""Reference outputs for ipscope-core's ops, computed by SciPy / scikit-image.

Builds small deterministic inputs (numpy default_rng, fixed seeds), runs the peer function
for each op and writes inputs + outputs as compact JSON next to this script. The Rust test
crates/ipscope-core/tests/algorithms/reference.rs reads them; nothing here runs at test time.

Encoding: an image is {"width", "height", "dtype", "data"} with row-major flat data.
float32 and u16 data are stored as base64 of their little-endian bytes (dtypes "f32le-b64",
"u16le-b64") so that inputs are bit-exact and small; bool as a list of 0/1, labels ("u32") as
a list of integers. Coordinates are [row, col].

Regenerate (see README.md for versions):
    .venv/bin/python testdata/reference/core/make_core_refs.py
"""

import base64
import json
import math
import os

import numpy as np
import scipy
import scipy.ndimage as ndi
import skimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label, regionprops_table
from skimage.segmentation import watershed

OUT = os.path.dirname(os.path.abspath(__file__))


def enc(a):
    a = np.asarray(a)
    h, w = a.shape
    if a.dtype == np.float32:
        data = base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()
        dtype = "f32le-b64"
    elif a.dtype == np.bool_:
        data = a.astype(np.uint8).ravel().tolist()
        dtype = "bool"
    elif a.dtype == np.uint16:
        data = base64.b64encode(np.ascontiguousarray(a, "<u2").tobytes()).decode()
        dtype = "u16le-b64"
    elif np.issubdtype(a.dtype, np.integer):
        data = a.astype(np.int64).ravel().tolist()
        dtype = "u32"
    else:
        raise TypeError(a.dtype)
    return {"width": int(w), "height": int(h), "dtype": dtype, "data": data}


def f32bits(x):
    return int(np.float32(x).view(np.uint32))


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"{name}: {os.path.getsize(path)} bytes")


def smooth(img, sigma):
    """skimage.filters.gaussian with its defaults, checked against the SciPy call we mirror."""
    a = gaussian(img, sigma=sigma)
    b = ndi.gaussian_filter(img, sigma, mode="nearest", truncate=4.0)
    assert a.dtype == img.dtype and np.array_equal(a, b)
    return a


def disk_image(rng, h, w, centres, radii, bg=3000, fg=30000, noise=1500):
    """u16 image of soft-edged bright discs on a noisy background."""
    rr, cc = np.mgrid[0:h, 0:w]
    img = np.full((h, w), float(bg))
    for (r, c), rad in zip(centres, radii):
        d = np.sqrt((rr - r) ** 2 + (cc - c) ** 2)
        img = np.maximum(img, bg + (fg - bg) * np.clip(rad + 0.5 - d, 0, 1))
    img += rng.normal(0, noise, (h, w))
    return np.clip(np.round(img), 0, 65535).astype(np.uint16)


def scale_u16(img):
    # ipscope scales in f64 and rounds to f32 once.
    return (img.astype(np.float64) / 65535.0).astype(np.float32)


def raster_relabel(lab):
    """Renumber 1..N in raster order of first pixel (ipscope's convention)."""
    flat = lab.ravel()
    vals, first = np.unique(flat, return_index=True)
    order = [v for _, v in sorted(zip(first, vals)) if v != 0]
    lut = np.zeros(int(flat.max()) + 1 if flat.size else 1, dtype=np.int64)
    for i, v in enumerate(order):
        lut[v] = i + 1
    return lut[lab]


def main():
    rng = np.random.default_rng(20240601)

    # ---- inputs -------------------------------------------------------------------------
    H, W = 64, 80
    centres = [(12, 14), (12, 25), (40, 20), (30, 60), (38, 66), (52, 45), (55, 70),
               (20, 45), (48, 8)]
    radii = [6, 5, 8, 7, 5, 6, 4, 5, 4]
    blobs_u16 = disk_image(rng, H, W, centres, radii)
    blobs = scale_u16(blobs_u16)
    line = rng.random((1, 9)).astype(np.float32)
    column = rng.random((11, 1)).astype(np.float32)
    uniform = rng.random((37, 41)).astype(np.float32)
    levels = rng.choice(np.array([0.1, 0.2, 0.7, 0.75, 0.9], np.float32), (20, 30))

    # ---- gaussian -----------------------------------------------------------------------
    cases = []
    for name, img, sigma in [("blobs", blobs, 1.0), ("blobs", blobs, 2.5),
                             ("blobs", blobs, 0.6), ("line", line, 1.5),
                             ("column", column, 2.0)]:
        cases.append({"input": name, "sigma": sigma, "output": enc(smooth(img, sigma))})
    write("gaussian.json", {
        "inputs": {"blobs": enc(blobs), "line": enc(line), "column": enc(column)},
        "cases": cases,
    })

    # ---- otsu ---------------------------------------------------------------------------
    blobs_s1 = smooth(blobs, 1.0)
    otsu_inputs = {"blobs": blobs, "blobs_s1": blobs_s1, "uniform": uniform,
                   "levels": levels}
    cases = []
    for name, nbins in [("blobs", 256), ("blobs_s1", 256), ("uniform", 256),
                        ("levels", 256), ("blobs", 17), ("uniform", 3)]:
        t = threshold_otsu(otsu_inputs[name], nbins=nbins)
        assert isinstance(t, np.float32)
        cases.append({"input": name, "nbins": nbins, "threshold_bits": f32bits(t),
                      "threshold": float(t)})
    write("otsu.json", {
        "inputs": {k: enc(v) for k, v in otsu_inputs.items() if k != "blobs_s1"},
        "smoothed_inputs": {"blobs_s1": {"from": "blobs", "sigma": 1.0}},
        "cases": cases,
    })

    # ---- fill holes, label, edt ---------------------------------------------------------
    holes = rng.random((48, 56)) < 0.62
    holes[10:20, 10:22] = True
    holes[13:16, 14:17] = False  # a clean square hole
    holes[30:40, 30:50] = True
    holes[33:37, 29:35] = False  # a notch open to the outside: not a hole
    filled = ndi.binary_fill_holes(holes)
    sparse = rng.random((48, 56)) < 0.45
    fg = blobs_s1 > threshold_otsu(blobs_s1)
    dense = rng.random((40, 52)) < 0.85
    write("binary.json", {
        "inputs": {"holes": enc(holes), "sparse": enc(sparse), "fg": enc(fg),
                   "dense": enc(dense)},
        "fill_holes": [{"input": "holes", "output": enc(filled)},
                       {"input": "sparse", "output": enc(ndi.binary_fill_holes(sparse))}],
        "label": [
            {"input": name, "connectivity": conn,
             "output": enc(label(m, connectivity=conn))}
            for name, m in [("sparse", sparse), ("holes", holes), ("fg", fg)]
            for conn in (1, 2)
        ],
        "edt": [
            {"input": name, "output": enc(ndi.distance_transform_edt(m).astype(np.float32))}
            for name, m in [("fg", fg), ("dense", dense), ("sparse", sparse)]
        ],
    })

    # ---- peaks and watershed ------------------------------------------------------------
    comps = label(fg, connectivity=2)
    dist = ndi.distance_transform_edt(fg).astype(np.float32)
    dist_s = smooth(dist, 1.0)
    quant = (np.round(blobs_s1 * 12) / 12).astype(np.float32)  # plateaus everywhere
    qcomps = label(quant > 0.2, connectivity=1)
    peak_inputs = {"dist_s": dist_s, "quant": quant, "uniform": uniform}
    label_inputs = {"comps": comps, "qcomps": qcomps}
    cases = []
    for img_name, md, thr, lab_name in [
        ("dist_s", 4, 0.0, None), ("dist_s", 4, 0.0, "comps"), ("dist_s", 2, 1.5, "comps"),
        ("dist_s", 1, 0.0, "comps"), ("dist_s", 0, 3.0, None),
        ("quant", 2, 0.1, None), ("quant", 3, 0.1, "qcomps"), ("quant", 1, 0.0, "qcomps"),
        ("uniform", 3, 0.5, None), ("uniform", 5, 0.0, None),
    ]:
        kw = {} if lab_name is None else {"labels": label_inputs[lab_name]}
        p = peak_local_max(peak_inputs[img_name], min_distance=md, threshold_abs=thr,
                           exclude_border=False, **kw)
        cases.append({"input": img_name, "min_distance": md, "threshold_abs": thr,
                      "labels": lab_name, "peaks": p.tolist()})
    write("peaks.json", {
        "inputs": {k: enc(v) for k, v in peak_inputs.items()},
        "labels": {k: enc(v) for k, v in label_inputs.items()},
        "cases": cases,
    })

    # Watershed 1: distance declumping of the blob foreground.
    pk = peak_local_max(dist_s, min_distance=3, threshold_abs=0.0, exclude_border=False,
                        labels=comps)
    markers1 = np.zeros((H, W), np.int64)
    for i, (r, c) in enumerate(pk):
        markers1[r, c] = i + 1
    elev1 = -dist_s
    ws1 = watershed(elev1, markers1, mask=fg)
    # Watershed 2: plateaus and equal-valued markers, no mask.
    elev2 = np.round(rng.random((30, 40)) * 3).astype(np.float32)
    elev2[5:25, 10:30] = 1.0  # a large plateau
    markers2 = np.zeros((30, 40), np.int64)
    for k, (r, c) in enumerate([(6, 11), (6, 28), (24, 11), (24, 28), (15, 20), (0, 0),
                                (29, 39), (15, 2)]):
        markers2[r, c] = k + 1
    elev2[6, 11] = elev2[6, 28] = elev2[24, 11] = elev2[24, 28] = 0.0
    ws2 = watershed(elev2, markers2)
    # Watershed 3: noisy elevation, markers that share a label, a mask with holes.
    elev3 = rng.random((25, 33)).astype(np.float32)
    markers3 = np.zeros((25, 33), np.int64)
    markers3[3, 3] = markers3[20, 30] = 1
    markers3[12, 16] = 2
    markers3[3, 30] = 3
    markers3[22, 4] = 4  # outside the mask below
    mask3 = rng.random((25, 33)) < 0.8
    mask3[22, 4] = False
    ws3 = watershed(elev3, markers3, mask=mask3)
    write("watershed.json", {"cases": [
        {"elevation": enc(elev1), "markers": enc(markers1), "mask": enc(fg),
         "output": enc(ws1)},
        {"elevation": enc(elev2), "markers": enc(markers2), "mask": None, "output": enc(ws2)},
        {"elevation": enc(elev3), "markers": enc(markers3), "mask": enc(mask3),
         "output": enc(ws3)},
    ]})

    # ---- measurements -------------------------------------------------------------------
    intensity = blobs_u16.astype(np.float64) / 65535.0
    lab = ws1
    props = regionprops_table(lab, intensity_image=intensity, properties=(
        "label", "area", "centroid", "bbox", "intensity_mean", "intensity_min",
        "intensity_max", "intensity_std"))
    idx = np.arange(1, lab.max() + 1)
    integrated = ndi.sum_labels(intensity, lab, idx)
    objects = []
    for i in range(len(props["label"])):
        objects.append({
            "label": int(props["label"][i]),
            "area": int(props["area"][i]),
            "center_y": float(props["centroid-0"][i]),
            "center_x": float(props["centroid-1"][i]),
            "bbox": [int(props[f"bbox-{k}"][i]) for k in range(4)],  # min_row, min_col, max_row, max_col
            "integrated": float(integrated[props["label"][i] - 1]),
            "mean": float(props["intensity_mean"][i]),
            "std": float(props["intensity_std"][i]),
            "min": float(props["intensity_min"][i]),
            "max": float(props["intensity_max"][i]),
        })
    write("measure.json", {"labels": enc(lab), "intensity_u16": enc(blobs_u16),
                           "objects": objects})

    # ---- nuclei pipeline, composed of the same peer calls -------------------------------
    write("nuclei.json", {"cases": [nuclei_case(rng, 96, 128, 0, 4),
                                    nuclei_case(rng, 80, 80, 1, 5)]})

    print("numpy", np.__version__, "scipy", scipy.__version__, "scikit-image",
          skimage.__version__)


def nuclei_case(rng, h, w, variant, seed_distance):
    """segment_nuclei's steps with default parameters, spelled with SciPy/scikit-image."""
    centres, radii = [], []
    # Clusters of touching discs of 4..10 px radius, placed on a jittered grid.
    for r0 in range(14, h - 8, 22):
        for c0 in range(14, w - 8, 24):
            rad = int(rng.integers(4, 11))
            centres.append((r0 + rng.integers(-3, 4), c0 + rng.integers(-3, 4)))
            radii.append(rad)
            if rng.random() < 0.5:  # a touching neighbour
                rad2 = int(rng.integers(4, 9))
                ang = rng.random() * 2 * math.pi
                d = rad + rad2 - 1
                centres.append((centres[-1][0] + d * math.sin(ang),
                                centres[-1][1] + d * math.cos(ang)))
                radii.append(rad2)
    img = disk_image(rng, h, w, centres, radii, noise=2500 if variant else 1500)
    x = scale_u16(img)
    s = smooth(x, 1.0)
    t = threshold_otsu(s)
    fgm = ndi.binary_fill_holes(s > t)
    comps = label(fgm, connectivity=2)
    dist = ndi.distance_transform_edt(fgm).astype(np.float32)
    ds = smooth(dist, 0.5)
    pk = peak_local_max(ds, min_distance=seed_distance, threshold_abs=0.0,
                        exclude_border=False, labels=comps)
    markers = np.zeros((h, w), np.int64)
    n = 0
    seeded = set()
    for r, c in pk:
        n += 1
        markers[r, c] = n
        seeded.add(int(comps[r, c]))
    for l in range(1, comps.max() + 1):
        if l not in seeded:
            idx = np.flatnonzero(comps.ravel() == l)
            n += 1
            markers.ravel()[idx[np.argmax(ds.ravel()[idx])]] = n
    ws = watershed(-ds, markers, mask=fgm)
    areas = np.bincount(ws.ravel(), minlength=n + 1)
    lo = math.ceil(math.pi * (8 / 2) ** 2)
    hi = math.floor(math.pi * (80 / 2) ** 2)
    keep = (areas >= lo) & (areas <= hi)
    keep[0] = False
    out = raster_relabel(np.where(keep[ws], ws, 0))
    return {"input": enc(img), "min_seed_distance": seed_distance,
            "threshold_bits": f32bits(t), "n_discs": len(centres), "labels": enc(out)}


if __name__ == "__main__":
    main()
