#!/usr/bin/env python3
"""The scikit-image peer recipe for nuclei, scored like `ipscope eval`.

Recipe (issue #4): Gaussian sigma=1 -> Otsu -> fill holes -> remove objects < 30 px ->
EDT -> peak_local_max(min_distance=7, labels=components) -> watershed(-EDT, markers, mask).
Scores: a prediction matches a truth when IoU > tau (DSB2018 rule, as
ipscope_core::ops::eval); TP/FP/FN pooled over the images of a data set; F1 at 0.5 and the
DSB2018 AP = mean over tau in 0.50:0.95 of TP/(TP+FP+FN).

Reads $IPSCOPE_DATA (default ../shared/data relative to the repository root) and writes
recipe_scores.json next to this script; the accuracy tests in
crates/ipscope-cli/tests/cli/segment.rs read it.

    .venv/bin/python testdata/reference/segmentation/skimage_recipe.py
"""

import glob
import json
import os

import numpy as np
import scipy.ndimage as ndi
import skimage
import tifffile
from skimage import io as skio
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed
from skimage.util import img_as_float

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("IPSCOPE_DATA", os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
TAUS = [0.5 + 0.05 * i for i in range(10)]


def imread(path):
    """tifffile, or Pillow for LZW TIFFs when imagecodecs is absent."""
    try:
        return tifffile.imread(path)
    except ValueError:
        from PIL import Image
        return np.array(Image.open(path))


def recipe(img):
    f = gaussian(img_as_float(img), sigma=1)
    fg = ndi.binary_fill_holes(f > threshold_otsu(f))
    fg = remove_small_objects(fg, max_size=29)
    dist = ndi.distance_transform_edt(fg)
    comps = label(fg)
    peaks = peak_local_max(dist, min_distance=7, labels=comps, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg)


def match(truth, pred):
    t, p = truth.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    tids, pids = np.unique(t[t > 0]), np.unique(p[p > 0])
    at = dict(zip(*np.unique(t[t > 0], return_counts=True)))
    ap = dict(zip(*np.unique(p[p > 0], return_counts=True)))
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(np.stack([t[both], p[both]]), axis=1, return_counts=True)
    ious = np.array([i / (at[a] + ap[b] - i) for (a, b), i in zip(pairs.T, inter)])
    out = []
    for tau in TAUS:
        tp = int((ious > tau).sum()) if len(ious) else 0
        out.append((tp, len(pids) - tp, len(tids) - tp))
    return out


def score(pairs):
    tot = np.zeros((len(TAUS), 3), np.int64)
    n_true = n_pred = 0
    for truth, pred in pairs:
        tot += np.array(match(truth, pred))
        n_true += len(np.unique(truth[truth > 0]))
        n_pred += len(np.unique(pred[pred > 0]))
    tp, fp, fn = tot[0]
    return {
        "images": len(pairs), "n_true": int(n_true), "n_pred": int(n_pred),
        "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "ap_dsb": float(np.mean([a / max(a + b + c, 1) for a, b, c in tot])),
    }


def datasets():
    d = os.path.join(DATA, "dsb2018_fluo_subset")
    yield "dsb2018_fluo_subset", [
        (skio.imread(p), skio.imread(os.path.join(d, "labels", os.path.basename(p))))
        for p in sorted(glob.glob(os.path.join(d, "images", "*.png")))]
    m = os.path.join(DATA, "mobi_nuclei_gt")
    for name in ["N2DH-GOWT1", "N2DL-HeLa"]:
        yield f"mobi_{name}", [
            (imread(p), imread(os.path.join(m, name, "gt", "man_seg" + os.path.basename(p)[1:])))
            for p in sorted(glob.glob(os.path.join(m, name, "img", "t*.tif")))]
    yield "mobi_NIH3T3", [
        (skio.imread(p), label(skio.imread(os.path.join(m, "NIH3T3", "gt", os.path.basename(p)[4:])) > 0, connectivity=1))
        for p in sorted(glob.glob(os.path.join(m, "NIH3T3", "img", "dna-*.png")))]
    s = os.path.join(DATA, "stardist_dsb2018_sample")
    yield "stardist_dsb2018_sample", [(tifffile.imread(os.path.join(s, "img2d.tif")),
                                       tifffile.imread(os.path.join(s, "mask2d.tif")))]


def main():
    out = {"skimage": skimage.__version__, "recipe": "gaussian(1) otsu fill_holes remove_small(30) "
           "edt peak_local_max(min_distance=7) watershed", "datasets": {}}
    for name, pairs in datasets():
        s = score([(t, recipe(i)) for i, t in pairs])
        out["datasets"][name] = s
        print(f"{name}: F1 {s['f1']:.3f} P {s['precision']:.3f} R {s['recall']:.3f} AP {s['ap_dsb']:.3f} "
              f"pred {s['n_pred']} / true {s['n_true']}")
    with open(os.path.join(HERE, "recipe_scores.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
