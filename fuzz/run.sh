#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time; a crash fails the script and leaves its
# input in fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>).
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target, default 20 (the short CI mode); the longer documented run is
# `bash fuzz/run.sh 600`. Targets: decode_tiff decode_png ome_xml layout_csv file_names
# user_pattern config_toml (config_toml builds the whole facade, --features config).
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and nightly Rust, or RUSTC_BOOTSTRAP=1 on
# stable, which this script sets. FUZZ_SANITIZER=none skips AddressSanitizer (faster build).
# Seeds (small valid files of each kind, fuzz/seeds/make_seeds.py) start each corpus.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_tiff decode_png ome_xml layout_csv file_names user_pattern config_toml)
fi
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
failed=()
for t in "${targets[@]}"; do
  features=()
  [ "$t" = config_toml ] && features=(--features config)
  mkdir -p "corpus/$t"
  if [ -d "seeds/$t" ]; then
    cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
  fi
  echo "==> fuzz $t for ${secs} s"
  mkdir -p logs
  log="logs/$t.log"
  status=0
  cargo fuzz run -O --sanitizer "$sanitizer" "${features[@]+"${features[@]}"}" "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread '|Test unit written|Done [0-9]+ runs)" "$log" || true
  if [ "$status" != 0 ]; then
    echo "fuzz $t: exit $status; full log in fuzz/$log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash in ${targets[*]} (${secs} s each)"
