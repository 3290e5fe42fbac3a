"""Reference values for ipscope's per-object colocalisation (MeasureColocalization)
(crates/ipscope-core/tests/algorithms/measure_correlation.rs).

Peer: cp-measure's `get_correlation_pearson`, `get_correlation_manders_fold`,
`get_correlation_overlap` and `get_correlation_rwc` (CellProfiler's MeasureColocalization,
threshold 15 %).

Inputs: CellProfiler's ExampleHuman images (`$IPSCOPE_DATA/cp_examplehuman`, default
../shared/data): DNA (d0) against PH3 (d1) and against the cell stain (d2), divided by 255. The
objects are the 256 tiles of a 32-pixel grid (label = (row // 32) * 16 + col // 32 + 1), so the
test can rebuild them exactly; nothing from the images is copied, only the peer's values
(10 significant digits).

    .venv/bin/python testdata/reference/measure/make_correlation_refs.py
"""

import json
import sys

import numpy as np
import tifffile
import cp_measure
from cp_measure.core.measurecolocalization import (
    get_correlation_manders_fold,
    get_correlation_overlap,
    get_correlation_pearson,
    get_correlation_rwc,
)

from make_measure_refs import DATA, HERE

TILE = 32
STEM = "cp_examplehuman/AS_09125_050116030001_D03f00d{}.tif"


def g(x):
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.10g}")


def main():
    if not (DATA / "cp_examplehuman").is_dir():
        sys.exit(f"data not found: {DATA} (set IPSCOPE_DATA)")
    imgs = [tifffile.imread(DATA / STEM.format(k)) for k in range(3)]
    h, w = imgs[0].shape
    rr, cc = np.mgrid[:h, :w]
    labels = (rr // TILE) * (w // TILE) + cc // TILE + 1
    pairs = []
    for second in (1, 2):
        a = imgs[0].astype(np.float64) / 255.0
        b = imgs[second].astype(np.float64) / 255.0
        cols = {}
        with np.errstate(all="ignore"):
            for f in (get_correlation_pearson, get_correlation_manders_fold,
                      get_correlation_overlap, get_correlation_rwc):
                for k, v in f(a, b, labels).items():
                    cols[k] = [g(x) for x in v]
        pairs.append({"first": STEM.format(0), "second": STEM.format(second), "columns": cols})
    out = {
        "generator": "testdata/reference/measure/make_correlation_refs.py",
        "tile": TILE,
        "versions": {"numpy": np.__version__, "cp-measure": getattr(cp_measure, "__version__", "0.3.0")},
        "pairs": pairs,
    }
    (HERE / "correlation.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{len(pairs)} pairs x {labels.max()} tiles -> correlation.json")


if __name__ == "__main__":
    main()
