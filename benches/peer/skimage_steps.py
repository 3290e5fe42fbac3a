#!/usr/bin/env python3
"""Seconds per step of the scikit-image recipe (benches/peer/skimage_recipe.py), per field.

Shows where the peer's time goes on this host, e.g. when its MPx/s falls outside the range
the issue gives for a 2-core machine. The steps and their arguments are those of
`skimage_recipe.recipe` (kept in step with it by hand), each timed on its own:

    OMP_NUM_THREADS=1 python skimage_steps.py PLATE_DIR [--limit N]

Prints one line per field and the mean of each step.
"""

import argparse
import glob
import os
import time

import numpy as np
import scipy.ndimage as ndi
import tifffile
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label, regionprops_table
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed
from skimage.util import img_as_float

from skimage_recipe import PROPERTIES

STEPS = ("read", "gaussian", "otsu", "fill_holes", "remove_small", "edt", "label", "peaks",
         "watershed", "regionprops")


def timed_recipe(path):
    t = [time.perf_counter()]
    img = tifffile.imread(path)
    t.append(time.perf_counter())
    f = gaussian(img_as_float(img), sigma=1)
    t.append(time.perf_counter())
    threshold = threshold_otsu(f)
    t.append(time.perf_counter())
    fg = ndi.binary_fill_holes(f > threshold)
    t.append(time.perf_counter())
    fg = remove_small_objects(fg, max_size=29)
    t.append(time.perf_counter())
    dist = ndi.distance_transform_edt(fg)
    t.append(time.perf_counter())
    comps = label(fg)
    t.append(time.perf_counter())
    peaks = peak_local_max(dist, min_distance=7, labels=comps, exclude_border=False)
    t.append(time.perf_counter())
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    t.append(time.perf_counter())
    table = regionprops_table(labels, intensity_image=img, properties=PROPERTIES)
    t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])], len(table["label"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plate")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.plate, "*.tif")))
    if args.limit:
        files = files[: args.limit]
    if not files:
        raise SystemExit(f"skimage_steps.py: no .tif files in {args.plate}")
    total = [0.0] * len(STEPS)
    for p in files:
        secs, n = timed_recipe(p)
        total = [a + b for a, b in zip(total, secs)]
        print(f"{os.path.basename(p)}: {n} objects, {sum(secs):.3f} s: "
              + " ".join(f"{s}={v:.3f}" for s, v in zip(STEPS, secs)))
    k = len(files)
    print(f"mean of {k} fields: {sum(total) / k:.3f} s: "
          + " ".join(f"{s}={v / k:.3f}" for s, v in zip(STEPS, total)))


if __name__ == "__main__":
    main()
