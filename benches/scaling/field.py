#!/usr/bin/env python3
"""Single-field thread scaling: one big field, 1 thread against 2 (or --threads), alternated.

A plate with fewer fields than threads (or its last field, or `ipscope segment` of one
image) keeps the extra threads busy only through the parallelism inside a field (row bands
of the filters and the distance transform, the watershed's parts). This prints the wall and
CPU time of each run, the medians per thread count, the wall-time ratio against 1 thread
and the load average before and after (on a loaded machine wall-clock scaling says little).

    cargo build --release -p ipscope-cli
    python3 benches/scaling/field.py                   # one 4096² field, 5 alternated rounds
    python3 benches/scaling/field.py --size 2048 --rounds 3 --modes segment
    IPSCOPE_BIN=/path/to/ipscope python3 benches/scaling/field.py --threads 1,2,4

Modes: `segment` — `ipscope segment FIELD --labels OUT` (the global pool, sized with
RAYON_NUM_THREADS); `job` — `ipscope run` of the one-field plate with
benches/peer/job.toml (the peer bench's job: segmentation, AreaShape + Intensity, tables).
Every run's label image / Nuclei table is compared with the 1-thread run's, byte for byte.
The field comes from benches/peer/make_plate.py (numpy, scipy, tifffile).
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(cmd, env):
    """Runs cmd; returns (wall s, CPU s of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--modes", default="segment,job")
    ap.add_argument("--work", help="keep the field and outputs here")
    args = ap.parse_args()
    exe = os.environ.get("IPSCOPE_BIN", os.path.join(ROOT, "target", "release", "ipscope"))
    if not os.path.exists(exe):
        sys.exit(f"{exe}: no ipscope binary; cargo build --release -p ipscope-cli or set IPSCOPE_BIN")
    threads = [int(t) for t in args.threads.split(",")]
    modes = args.modes.split(",")
    work = args.work or tempfile.mkdtemp(prefix="ipscope-field-")
    plate = os.path.join(work, "plate")
    # ~1,350 nuclei per 2048² field: the same density at any size.
    nuclei = max(1, round(1350 * (args.size / 2048) ** 2))
    if not os.path.isdir(plate):
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "benches", "peer", "make_plate.py"), plate,
             "--fields", "1", "--size", str(args.size), "--nuclei", str(nuclei)],
            check=True, stdout=subprocess.DEVNULL)
    field = os.path.join(plate, sorted(f for f in os.listdir(plate) if f.endswith(".tif"))[0])
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; one {args.size}x{args.size} field ({nuclei} nuclei placed), "
          f"{os.cpu_count()} CPUs, {args.rounds} alternated rounds; load average {load()}")

    def command(mode, t, out):
        if mode == "segment":
            return [exe, "segment", field, "--labels", out + ".tif"], out + ".tif"
        return ([exe, "run", plate, "-o", out, "--channel", "w1=DNA", "--threads", str(t),
                 "--config", os.path.join(ROOT, "benches", "peer", "job.toml"), "--quiet",
                 "--overwrite"], os.path.join(out, "Nuclei.parquet"))

    for mode in modes:
        times = {t: [] for t in threads}
        first = None
        for r in range(args.rounds):
            for t in threads:
                out = os.path.join(work, f"{mode}-{t}")
                cmd, result = command(mode, t, out)
                env = dict(os.environ, RAYON_NUM_THREADS=str(t))
                wall, cpu = timed(cmd, env)
                times[t].append((wall, cpu))
                with open(result, "rb") as f:
                    data = f.read()
                if first is None:
                    first = data
                elif data != first:
                    sys.exit(f"{mode}: {result} at {t} threads differs from the 1-thread run")
                print(f"  {mode:<7} round {r + 1} threads {t}: wall {wall:6.2f} s  CPU {cpu:6.2f} s")
        base = statistics.median(w for w, _ in times[threads[0]])
        for t in threads:
            wall = statistics.median(w for w, _ in times[t])
            cpu = statistics.median(c for _, c in times[t])
            mpx = args.size * args.size / 1e6 / wall
            print(f"{mode:<7} threads {t}: median wall {wall:6.2f} s ({mpx:5.2f} MPx/s), "
                  f"CPU {cpu:6.2f} s, busy {cpu / wall:4.2f}, speed-up vs {threads[0]} thread: "
                  f"{base / wall:4.2f}x")
    print(f"outputs identical at every thread count; load average {load()}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
