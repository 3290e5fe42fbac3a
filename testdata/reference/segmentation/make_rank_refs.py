"""Reference grey erosion / dilation / opening with a square window (SciPy).

ipscope_core::ops::rank ignores pixels outside the image, which for a minimum or maximum
equals scipy.ndimage's mode='nearest'. Writes rank.json next to this script:
a float32 field (integers 0..999 plus a NaN-free ramp, so values are exact in float32) and,
for each radius r, grey_erosion / grey_dilation / grey_opening with size (2r+1, 2r+1).

Run: .venv/bin/python testdata/reference/segmentation/make_rank_refs.py
"""

import json
import pathlib

import numpy as np
from scipy import ndimage as ndi

rng = np.random.default_rng(20261126)
h, w = 23, 37
img = (rng.integers(0, 1000, size=(h, w)) + np.arange(w)[None, :] * 3).astype(np.float32)
cases = []
for r in [0, 1, 3, 7, 20]:
    size = (2 * r + 1, 2 * r + 1)
    cases.append(
        {
            "radius": r,
            "erosion": ndi.grey_erosion(img, size=size, mode="nearest").ravel().tolist(),
            "dilation": ndi.grey_dilation(img, size=size, mode="nearest").ravel().tolist(),
            "opening": ndi.grey_opening(img, size=size, mode="nearest").ravel().tolist(),
        }
    )
out = {
    "scipy": __import__("scipy").__version__,
    "width": w,
    "height": h,
    "image": img.ravel().tolist(),
    "cases": cases,
}
path = pathlib.Path(__file__).with_name("rank.json")
path.write_text(json.dumps(out))
print(f"wrote {path}")
