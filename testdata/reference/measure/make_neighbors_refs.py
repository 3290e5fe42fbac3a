"""Reference values for ipscope's Neighbors measurements
(crates/ipscope-core/tests/algorithms/measure_neighbors.rs).

Peer: cp-measure 0.3.0's `measureobjectneighbors(masks, masks, method, distance)`, CellProfiler's
MeasureObjectNeighbors as a library, with the objects as their own neighbours, for
"Within a specified distance" (d = 5, CellProfiler's default, and d = 2) and "Adjacent".

NumberOfNeighbors, PercentTouching, FirstClosestDistance, SecondClosestDistance and
AngleBetweenNeighbors are cp-measure's values. cp-measure 0.3.0 writes the object itself as
FirstClosestObjectNumber (it takes column 0 of the sorted distance matrix, which is the object's
zero distance to itself, and column 1 as the second); CellProfiler (measureobjectneighbors.py,
`first_object_number[has_pixels] = order[has_pixels, 1] + 1`) skips that column. The object
numbers are therefore taken from CellProfiler's definition here: the stable sort
(`numpy.lexsort`) of the centroid distance row (centrosome's `centers_of_labels`), columns 1
and 2. The script checks that the distances cp-measure reports are those of these two objects.

Inputs are the real label images that make_measure_refs.py uses (from $IPSCOPE_DATA, default
../shared/data); labels are made contiguous for cp-measure and mapped back (ObjectNumber =
label value). Nothing from the data is copied, only relative paths, labels and values
(12 significant digits).

    .venv/bin/python testdata/reference/measure/make_neighbors_refs.py
"""

import json
import sys

import numpy as np
import cp_measure
from centrosome.cpmorphology import centers_of_labels
from cp_measure.multimask.measureobjectneighbors import (
    D_ADJACENT,
    D_WITHIN,
    measureobjectneighbors,
)

from make_measure_refs import DATA, HERE, inputs, read

METHODS = [(D_WITHIN, 5, "5"), (D_WITHIN, 2, "2"), (D_ADJACENT, 1, "Adjacent")]


def g(x):
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.12g}")


def measure(lab_rel):
    labels = read(lab_rel).astype(np.int64)
    present = np.unique(labels[labels > 0])
    contiguous = np.zeros(labels.max() + 1, np.int64)
    contiguous[present] = np.arange(1, len(present) + 1)
    dense = contiguous[labels]
    n = len(present)
    assert n >= 3, lab_rel
    centers = centers_of_labels(dense).transpose()
    di = centers[:, None, 0] - centers[None, :, 0]
    dj = centers[:, None, 1] - centers[None, :, 1]
    dm = np.sqrt(di * di + dj * dj)
    order = np.lexsort([dm])
    assert (order[:, 0] == np.arange(n)).all()
    first, second = order[:, 1], order[:, 2]
    cols = {"label": [int(x) for x in present]}
    for method, d, scale in METHODS:
        r = measureobjectneighbors(dense, dense, method, d)
        get = lambda f: np.asarray(r[f"Neighbors_{f}_{scale}"], dtype=float)
        rows = np.arange(n)
        np.testing.assert_allclose(get("FirstClosestDistance"), dm[rows, first], rtol=1e-12)
        np.testing.assert_allclose(get("SecondClosestDistance"), dm[rows, second], rtol=1e-12)
        cols[f"NumberOfNeighbors_{scale}"] = [int(x) for x in get("NumberOfNeighbors")]
        cols[f"PercentTouching_{scale}"] = [g(x) for x in get("PercentTouching")]
        cols[f"FirstClosestObjectNumber_{scale}"] = [int(present[j]) for j in first]
        cols[f"FirstClosestDistance_{scale}"] = [g(x) for x in get("FirstClosestDistance")]
        cols[f"SecondClosestObjectNumber_{scale}"] = [int(present[j]) for j in second]
        cols[f"SecondClosestDistance_{scale}"] = [g(x) for x in get("SecondClosestDistance")]
        cols[f"AngleBetweenNeighbors_{scale}"] = [g(x) for x in get("AngleBetweenNeighbors")]
    return {"labels": lab_rel, "columns": cols}


def main():
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA} (set IPSCOPE_DATA)")
    out = {
        "generator": "testdata/reference/measure/make_neighbors_refs.py",
        "versions": {"numpy": np.__version__, "cp-measure": getattr(cp_measure, "__version__", "0.3.0")},
        "fields": [measure(l) for _, l in inputs()],
    }
    n = sum(len(f["columns"]["label"]) for f in out["fields"])
    (HERE / "neighbors.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{len(out['fields'])} fields, {n} objects -> neighbors.json")


if __name__ == "__main__":
    main()
