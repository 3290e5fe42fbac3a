"""Reference values for ipscope's Texture (Haralick) and Zernike measurements
(crates/ipscope-core/tests/algorithms/measure_texture.rs).

Peer: cp-measure, CellProfiler's MeasureTexture (`get_texture`: image converted with
`skimage.util.img_as_ubyte`, 256 grey levels, `mahotas.features.haralick(ignore_zeros=True)` on
each object's masked bounding box, scale 3, 4 directions) and MeasureObjectSizeShape's Zernike
features (`get_zernike`, degree 9, centrosome's minimum enclosing circle).

Inputs are the real label and intensity images that make_measure_refs.py uses (from
$IPSCOPE_DATA, default ../shared/data); nothing from them is copied, only relative paths, labels
and the peer's values (9 significant digits).

    .venv/bin/python testdata/reference/measure/make_texture_zernike_refs.py
"""

import json
import sys

import numpy as np
import cp_measure
import mahotas
from cp_measure.core.measuretexture import get_texture
from cp_measure.core.measureobjectsizeshape import get_zernike

from make_measure_refs import DATA, HERE, inputs, read


def g(x):
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.9g}")


def measure(img_rel, lab_rel):
    raw = read(img_rel)
    labels = read(lab_rel).astype(np.int64)
    pixels = raw.astype(np.float64) / float(np.iinfo(raw.dtype).max)
    present = np.unique(labels[labels > 0])
    contiguous = np.zeros(labels.max() + 1, np.int64)
    contiguous[present] = np.arange(1, len(present) + 1)
    dense = contiguous[labels]
    tex = get_texture(dense, pixels, scale=3, gray_levels=256)
    zer = get_zernike(dense, pixels)
    cols = {"label": [int(x) for x in present]}
    for k, v in tex.items():
        cols[k] = [g(x) for x in v]
    for k, v in zer.items():
        cols[k] = [g(x) for x in v]
    return {"image": img_rel, "labels": lab_rel, "columns": cols}


def main():
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA} (set IPSCOPE_DATA)")
    out = {
        "generator": "testdata/reference/measure/make_texture_zernike_refs.py",
        "versions": {
            "numpy": np.__version__,
            "cp-measure": getattr(cp_measure, "__version__", "0.3.0"),
            "mahotas": mahotas.__version__,
        },
        "fields": [measure(i, l) for i, l in inputs()],
    }
    n = sum(len(f["columns"]["label"]) for f in out["fields"])
    (HERE / "texture_zernike.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{len(out['fields'])} fields, {n} objects -> texture_zernike.json")


if __name__ == "__main__":
    main()
