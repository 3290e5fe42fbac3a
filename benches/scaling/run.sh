#!/usr/bin/env bash
# Campaign throughput: prints fields/s and plates/h for the workflow with 1 and 2 local
# workers (and on Slurm when SLURM_CONF points at a running cluster, e.g. inside
# tests/workflow/slurm.sh with SLURM_BENCH=1), the per-shard times, and the merge cost for
# 1..8 shards and for campaigns of 1..3 plates. docs/scaling.md turns these into plates/hour
# for N nodes.
#   cargo build --release -p ipscope-cli
#   benches/scaling/run.sh [WORKDIR]   (PLATES=3 SHARDS=4 WELLS=96 SITES=2 SIZE=256 by default)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IPSCOPE=$(realpath "${IPSCOPE_BIN:-$ROOT/target/release/ipscope}")
SNAKEMAKE=${SNAKEMAKE:-$ROOT/.venv-workflow/bin/snakemake}
WORK=$(realpath -m "${1:-$(mktemp -d)}")
PLATES=${PLATES:-3}; SHARDS=${SHARDS:-4}; WELLS=${WELLS:-96}; SITES=${SITES:-2}; SIZE=${SIZE:-256}
export PATH="$(dirname "$IPSCOPE"):$PATH"
mkdir -p "$WORK"; cd "$WORK"
rm -rf plates out-* shards-* merge-* .snakemake
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

list=()
for i in $(seq 1 "$PLATES"); do
  "$IPSCOPE" demo plates/P$i --seed $i --plate-id P$i --wells "$WELLS" --sites "$SITES" --size "$SIZE" --quiet
  list+=("\"plates/P$i\"")
done
FIELDS=$((PLATES * WELLS * SITES))
PLATES_JSON="[$(IFS=,; echo "${list[*]}")]"
CONFIG=(plates="$PLATES_JSON" shards="$SHARDS" layout=plates/P1/layout.csv channels='["w1=DNA","w2=OCT4"]')
echo "campaign: $PLATES plates x $WELLS wells x $SITES sites ($FIELDS fields, ${SIZE}x${SIZE} px, 2 channels), $SHARDS shards per plate, $(nproc) CPUs, $("$IPSCOPE" --version)"

report() { # name seconds
  python3 -c "s=$2; print(f'{\"$1\":<22} {s:8.1f} s  {$FIELDS/s:8.1f} fields/s  {$PLATES*3600/s:8.1f} plates/h')"
}

# Per-shard times, one thread each (what one Slurm job with threads=1 costs).
t=()
for i in $(seq 1 "$SHARDS"); do
  a=$(now); "$IPSCOPE" run plates/P1 -o shards-1/$i --shard $i/$SHARDS --threads 1 --quiet \
      --layout plates/P1/layout.csv --channel w1=DNA --channel w2=OCT4; b=$(now)
  t+=("$(secs "$a" "$b")")
done
echo "per-shard time (plate P1, 1 thread): ${t[*]} s for $((WELLS * SITES / SHARDS)) fields each"

# Merge cost: shards of one plate, then whole-plate inputs of 1..PLATES plates.
for n in 1 2 4 8; do
  rm -rf "shards-m$n"
  for i in $(seq 1 $n); do
    "$IPSCOPE" run plates/P1 -o shards-m$n/$i --shard $i/$n --quiet \
      --layout plates/P1/layout.csv --channel w1=DNA --channel w2=OCT4
  done
  a=$(now); "$IPSCOPE" merge shards-m$n/* -o merge-s$n >/dev/null; b=$(now)
  echo "merge of $n shard(s) of one plate: $(secs "$a" "$b") s"
done
a=$(now); "$IPSCOPE" campaign "$WORK/out-dummy" >/dev/null 2>&1 || true
for p in $(seq 1 "$PLATES"); do
  ins=()
  for i in $(seq 1 "$p"); do
    [ -d "out-whole/P$i" ] || "$IPSCOPE" run plates/P$i -o out-whole/P$i --quiet \
      --layout plates/P1/layout.csv --channel w1=DNA --channel w2=OCT4
    ins+=("out-whole/P$i")
  done
  a=$(now); "$IPSCOPE" merge --campaign "${ins[@]}" -o merge-p$p >/dev/null; b=$(now)
  echo "campaign merge of $p whole plate(s) (partitions + campaign tables + report): $(secs "$a" "$b") s"
done

wf() { # name, executor args…
  local name=$1; shift
  rm -rf "out-$name" .snakemake
  local a b
  a=$(now)
  "$SNAKEMAKE" -s "$ROOT/workflow/Snakefile" "$@" --quiet all --config "${CONFIG[@]}" out="out-$name" >"wf-$name.log" 2>&1 \
    || { tail -n 30 "wf-$name.log"; exit 1; }
  b=$(now)
  report "workflow $name" "$(secs "$a" "$b")"
}
wf local-1 --workflow-profile "$ROOT/workflow/profiles/local" -j 1
wf local-2 --workflow-profile "$ROOT/workflow/profiles/local" -j 2
if [ -n "${SLURM_CONF:-}" ]; then
  wf slurm --workflow-profile "$ROOT/workflow/profiles/slurm" --slurm-no-account -j 8 \
    --slurm-init-seconds-before-status-checks 1 --seconds-between-status-checks 2
fi
