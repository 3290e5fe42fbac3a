#!/usr/bin/env python3
"""The scikit-image recipe of issue #8, timed per field on one thread.

Per field: read the TIFF, Gaussian (sigma 1) -> Otsu -> fill holes -> remove objects
< 30 px -> EDT -> peak_local_max(min_distance=7, labels=components) -> watershed(-EDT) ->
regionprops_table with area, centroid, bbox, eccentricity, perimeter, solidity and
intensity mean/min/max. The segmentation is the peer recipe of
testdata/reference/segmentation/skimage_recipe.py.

Prints one JSON object: per-field object counts and seconds, total pixels and MPx/s.
Run it with OMP_NUM_THREADS=1 (run.sh does) so that nothing uses a second core.

    python skimage_recipe.py PLATE_DIR [--limit N]
"""

import argparse
import glob
import json
import os
import time

import numpy as np
import scipy.ndimage as ndi
import skimage
import tifffile
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label, regionprops_table
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed
from skimage.util import img_as_float

PROPERTIES = ("label", "area", "centroid", "bbox", "eccentricity", "perimeter", "solidity",
              "intensity_mean", "intensity_min", "intensity_max")


def recipe(img, tick=None):
    """The recipe on one image; `tick(step)` (if given) is called as each step ends."""
    tick = tick or (lambda step: None)
    f = gaussian(img_as_float(img), sigma=1)
    tick("gaussian")
    threshold = threshold_otsu(f)
    tick("otsu")
    fg = ndi.binary_fill_holes(f > threshold)
    tick("fill_holes")
    fg = remove_small_objects(fg, max_size=29)
    tick("remove_small")
    dist = ndi.distance_transform_edt(fg)
    tick("edt")
    comps = label(fg)
    tick("label")
    peaks = peak_local_max(dist, min_distance=7, labels=comps, exclude_border=False)
    tick("peaks")
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    tick("watershed")
    table = regionprops_table(labels, intensity_image=img, properties=PROPERTIES)
    tick("regionprops")
    return table


def plate_files(plate, limit=0):
    """The plate's TIFFs in name order, the first `limit` of them when limit > 0."""
    files = sorted(glob.glob(os.path.join(plate, "*.tif")))
    return files[:limit] if limit else files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plate")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    files = plate_files(args.plate, args.limit)
    fields = []
    pixels = 0
    t_all = time.perf_counter()
    for p in files:
        t0 = time.perf_counter()
        img = tifffile.imread(p)
        table = recipe(img)
        dt = time.perf_counter() - t0
        pixels += img.size
        fields.append({"file": os.path.basename(p), "objects": int(len(table["label"])),
                       "seconds": dt})
    total = time.perf_counter() - t_all
    print(json.dumps({"tool": f"scikit-image {skimage.__version__}", "fields": fields,
                      "pixels": pixels, "seconds": total,
                      "mpx_per_s": pixels / 1e6 / total if total > 0 else None}))


if __name__ == "__main__":
    main()
