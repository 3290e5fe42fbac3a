#!/usr/bin/env python3
"""Writes a benchmark plate: N fields of SIZE x SIZE uint16 DNA-stain images with ~1,350
nuclei each, named like ImageXpress (`BENCH_A01_s1_w1.tif`), plus truth.json with the
number of nuclei placed per field.

Nuclei are ellipses (semi-axes 6.5-10 px) with a domed intensity profile; about a third sit
in touching pairs or triples so that declumping has work to do. Background 400 counts,
Gaussian read noise and shot-like noise, a 1.2 px optical blur. The same seed gives the
same plate byte for byte.

    python make_plate.py OUT_DIR --fields 8 [--size 2048] [--nuclei 1350] [--seed 1]
"""

import argparse
import json
import os

import numpy as np
import scipy.ndimage as ndi
import tifffile


def field(rng, size, n_target):
    img = np.zeros((size, size), np.float32)
    centres = []  # (y, x, a, b)
    # Spatial hash for overlap checks: no two centres closer than 0.9 (r1 + r2) * 0.85.
    cell = 24
    grid = {}

    def free(y, x, r):
        gy, gx = int(y // cell), int(x // cell)
        for yy in range(gy - 1, gy + 2):
            for xx in range(gx - 1, gx + 2):
                for (oy, ox, orad) in grid.get((yy, xx), ()):
                    if (oy - y) ** 2 + (ox - x) ** 2 < (0.8 * (r + orad)) ** 2:
                        return False
        return True

    def add(y, x, a, b):
        r = (a + b) / 2
        if not (4 <= y < size - 4 and 4 <= x < size - 4) or not free(y, x, r):
            return False
        grid.setdefault((int(y // cell), int(x // cell)), []).append((y, x, r))
        centres.append((y, x, a, b))
        return True

    tries = 0
    while len(centres) < n_target and tries < 50 * n_target:
        tries += 1
        a, b = rng.uniform(7, 10), rng.uniform(6.5, 9)
        y, x = rng.uniform(0, size, 2)
        if not add(y, x, a, b):
            continue
        # A third of the nuclei get one or two touching neighbours.
        if rng.random() < 0.2:
            for _ in range(rng.integers(1, 3)):
                if len(centres) >= n_target:
                    break
                ang = rng.uniform(0, 2 * np.pi)
                a2, b2 = rng.uniform(7, 10), rng.uniform(6.5, 9)
                d = 0.95 * ((a + b) / 2 + (a2 + b2) / 2)
                add(y + d * np.sin(ang), x + d * np.cos(ang), a2, b2)
    for (y, x, a, b) in centres:
        theta = rng.uniform(0, np.pi)
        amp = rng.uniform(2500, 9000)
        r = int(np.ceil(max(a, b))) + 1
        y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, size)
        x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, size)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - y, xx - x
        c, s = np.cos(theta), np.sin(theta)
        u = (dx * c + dy * s) / a
        v = (-dx * s + dy * c) / b
        rho2 = u * u + v * v
        prof = np.where(rho2 < 1, amp * np.sqrt(np.clip(1 - rho2, 0, 1)) ** 0.5, 0).astype(np.float32)
        np.maximum(img[y0:y1, x0:x1], prof, out=img[y0:y1, x0:x1])
    img = ndi.gaussian_filter(img, 1.2)
    img += 400
    img += rng.normal(0, 1, img.shape).astype(np.float32) * np.sqrt(img) * 0.8
    img += rng.normal(0, 20, img.shape).astype(np.float32)
    return np.clip(img, 0, 65535).astype(np.uint16), len(centres)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--fields", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--nuclei", type=int, default=1350)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    truth = {}
    for k in range(args.fields):
        # Four sites per well, wells A01, A02, ...
        well = f"{'ABCDEFGHIJKLMNOP'[(k // 4) // 24]}{(k // 4) % 24 + 1:02d}"
        site = k % 4 + 1
        name = f"BENCH_{well}_s{site}_w1.tif"
        img, n = field(rng, args.size, args.nuclei)
        tifffile.imwrite(os.path.join(args.out, name), img)
        truth[name] = n
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    print(f"wrote {args.fields} fields of {args.size}x{args.size} to {args.out} "
          f"({sum(truth.values())} nuclei)")


if __name__ == "__main__":
    main()
