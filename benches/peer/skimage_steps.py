#!/usr/bin/env python3
"""Seconds per step of the scikit-image recipe (benches/peer/skimage_recipe.py), per field.

Shows where the peer's time goes on this host, e.g. when its MPx/s falls outside the range
the issue gives for a 2-core machine. It runs `skimage_recipe.recipe` itself, timing the end
of each step:

    OMP_NUM_THREADS=1 python skimage_steps.py PLATE_DIR [--limit N]

Prints one line per field and the mean of each step.
"""

import argparse
import os
import time

import tifffile

from skimage_recipe import plate_files, recipe


def timed_recipe(path):
    """(step, seconds) of each step on the field at `path`, and its number of objects."""
    steps = []
    last = time.perf_counter()

    def tick(step):
        nonlocal last
        now = time.perf_counter()
        steps.append((step, now - last))
        last = now

    img = tifffile.imread(path)
    tick("read")
    table = recipe(img, tick)
    return steps, len(table["label"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plate")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    files = plate_files(args.plate, args.limit)
    if not files:
        raise SystemExit(f"skimage_steps.py: no .tif files in {args.plate}")
    total = {}
    for p in files:
        steps, n = timed_recipe(p)
        for step, sec in steps:
            total[step] = total.get(step, 0.0) + sec
        print(f"{os.path.basename(p)}: {n} objects, {sum(s for _, s in steps):.3f} s: "
              + " ".join(f"{step}={sec:.3f}" for step, sec in steps))
    k = len(files)
    print(f"mean of {k} fields: {sum(total.values()) / k:.3f} s: "
          + " ".join(f"{step}={sec / k:.3f}" for step, sec in total.items()))


if __name__ == "__main__":
    main()
