#!/usr/bin/env bash
# Campaign workflow test on a real single-node Slurm cluster started here (as root), with
# Snakemake's Slurm executor submitting every job through sbatch; see check.sh for what it
# checks (3 demo plates x 4 shards equal single local runs byte for byte, fault + rerun).
# Installs nothing: expects Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge)
# and snakemake + snakemake-executor-plugin-slurm in .venv-workflow (or $SNAKEMAKE).
# The daemons run from a private slurm.conf in WORKDIR ($SLURM_CONF) and are stopped on exit.
#   cargo build -p ipscope-cli && IPSCOPE_BIN=target/debug/ipscope tests/workflow/slurm.sh [WORKDIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export SNAKEMAKE=${SNAKEMAKE:-$ROOT/.venv-workflow/bin/snakemake}
export IPSCOPE_BIN=$(realpath "${IPSCOPE_BIN:-$ROOT/target/debug/ipscope}")
WORK=$(realpath -m "${1:-$(mktemp -d)}")
t0=$(date +%s)
for tool in slurmctld slurmd munged sbatch squeue sinfo; do
  command -v "$tool" >/dev/null || { echo "slurm.sh: $tool not found; apt-get install -y slurm-wlm munge"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "slurm.sh: run as root (it starts slurmctld, slurmd and munged)"; exit 1; }

S="$WORK/slurm"
rm -rf "$S"; mkdir -p "$S/state" "$S/spool"
PIDS=()
cleanup() {
  local rc=$?
  for pidfile in "$S/slurmd.pid" "$S/slurmctld.pid" "$S/munged.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
  [ "${LINKED_CONF:-0}" = 1 ] && rm -f /etc/slurm/slurm.conf
  [ $rc -ne 0 ] && [ -f "$S/slurmctld.log" ] && { echo "--- slurmctld.log (tail)"; tail -n 20 "$S/slurmctld.log"; echo "--- slurmd.log (tail)"; tail -n 20 "$S/slurmd.log"; }
  echo "slurm.sh: daemons stopped; $(( $(date +%s) - t0 )) s in all"
  exit $rc
}
trap cleanup EXIT

# munge: a key (created once if the machine has none) and a daemon of our own.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- munged --pid-file="$S/munged.pid" 2>/dev/null || \
    runuser -u munge -- munged
  [ -f "$S/munged.pid" ] || pgrep -u munge -n munged > "$S/munged.pid"
fi
munge -n | unmunge >/dev/null

# slurm.conf for this node: its CPUs and memory as slurmd sees them, no cgroups, no accounting.
NODE_LINE=$(slurmd -C | head -n 1)
HOST=$(hostname -s)
cat > "$S/slurm.conf" <<CONF
ClusterName=ipscope-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
$NODE_LINE State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$S/slurm.conf"
# srun inside a batch job reads the default path (SLURM_CONF does not reach job steps
# without configless mode): link it there for the test's lifetime when nothing is there.
if [ ! -e /etc/slurm/slurm.conf ]; then
  mkdir -p /etc/slurm
  ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
  LINKED_CONF=1
fi
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || { echo "slurm.sh: node did not come up (state '$state')"; exit 1; }
echo "slurm.sh: single-node Slurm up in $(( $(date +%s) - t0 )) s: $NODE_LINE"
srun -N1 -n1 true

s=$(date +%s)
"$ROOT/tests/workflow/check.sh" "$WORK" \
  --workflow-profile "$ROOT/workflow/profiles/slurm" --slurm-no-account -j 8 \
  --slurm-init-seconds-before-status-checks 1 --seconds-between-status-checks 2
# The failed shard's Slurm log carries ipscope's error.
grep -rqs "error: plates/P3: " "$WORK/.snakemake/slurm_logs" \
  || { echo "slurm.sh: ipscope's error is not in the failed shard's Slurm log"; exit 1; }
echo "slurm.sh: workflow checks on Slurm passed in $(( $(date +%s) - s )) s; ipscope's error is in the Slurm log of the failed shard"
if [ "${SLURM_BENCH:-0}" = 1 ]; then
  "$ROOT/benches/scaling/run.sh" "$WORK/bench"
fi
