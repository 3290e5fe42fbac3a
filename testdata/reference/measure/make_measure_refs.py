"""Reference values for ipscope's per-object measurements (crates/ipscope-cli/tests/cli/measure.rs).

Peers: scikit-image `regionprops` (AreaShape, intensity mean/min/max/std, weighted centroid),
cp-measure (CellProfiler's MeasureObjectSizeShape/Intensity as a library: FormFactor,
Compactness, Feret diameters, quartiles/median/MAD with legacy=True, mass displacement,
max-intensity location, and the edge intensities over CellProfiler 4's edge pixels,
`skimage.segmentation.find_boundaries(labels, mode="inner")`).

Inputs are real label images + intensity images from $IPSCOPE_DATA (default ../shared/data):
a deterministic subset of dsb2018_fluo_subset (manual masks, uint8 images) and the StarDist
DSB2018 sample (uint16 image, non-contiguous label ids). Nothing from the data sets is copied;
the output stores the relative paths, the label of every object and the peers' values
(12 significant digits, far below the 1e-6 test tolerance).

    .venv/bin/python testdata/reference/measure/make_measure_refs.py
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import skimage
import tifffile
from skimage.io import imread
from skimage.measure import regionprops_table

import cp_measure
from cp_measure.core.measureobjectintensity import get_intensity
from cp_measure.core.measureobjectsizeshape import get_feret, get_sizeshape

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("IPSCOPE_DATA", HERE.parents[2] / ".." / "shared" / "data")).resolve()

# Every third dsb2018 image in index order (13 images, every size class), plus StarDist's.
def inputs():
    index = (DATA / "dsb2018_fluo_subset" / "index.csv").read_text().splitlines()[1:]
    ids = [line.split(",")[0] for line in index][::3]
    for i in ids:
        yield (f"dsb2018_fluo_subset/images/{i}.png", f"dsb2018_fluo_subset/labels/{i}.png")
    yield ("stardist_dsb2018_sample/img2d.tif", "stardist_dsb2018_sample/mask2d.tif")


def read(rel):
    p = DATA / rel
    return tifffile.imread(p) if p.suffix == ".tif" else imread(p)


def g(x):
    return float(f"{float(x):.12g}")


def measure(img_rel, lab_rel):
    raw = read(img_rel)
    labels = read(lab_rel).astype(np.int64)
    scale = float(np.iinfo(raw.dtype).max)
    pixels = raw.astype(np.float64) / scale
    props = regionprops_table(
        labels,
        pixels,
        properties=[
            "label", "area", "perimeter", "area_convex", "solidity", "extent", "eccentricity",
            "axis_major_length", "axis_minor_length", "orientation", "euler_number",
            "equivalent_diameter_area", "area_bbox", "centroid", "bbox", "intensity_mean",
            "intensity_min", "intensity_max", "intensity_std", "centroid_weighted",
        ],
    )
    present = props["label"]
    # cp-measure wants contiguous labels 1..N: relabel in label order, map back by index.
    contiguous = np.zeros(labels.max() + 1, np.int64)
    contiguous[present] = np.arange(1, len(present) + 1)
    dense = contiguous[labels]
    ss = get_sizeshape(dense, pixels, calculate_advanced=False, new_features=False)
    fe = get_feret(dense, pixels)
    it = get_intensity(dense, pixels, legacy=True)
    # CellProfiler 4's edge pixels (measureobjectintensity.py and cp-measure:
    # find_boundaries(labels, mode="inner"), 4-neighbourhood, image border not an edge).
    edge = {
        k: it[f"Intensity_{k}"]
        for k in ["IntegratedIntensityEdge", "MeanIntensityEdge", "StdIntensityEdge",
                  "MinIntensityEdge", "MaxIntensityEdge"]
    }
    cols = {
        "label": [int(x) for x in present],
        # scikit-image regionprops
        "Area": props["area"],
        "Perimeter": props["perimeter"],
        "ConvexArea": props["area_convex"],
        "Solidity": props["solidity"],
        "Extent": props["extent"],
        "Eccentricity": props["eccentricity"],
        "MajorAxisLength": props["axis_major_length"],
        "MinorAxisLength": props["axis_minor_length"],
        "Orientation": np.degrees(props["orientation"]),
        "EulerNumber": props["euler_number"],
        "EquivalentDiameter": props["equivalent_diameter_area"],
        "BoundingBoxArea": props["area_bbox"],
        "Center_X": props["centroid-1"],
        "Center_Y": props["centroid-0"],
        "BoundingBoxMinimum_X": props["bbox-1"],
        "BoundingBoxMinimum_Y": props["bbox-0"],
        "BoundingBoxMaximum_X": props["bbox-3"],
        "BoundingBoxMaximum_Y": props["bbox-2"],
        "MeanIntensity": props["intensity_mean"],
        "MinIntensity": props["intensity_min"],
        "MaxIntensity": props["intensity_max"],
        "StdIntensity": props["intensity_std"],
        "CenterMassIntensity_X": props["centroid_weighted-1"],
        "CenterMassIntensity_Y": props["centroid_weighted-0"],
        # cp-measure (CellProfiler 4 definitions)
        "FormFactor": ss["FormFactor"],
        "Compactness": ss["Compactness"],
        "MaxFeretDiameter": fe["MaxFeretDiameter"],
        "MinFeretDiameter": fe["MinFeretDiameter"],
        "IntegratedIntensity": it["Intensity_IntegratedIntensity"],
        "LowerQuartileIntensity": it["Intensity_LowerQuartileIntensity"],
        "MedianIntensity": it["Intensity_MedianIntensity"],
        "UpperQuartileIntensity": it["Intensity_UpperQuartileIntensity"],
        "MADIntensity": it["Intensity_MADIntensity"],
        "MassDisplacement": it["Intensity_MassDisplacement"],
        "MaxIntensity_X": it["Location_MaxIntensity_X"],
        "MaxIntensity_Y": it["Location_MaxIntensity_Y"],
        # cp-measure (find_boundaries inner)
        **edge,
    }
    return {
        "image": img_rel,
        "labels": lab_rel,
        "scale": scale,
        "columns": {k: [int(x) for x in v] if k == "label" else [g(x) for x in v] for k, v in cols.items()},
    }


def main():
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA} (set IPSCOPE_DATA)")
    out = {
        "generator": "testdata/reference/measure/make_measure_refs.py",
        "versions": {
            "numpy": np.__version__,
            "scikit-image": skimage.__version__,
            "cp-measure": getattr(cp_measure, "__version__", "0.3.0"),
        },
        "fields": [measure(i, l) for i, l in inputs()],
    }
    n = sum(len(f["columns"]["label"]) for f in out["fields"])
    (HERE / "regionprops.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{len(out['fields'])} fields, {n} objects -> regionprops.json")


if __name__ == "__main__":
    main()
