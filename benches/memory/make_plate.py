#!/usr/bin/env python3
"""Writes a large benchmark plate cheaply: WELLS wells x SITES fields x CHANNELS channels of
SIZE x SIZE uint16 images named like ImageXpress (`MEM_A01_s1_w1.tif`).

Only DISTINCT different images are rendered (benches/peer/make_plate.py's synthetic nuclei,
~NUCLEI per field); every other file of the plate is a hard link to one of them, so a
384-well x 9-site x 4-channel plate at 2160 x 2160 (13,824 files, 129 GB if written out)
takes DISTINCT x 9.3 MB of disk. ipscope reads, hashes and measures every file as its own
field, so memory and throughput are those of the full plate. Channel w1 is the DNA stain;
w2..wC are other rendered fields, standing in for markers. Wells fill a 384-well plate in
row order (A01, A02, ..., A24, B01, ...). The same arguments give the same files.

    python make_plate.py OUT --wells 384 [--sites 9] [--channels 4] [--size 2160]
                             [--distinct 9] [--nuclei 1350] [--seed 1]
"""

import argparse
import os
import sys

import numpy as np
import tifffile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer"))
from make_plate import field  # noqa: E402  (benches/peer/make_plate.py)

ROWS = "ABCDEFGHIJKLMNOP"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--wells", type=int, default=384)
    ap.add_argument("--sites", type=int, default=9)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--size", type=int, default=2160)
    ap.add_argument("--distinct", type=int, default=9)
    ap.add_argument("--nuclei", type=int, default=1350)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 1 <= args.wells <= 384:
        ap.error("--wells must be 1..384")
    if args.distinct < 1:
        ap.error("--distinct must be at least 1")
    src = os.path.join(args.out, ".distinct")
    os.makedirs(src, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    originals = []
    for k in range(args.distinct):
        path = os.path.join(src, f"field{k}.tif")
        img, _ = field(rng, args.size, args.nuclei)
        tifffile.imwrite(path, img)
        originals.append(path)
    n = 0
    for w in range(args.wells):
        well = f"{ROWS[w // 24]}{w % 24 + 1:02d}"
        for s in range(args.sites):
            for c in range(args.channels):
                original = originals[(s + c) % args.distinct]
                name = os.path.join(args.out, f"MEM_{well}_s{s + 1}_w{c + 1}.tif")
                if os.path.exists(name):
                    os.remove(name)
                os.link(original, name)
                n += 1
    print(f"wrote {args.wells} wells x {args.sites} sites x {args.channels} channels "
          f"({n} files, {args.distinct} distinct {args.size}x{args.size} images) to {args.out}")


if __name__ == "__main__":
    main()
