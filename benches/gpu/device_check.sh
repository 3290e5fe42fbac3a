#!/usr/bin/env bash
# GPU figures for the nuclei path on a machine with a real GPU: per kernel and for the nuclei
# chain at 2048², 4096² and 8192² (CPU ms, GPU wall ms, GPU compute ms from timestamp
# queries, MPx/s or GPx/s, F1@0.5 of the GPU's objects against the CPU's, per-stage ms).
# About 3-5 minutes on a data-centre GPU; docs/gpu.md says how to read the output.
#
# Two steps, because the GPU machine may have neither a Rust toolchain nor the Vulkan loader:
#
#   benches/gpu/device_check.sh prepare   # here: release build of gpu_bench, plus the Vulkan
#                                         # loader and glvnd libraries of this machine, into
#                                         # target/gpu-check/ (about 8 MB)
#   benches/gpu/device_check.sh           # there, from the repository root: runs it
#
# On the GPU machine, target/gpu-check/ must travel with the checkout (an ignored path: carry
# it). Without it the script builds gpu_bench with cargo when cargo is there. Environment:
# SIZES (default 2048,4096,8192), REPS (3), TIMEOUT (seconds per size, 240), OUT (a folder
# that receives device_check.txt as well as stdout), ONLY (gpu_bench --only: named benches,
# e.g. edt,chain), E2E (a number of wells, 96 or 384: with
# `prepare`, also copies the ipscope CLI; when running, also times `ipscope run` on the demo
# plate of that many wells x 2 sites of 1024² with --device cpu and gpu and compares the
# Nuclei tables, then both again with a plain Otsu recipe, which the GPU runs resident).
# After each size, fill_holes and label8 once more with the tiled labelling
# (gpu_bench --tiled-labels), for comparison with the default's rows.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHECK="$ROOT/target/gpu-check"

if [[ "${1:-}" == prepare ]]; then
  cd "$ROOT"
  cargo build --release --locked -p ipscope-gpu --example gpu_bench
  mkdir -p "$CHECK/lib"
  cp target/release/examples/gpu_bench "$CHECK/gpu_bench"
  if [[ -n "${E2E:-}" ]]; then
    cargo build --release --locked -p ipscope-cli
    cp target/release/ipscope "$CHECK/ipscope"
  fi
  # The Vulkan loader and the glvnd libraries NVIDIA's Vulkan driver (libGLX_nvidia) needs;
  # the driver itself comes with the GPU machine.
  for lib in libvulkan.so.1 libGLX.so.0 libGLdispatch.so.0 libEGL.so.1 libGL.so.1 \
             libOpenGL.so.0 libGLESv2.so.2; do
    # awk reads to the end: leaving early would fail the pipe (SIGPIPE under pipefail).
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && p == "" {p = $NF} END {print p}')
    if [[ -n "$path" ]]; then
      cp -L "$path" "$CHECK/lib/$lib"
    else
      echo "note: $lib not installed here (apt-get install libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2)" >&2
    fi
  done
  git rev-parse --short HEAD > "$CHECK/commit" 2>/dev/null || true
  du -sh "$CHECK"
  exit 0
fi

SIZES=${SIZES:-2048,4096,8192}
REPS=${REPS:-3}
TIMEOUT=${TIMEOUT:-240}
BIN=${GPU_BENCH_BIN:-$CHECK/gpu_bench}
if [[ ! -x "$BIN" ]]; then
  if command -v cargo >/dev/null; then
    (cd "$ROOT" && cargo build --release -p ipscope-gpu --example gpu_bench)
    BIN="$ROOT/target/release/examples/gpu_bench"
  else
    echo "device_check: no $BIN and no cargo: run 'benches/gpu/device_check.sh prepare' on a build machine and carry target/gpu-check" >&2
    exit 2
  fi
fi
# The bundled loader only where the system has none.
# (grep reads a copy: `ldconfig | grep -q` can fail on SIGPIPE under pipefail.)
if ! grep -q 'libvulkan.so.1 ' <<< "$(ldconfig -p 2>/dev/null)"; then
  export LD_LIBRARY_PATH="$CHECK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# Some container images mount NVIDIA's driver under /usr/local/nvidia, where the loader does
# not look: name its manifests when nothing else does.
nv=/usr/local/nvidia/share
if [[ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" && -f $nv/vulkan/icd.d/nvidia_icd.json ]] \
   && ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json
  [[ -f $nv/glvnd/egl_vendor.d/10_nvidia.json ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
fi
log=/dev/null
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  log="$OUT/device_check.txt"
fi
{
  echo "device_check: $(date -u +%FT%TZ), commit $(cat "$CHECK/commit" 2>/dev/null || git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  IFS=, read -ra sizes <<< "$SIZES"
  for n in "${sizes[@]}"; do
    start=$(date +%s)
    # One size per process, so a size that hangs or runs out of memory leaves the others.
    timeout "$TIMEOUT" "$BIN" --sizes "$n" --reps "$REPS" ${ONLY:+--only "$ONLY"} || echo "gpu_bench --sizes $n: exit $? (timeout ${TIMEOUT}s)"
    echo "[$n² done in $(( $(date +%s) - start )) s]"
    if [[ -z "${ONLY:-}" || ",$ONLY," == *,chain,* ]]; then
      # The tiled labelling (label.wgsl local + seams) against the rows above: identical
      # labels, compare the compute of fill_holes and label8.
      timeout "$TIMEOUT" "$BIN" --sizes "$n" --reps "$REPS" --tiled-labels --only fill_holes,label8 || echo "gpu_bench --tiled-labels --sizes $n: exit $?"
    fi
  done
  if [[ -n "${E2E:-}" ]]; then
    # End to end: the demo plate (E2E wells x 2 sites of 1024²) through `ipscope run` on all
    # CPU threads and on the GPU; the Nuclei tables are compared row by row.
    CLI=${IPSCOPE_BIN:-$CHECK/ipscope}
    work=$(mktemp -d)
    "$CLI" demo "$work/plate" --wells "$E2E" --sites 2 --size "${E2E_SIZE:-1024}" --quiet
    for dev in cpu gpu; do
      start=$(date +%s%N)
      "$CLI" run "$work/plate" -o "$work/$dev" --device "$dev" --quiet || echo "run --device $dev: exit $?"
      echo "run --device $dev: $(( ($(date +%s%N) - start) / 1000000 )) ms ($(nproc) CPU threads available)"
    done
    grep -o '"device": "gpu: [^"]*"' "$work/gpu/manifest.json" || true
    "${PYTHON:-python3}" - "$work" <<'PY' || echo "table comparison skipped (python3 with pyarrow needed)"
import sys, pyarrow.parquet as pq
w = sys.argv[1]
c, g = (pq.read_table(f"{w}/{d}/Nuclei.parquet").to_pydict() for d in ("cpu", "gpu"))
num = [k for k, v in c.items() if v and isinstance(v[0], (int, float))]
key = lambda t, i: (t["ImageNumber"][i], t["ObjectNumber"][i])
rows = lambda t: {key(t, i): tuple(t[k][i] for k in num) for i in range(len(t["ImageNumber"]))}
rc, rg = rows(c), rows(g)
same = sum(1 for k, v in rc.items() if rg.get(k) == v)
per = lambda t: {i: t["ImageNumber"].count(i) for i in set(t["ImageNumber"])}
pc, pg = per(c), per(g)
print(f"Nuclei rows cpu {len(rc)} gpu {len(rg)}; identical in all {len(num)} numeric columns: "
      f"{same} ({100 * same / max(len(rc), 1):.3f} %); fields with equal object counts "
      f"{sum(1 for i in pc if pc[i] == pg.get(i))} of {len(pc)}")
for k in [k for k in num if k.endswith("AreaShape_Area")]:
    d = [abs(rc[i][num.index(k)] - rg[i][num.index(k)]) for i in rc if i in rg and rc[i] != rg[i]]
    if d:
        print(f"  {k}: {len(d)} differing objects, largest difference {max(d)} px")
PY
    # The same plate with a plain Otsu recipe (no background subtraction, per-object rule,
    # declumping or scaling): on the GPU one resident call per field (Backend::segment_otsu).
    printf '[nuclei]\nthreshold_method = "otsu"\nbackground_radius = 0.0\nobject_contrast = 0.0\ndeclump = false\nauto_scale = false\n' > "$work/otsu.toml"
    for dev in cpu gpu; do
      start=$(date +%s%N)
      "$CLI" run "$work/plate" -o "$work/otsu_$dev" --device "$dev" --config "$work/otsu.toml" --quiet || echo "run --device $dev (plain Otsu): exit $?"
      echo "run --device $dev, plain Otsu recipe: $(( ($(date +%s%N) - start) / 1000000 )) ms"
    done
    rm -rf "$work"
  fi
} 2>&1 | tee "$log"
