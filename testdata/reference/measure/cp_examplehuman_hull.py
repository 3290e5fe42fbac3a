"""Evidence for docs/measurements.md (ExampleHuman): CellProfiler 4.0.6's Solidity, Orientation
and edge intensities on the cells whose masks equal ipscope's.

Not a test reference: it reads a Cells label image that ipscope wrote (argument 1, a 16-bit
TIFF of the cells grown in `crates/ipscope/tests/facade/cp_examplehuman.rs`) and CellProfiler's
Cells.csv from $IPSCOPE_DATA/cp_examplehuman, finds the CellProfiler rows whose centroid equals
an ipscope cell's (1e-6 px) and prints, for each:

- CellProfiler's convex area implied by its Solidity (Area / Solidity) beside the convex area
  of scikit-image 0.26's `convex_hull_image` (hull-edge pixel centres included) and of the
  earlier `grid_points_in_poly` crossing test (`point_in_polygon` of scikit-image's old
  `_pnpoly.pyx`, transcribed below, on the same hull vertices), which leaves out some pixel
  centres on the hull's edges;
- Orientation: scikit-image's in degrees beside CellProfiler's × 180/π (4.0.6 stores radians);
- MeanIntensityEdge_DNA: CellProfiler's beside `find_boundaries(mode="inner")` and
  `centrosome.outline`.

    .venv/bin/python testdata/reference/measure/cp_examplehuman_hull.py CELLS.tif
"""

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.measure as sm
import tifffile
from centrosome.outline import outline
from scipy.spatial import ConvexHull
from skimage.morphology.convex_hull import _offsets_diamond, possible_hull
from skimage.segmentation import find_boundaries
from skimage.util import unique_rows

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("IPSCOPE_DATA", HERE.parents[2] / ".." / "shared" / "data")).resolve()


def old_grid_points_in_poly(shape, verts):
    """scikit-image's former binary crossing test: a point on an edge is in or out by the
    half-open rule, not always in."""
    vx, vy = verts[:, 0], verts[:, 1]
    out = np.zeros(shape, bool)
    n = len(vx)
    for m in range(shape[0]):
        for k in range(shape[1]):
            c = False
            j = n - 1
            for i in range(n):
                if (((vy[i] <= k) and (k < vy[j])) or ((vy[j] <= k) and (k < vy[i]))) and (
                    m < (vx[j] - vx[i]) * (k - vy[i]) / (vy[j] - vy[i]) + vx[i]
                ):
                    c = not c
                j = i
            out[m, k] = c
    return out


def old_hull(img):
    """convex_hull_image's vertices (pixel-edge midpoints of the row/column end pixels)."""
    coords = possible_hull(np.ascontiguousarray(img, dtype=np.uint8))
    coords = unique_rows((coords[:, None, :] + _offsets_diamond(2)).reshape(-1, 2))
    hull = ConvexHull(coords)
    return old_grid_points_in_poly(img.shape, hull.points[hull.vertices])


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = DATA / "cp_examplehuman"
    lab = tifffile.imread(sys.argv[1]).astype(np.int64)
    dna = tifffile.imread(d / "AS_09125_050116030001_D03f00d0.tif").astype(float) / 255
    cp = pd.read_csv(d / "Cells.csv")
    fb = find_boundaries(lab, mode="inner")
    ol = outline(lab) > 0
    for p in sm.regionprops(lab):
        cy, cx = p.centroid
        hit = cp[(abs(cp.Location_Center_X - cx) < 1e-6) & (abs(cp.Location_Center_Y - cy) < 1e-6)]
        if len(hit) != 1 or hit.AreaShape_Area.iloc[0] != p.area:
            continue
        r = hit.iloc[0]
        m = lab == p.label
        print(
            f"cell {p.label}: area {p.area:.0f}; convex area CellProfiler {p.area / r.AreaShape_Solidity:.1f}, "
            f"old crossing test {old_hull(p.image).sum()}, skimage 0.26 {p.image_convex.sum()}; "
            f"orientation {np.degrees(p.orientation):.9f} vs CellProfiler x 180/pi "
            f"{np.degrees(r.AreaShape_Orientation):.9f}; MeanIntensityEdge_DNA CellProfiler "
            f"{r.Intensity_MeanIntensityEdge_DNA:.9f}, find_boundaries {dna[m & fb].mean():.9f}, "
            f"centrosome outline {dna[m & ol].mean():.9f}"
        )


if __name__ == "__main__":
    main()
