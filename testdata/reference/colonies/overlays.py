"""Small overlay PNGs of `ipscope segment --object colonies --colonies-from transmitted` on
the AICS whole-well brightfield images, for docs/colonies.md.

    for f in $IPSCOPE_DATA/aics_hipsc_colony_brightfield/96well_wholewell/*.tiff; do
      ipscope segment "$f" --object colonies --colonies-from transmitted \
        --labels /tmp/colonies/$(basename "$f" | cut -c1-10).tif
    done
    .venv/bin/python testdata/reference/colonies/overlays.py /tmp/colonies docs/colonies
"""
import glob
import os
import sys

import numpy as np
import tifffile
from skimage.io import imsave
from skimage.segmentation import find_boundaries
from skimage.transform import resize

labels_dir, out_dir = sys.argv[1], sys.argv[2]
data = os.environ.get("IPSCOPE_DATA", "../shared/data")
for f in sorted(glob.glob(f"{data}/aics_hipsc_colony_brightfield/96well_wholewell/*.tiff")):
    key = os.path.basename(f)[:10]
    img = tifffile.imread(f).astype(float)
    lab = tifffile.imread(f"{labels_dir}/{key}.tif")
    lo, hi = np.percentile(img[img > 0], [1, 99.5])
    g = np.clip((img - lo) / (hi - lo), 0, 1) * 255
    rgb = np.stack([g, g, g], -1)
    m = lab > 0
    rgb[m] = rgb[m] * 0.55 + np.array([110, 40, 0]) * 1.0
    b = find_boundaries(lab, mode="outer")
    rgb[b] = [255, 80, 0]
    small = resize(rgb, (360, 360), anti_aliasing=True, preserve_range=True)
    imsave(f"{out_dir}/{key}_colonies.png", small.astype(np.uint8), check_contrast=False)
    print(key, int(lab.max()), f"{m.mean():.3f}")
