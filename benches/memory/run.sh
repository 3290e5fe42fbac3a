#!/usr/bin/env bash
# Peak memory (RSS) and throughput of `ipscope run` on a generated 384-well plate.
#
#   bash benches/memory/run.sh [--ci] [--bin PATH] [--work DIR] [bench.py options]
#
# Full run (the documented one; on 2 cores about 45 minutes, 12 with the recipe's job
# below): builds ipscope (release), writes a 384-well x 9-site x 4-channel plate of
# 2160 x 2160 uint16 fields (hard links to 9 rendered images: 81 MB of disk for 13,824
# files) and runs it at 1 and 2 threads, printing peak RSS, fields/s and MPx/s; fails if a
# peak reaches 2 GiB. Smaller: --wells 24, --threads 2.
# --config FILE runs another job on the plate (default: ipscope's default job), e.g.
# benches/peer/recipe.toml, the issue's per-field job as the scikit-image recipe defines it.
#
# --ci: short mode (a few minutes with the debug binary CI has already built): 8 wells at
# 2160 x 2160 at 1 and 2 threads (peak < 2 GiB), then 4 vs 16 wells of small dense fields
# (peak RSS must not grow with the plate). --bin target/debug/ipscope skips the build.
# Python: $PYTHON, else .venv/bin/python, with benches/peer/requirements.txt installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="" work="" rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) rest+=("$1"); shift ;;
  esac
done
py=${PYTHON:-.venv/bin/python}
if [ ! -x "$py" ]; then
  echo "run.sh: no Python at $py; set PYTHON or create .venv with benches/peer/requirements.txt" >&2
  exit 2
fi
if [ -z "$bin" ]; then
  cargo build --release --quiet -p ipscope-cli
  bin=target/release/ipscope
fi
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
"$py" benches/memory/bench.py --bin "$bin" --work "$work" --python "$py" "${rest[@]+"${rest[@]}"}"
