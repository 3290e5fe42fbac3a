"""Reference for propagation (cells from nuclei): CellProfiler's own implementation,
centrosome.propagate.propagate(image, labels, mask, weight), which IdentifySecondaryObjects'
"Propagation" method calls with weight = the regularization factor.

Input: a 200x200 crop (rows 150..350, cols 150..350) of CellProfiler's ExampleHuman images
in $IPSCOPE_DATA/cp_examplehuman (d0 = DNA, d2 = cell body, uint8). Seeds: DNA / 255,
Gaussian sigma 1 (skimage), Li threshold, fill holes, objects >= 30 px, 8-connected labels.
Mask: cell body / 255 > 0.8 * Li threshold, or a seed. lambda = 0.05 (ExampleHuman.cppipe).
Writes propagate.json next to this script: the crop's cell-body pixels (uint8), seeds, mask
and centrosome's labels (run-length coded: [value, run, value, run, ...] over the
row-major pixels).

Run: IPSCOPE_DATA=../shared/data .venv/bin/python testdata/reference/segmentation/make_propagate_refs.py
(centrosome comes with cp-measure, see testdata/reference/requirements.txt).
"""

import json
import os
import pathlib

import numpy as np
import tifffile
from centrosome.propagate import propagate
from scipy import ndimage as ndi
from skimage import filters, measure, morphology

data = pathlib.Path(os.environ.get("IPSCOPE_DATA", "../shared/data")) / "cp_examplehuman"
stem = "AS_09125_050116030001_D03f00"
rows, cols = slice(150, 350), slice(150, 350)
dna = tifffile.imread(data / f"{stem}d0.tif")[rows, cols]
body = tifffile.imread(data / f"{stem}d2.tif")[rows, cols]
assert dna.dtype == np.uint8 and body.dtype == np.uint8

smooth = filters.gaussian(dna.astype(np.float64) / 255.0, sigma=1.0)
fg = ndi.binary_fill_holes(smooth > filters.threshold_li(smooth))
fg = morphology.remove_small_objects(fg, max_size=29)
seeds = measure.label(fg, connectivity=2).astype(np.int32)

img = body.astype(np.float64) / 255.0
mask = (img > 0.8 * filters.threshold_li(img)) | (seeds > 0)
LAMBDA = 0.05
labels, _ = propagate(img, seeds, mask, LAMBDA)


def rle(a):
    flat = np.asarray(a).ravel().astype(np.int64)
    out, start = [], 0
    for i in range(1, flat.size + 1):
        if i == flat.size or flat[i] != flat[start]:
            out += [int(flat[start]), i - start]
            start = i
    return out


out = {
    "source": f"cp_examplehuman {stem}d2.tif rows 150..350 cols 150..350",
    "width": int(img.shape[1]),
    "height": int(img.shape[0]),
    "lambda": LAMBDA,
    "n_seeds": int(seeds.max()),
    "image_u8": body.ravel().astype(int).tolist(),
    "seeds_rle": rle(seeds),
    "mask_rle": rle(mask.astype(np.int64)),
    "labels_rle": rle(labels),
}
path = pathlib.Path(__file__).with_name("propagate.json")
path.write_text(json.dumps(out, separators=(",", ":")))
print(f"{path}: {out['n_seeds']} seeds, {int(mask.sum())} mask px, "
      f"{int((labels > 0).sum())} labelled px, {path.stat().st_size} bytes")
