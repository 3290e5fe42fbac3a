#!/usr/bin/env bash
# Side-by-side speed benchmark: ipscope against the scikit-image recipe on the same plate.
#
#   bash benches/peer/run.sh [--fields N] [--size PX] [--nuclei N] [--threads 1,2]
#                            [--modes recipe,job,run] [--cpus LIST] [--python PY] [--no-peer]
#                            [--cellprofiler] [--repeat N] [--work DIR]
#
# Builds ipscope (release), writes a plate of N synthetic SIZE x SIZE uint16 fields with
# ~1,350 nuclei each (default 8 fields of 2048 x 2048), runs the scikit-image recipe on
# one thread and ipscope on each thread count of --threads (default 1,2) in the modes of
# --modes (default job,run), labelled in the output: "recipe" = the recipe's own steps in
# ipscope (`run --config benches/peer/recipe.toml`), "job" = the recipe's work with
# ipscope's default segmentation (`run --config benches/peer/job.toml`: no image QC,
# AreaShape + Intensity) and "run" = the default `ipscope run` (also image QC and the
# Location group). Prints MPx/s, CPU time, the ratios, the thread scaling and the object
# counts of each mode against the recipe's. --fields 2 is the short mode.
#   --modes recipe,job time only those modes
#   IPSCOPE_BIN=path   use this ipscope binary instead of building one (no cargo needed)
#   --cpus 0,1         pin every run to these CPUs (taskset), e.g. two cores of an idle machine
#   --python PY        the Python to use (also $PYTHON); default .venv/bin/python, else python3.
#                      It needs numpy, scipy, scikit-image and tifffile (pyarrow optional:
#                      without it only plate totals of ipscope's counts are compared)
#   --repeat N         run each ipscope mode and thread count N times, alternated, and report
#                      the median run with the range of wall times (noisy hosts); the
#                      scikit-image recipe runs once
#   --no-peer          time ipscope only (no scikit-image needed)
#   --cellprofiler     also run CellProfiler 4.2 headless (`cellprofiler -c -r -p
#                      benches/peer/nuclei.cppipe`, one thread): $CELLPROFILER, else
#                      `cellprofiler` on PATH (install_cellprofiler.sh installs one; the
#                      pipeline is written by make_cppipe.py), and compare speed and counts
set -euo pipefail
cd "$(dirname "$0")/../.."

fields=8 size=2048 nuclei=1350 threads=1,2 cpus="" work=""
py=${PYTHON:-}
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --fields) fields=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --nuclei) nuclei=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --modes) extra+=(--modes "$2"); shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    --no-peer) extra+=(--no-peer); shift ;;
    --repeat) extra+=(--repeat "$2"); shift 2 ;;
    --cellprofiler) extra+=(--cellprofiler); shift ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
if ! command -v "$py" >/dev/null 2>&1; then
  echo "run.sh: no Python at $py; set PYTHON or --python, or create .venv with benches/peer/requirements.txt" >&2
  exit 2
fi
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

bin=${IPSCOPE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet -p ipscope-cli
  bin=target/release/ipscope
fi
if [ ! -x "$bin" ]; then
  echo "run.sh: no ipscope binary at $bin" >&2
  exit 2
fi
pin=()
if [ -n "$cpus" ]; then
  pin=(taskset -c "$cpus")
fi
"$py" benches/peer/make_plate.py "$work/plate" --fields "$fields" --size "$size" --nuclei "$nuclei"
"${pin[@]}" "$py" benches/peer/compare.py "$work/plate" "$bin" "$work" --threads "$threads" \
  --json "$work/result.json" ${cpus:+--cpus "$cpus"} "${extra[@]}"
