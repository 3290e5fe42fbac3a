#!/usr/bin/env bash
# Campaign workflow test on the local executor: snakemake -j 2 (see check.sh for what it checks).
#   python3 -m venv .venv-workflow && .venv-workflow/bin/pip install snakemake
#   cargo build -p ipscope-cli && IPSCOPE_BIN=target/debug/ipscope tests/workflow/local.sh [WORKDIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export SNAKEMAKE=${SNAKEMAKE:-$ROOT/.venv-workflow/bin/snakemake}
export IPSCOPE_BIN=$(realpath "${IPSCOPE_BIN:-$ROOT/target/debug/ipscope}")
WORK=${1:-$(mktemp -d)}
exec "$ROOT/tests/workflow/check.sh" "$WORK" --workflow-profile "$ROOT/workflow/profiles/local" -j 2
