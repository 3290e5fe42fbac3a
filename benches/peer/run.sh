#!/usr/bin/env bash
# Side-by-side speed benchmark: ipscope against the scikit-image recipe on the same plate.
#
#   bash benches/peer/run.sh [--fields N] [--size PX] [--nuclei N] [--cellprofiler] [--work DIR]
#
# Builds ipscope (release), writes a plate of N synthetic SIZE x SIZE uint16 fields with
# ~1,350 nuclei each (default 8 fields of 2048 x 2048), runs the scikit-image recipe on
# one thread and `ipscope run` on 1 and 2 threads, and prints MPx/s, the ratio, the
# 2-thread scaling and the object counts. --fields 2 is the short mode.
# Python: $PYTHON, else .venv/bin/python, with benches/peer/requirements.txt installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

fields=8 size=2048 nuclei=1350 cp="" work=""
while [ $# -gt 0 ]; do
  case $1 in
    --fields) fields=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --nuclei) nuclei=$2; shift 2 ;;
    --cellprofiler) cp=--cellprofiler; shift ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-.venv/bin/python}
if [ ! -x "$py" ]; then
  echo "run.sh: no Python at $py; set PYTHON or create .venv with benches/peer/requirements.txt" >&2
  exit 2
fi
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

cargo build --release --quiet -p ipscope-cli
"$py" benches/peer/make_plate.py "$work/plate" --fields "$fields" --size "$size" --nuclei "$nuclei"
"$py" benches/peer/compare.py "$work/plate" target/release/ipscope "$work" --threads 1,2 \
  --json "$work/result.json" $cp
