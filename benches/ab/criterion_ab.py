#!/usr/bin/env python3
"""Two builds of a criterion benchmark, run in turn: medians that a noisy host cannot fake.

On a shared or virtual machine one criterion run can be 20 % off the next. Running the two
builds alternately, several times each, pinned to one core, and comparing medians (and
minima) shows differences of a few percent that single runs hide.

    python3 benches/ab/criterion_ab.py [--runs N] [--cpu C] [--threads T] FILTER BIN_A BIN_B [BIN...]

FILTER is a criterion filter (a regex); it should name one benchmark, e.g.
`2048x2048/measure_shape_features`. Each BIN is a bench executable built with
`cargo bench -p ipscope-core --bench kernels --no-run` (cargo prints its path), copied
aside before the source is changed and built again. Each run is 1 s of warm-up and 2 s of
measurement (`--warm-up-time 1 --measurement-time 2`), with RAYON_NUM_THREADS=T (default 1)
and `taskset -c C` (default 0) when taskset exists. Prints each build's median and minimum
of the runs' point estimates, all the estimates, and the median ratio against BIN_A.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def estimate(out: str, filt: str) -> float:
    """The point estimate (ms) of the one benchmark in criterion's output."""
    found = re.findall(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", out)
    if len(found) != 1:
        sys.exit(f"criterion_ab: filter {filt!r} matched {len(found)} benchmarks; name one")
    value, unit = found[0]
    return float(value) * UNITS[unit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("filter")
    ap.add_argument("bins", nargs="+")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--cpu", default="0")
    ap.add_argument("--threads", default="1")
    a = ap.parse_args()
    if len(a.bins) < 2:
        sys.exit("criterion_ab: give at least two bench executables")
    for b in a.bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"criterion_ab: {b} is not an executable")
    pin = ["taskset", "-c", a.cpu] if shutil.which("taskset") else []
    env = dict(os.environ, RAYON_NUM_THREADS=a.threads)
    times = {b: [] for b in a.bins}
    for i in range(a.runs):
        for b in a.bins:
            cmd = pin + [b, "--bench", a.filter, "--warm-up-time", "1", "--measurement-time", "2",
                         "--noplot", "--discard-baseline"]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"criterion_ab: {b} failed:\n{p.stderr[-2000:]}")
            times[b].append(estimate(p.stdout, a.filter))
        print(f"run {i + 1}/{a.runs}: " + "  ".join(f"{times[b][-1]:.3f}" for b in a.bins), flush=True)
    base = statistics.median(times[a.bins[0]])
    for b in a.bins:
        med = statistics.median(times[b])
        print(f"{b}: median {med:.3f} ms, min {min(times[b]):.3f} ms, "
              f"{med / base:.3f}x of the first; runs {[round(t, 3) for t in times[b]]}")


if __name__ == "__main__":
    main()
