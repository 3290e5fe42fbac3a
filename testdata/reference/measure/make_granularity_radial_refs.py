"""Reference values for ipscope's Granularity and RadialDistribution measurements
(crates/ipscope-core/tests/algorithms/measure_granularity.rs).

Peer: cp-measure, CellProfiler's MeasureGranularity (`get_granularity`, CellProfiler's defaults:
subsampling 0.25, background subsampling 0.25, structuring element radius 10, spectrum length 16)
and MeasureObjectIntensityDistribution (`get_radial_distribution`, 4 scaled bins) as a library.

Inputs are the real label and intensity images that make_measure_refs.py uses (from
$IPSCOPE_DATA, default ../shared/data); nothing from them is copied, only relative paths, labels
and the peer's values (10 significant digits).

    .venv/bin/python testdata/reference/measure/make_granularity_radial_refs.py
"""

import json
import sys

import numpy as np
import cp_measure
from cp_measure.core.measuregranularity import get_granularity
from cp_measure.core.measureobjectintensitydistribution import get_radial_distribution

from make_measure_refs import DATA, HERE, inputs, read


def g(x):
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.10g}")


def measure(img_rel, lab_rel):
    raw = read(img_rel)
    labels = read(lab_rel).astype(np.int64)
    pixels = raw.astype(np.float64) / float(np.iinfo(raw.dtype).max)
    present = np.unique(labels[labels > 0])
    contiguous = np.zeros(labels.max() + 1, np.int64)
    contiguous[present] = np.arange(1, len(present) + 1)
    dense = contiguous[labels]
    gr = get_granularity(dense, pixels)
    rd = get_radial_distribution(dense, pixels)
    cols = {"label": [int(x) for x in present]}
    for k, v in gr.items():
        cols[k] = [g(x) for x in v]
    for k, v in rd.items():
        cols[k.removeprefix("RadialDistribution_")] = [g(x) for x in v]
    return {"image": img_rel, "labels": lab_rel, "columns": cols}


def main():
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA} (set IPSCOPE_DATA)")
    out = {
        "generator": "testdata/reference/measure/make_granularity_radial_refs.py",
        "versions": {"numpy": np.__version__, "cp-measure": getattr(cp_measure, "__version__", "0.3.0")},
        "fields": [measure(i, l) for i, l in inputs()],
    }
    n = sum(len(f["columns"]["label"]) for f in out["fields"])
    (HERE / "granularity_radial.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{len(out['fields'])} fields, {n} objects -> granularity_radial.json")


if __name__ == "__main__":
    main()
