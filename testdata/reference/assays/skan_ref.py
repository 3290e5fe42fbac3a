#!/usr/bin/env python3
"""Reference skeleton graphs for ipscope-core's ops/skeleton.rs, computed by skan.

For every skeleton in skeleton.json (written by skeletonize_ref.py; run that first) plus a
few hand-drawn pixel skeletons with junction clusters, diagonal steps and isolated cycles,
`skan.Skeleton(skel)` gives the paths between endpoints/junctions; for each path we record
its first and last pixel ([row, col]), its pixel count and `path_lengths()` (the distance
along the path, 1 per axial step and sqrt(2) per diagonal one), and `skan.summarize`'s
branch-type. The Rust test compares them as a sorted multiset.

Writes skan.json. Regenerate from the repository root:
    .venv/bin/python testdata/reference/assays/skan_ref.py
"""

import json
import os

import numpy as np
import skan
from skan import Skeleton, summarize

OUT = os.path.dirname(os.path.abspath(__file__))


def dec(v):
    assert v["dtype"] == "bool-str"
    a = np.array([c == "1" for c in v["data"]], bool)
    return a.reshape(v["height"], v["width"])


def extra():
    out = {}
    # A plus with a 1-pixel cross, a Y with a junction cluster, a diagonal staircase and a ring.
    plus = np.zeros((11, 11), bool)
    plus[5, 1:10] = True
    plus[1:10, 5] = True
    out["plus"] = plus
    y = np.zeros((12, 12), bool)
    for i in range(5):
        y[1 + i, 1 + i] = True
        y[1 + i, 10 - i] = True
    y[6, 5:7] = True
    y[6:11, 5] = True
    out["y_cluster"] = y
    diag = np.zeros((10, 14), bool)
    r, c = 1, 1
    for k in range(10):
        diag[r, c] = True
        if k % 3 == 2:
            r += 1
        else:
            c += 1
            r += 1 if k % 2 else 0
    out["staircase"] = diag
    ring = np.zeros((9, 9), bool)
    ring[2, 3:6] = ring[6, 3:6] = True
    ring[3:6, 2] = ring[3:6, 6] = True
    out["ring"] = ring
    return out


def main():
    with open(os.path.join(OUT, "skeleton.json")) as f:
        cases = json.load(f)["cases"]
    skels = {c["name"]: dec(c["skeleton"]) for c in cases}
    skels.update(extra())
    res = []
    for name, sk in skels.items():
        entry = {"name": name, "width": sk.shape[1], "height": sk.shape[0]}
        entry["skeleton"] = "".join("1" if v else "0" for v in sk.ravel())
        if sk.sum() < 2:
            entry["paths"] = []
            res.append(entry)
            continue
        s = Skeleton(sk)
        lengths = s.path_lengths()
        summ = summarize(s, separator="_")
        paths = []
        for i in range(s.n_paths):
            coords = s.path_coordinates(i).astype(int)
            paths.append(
                {
                    "start": coords[0].tolist(),
                    "end": coords[-1].tolist(),
                    "pixels": int(len(coords)),
                    "distance": float(lengths[i]),
                    "branch_type": int(summ["branch_type"].iloc[i]),
                }
            )
        entry["paths"] = paths
        res.append(entry)
    with open(os.path.join(OUT, "skan.json"), "w") as f:
        json.dump({"skan": skan.__version__, "cases": res}, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
