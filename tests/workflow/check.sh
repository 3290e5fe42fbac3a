#!/usr/bin/env bash
# The campaign workflow checked end to end with whatever executor the caller names:
#   tests/workflow/check.sh WORKDIR [snakemake executor arguments…]
# 1. 3 demo plates x 4 shards through workflow/Snakefile; every table of every partition, and
#    the campaign tables, equal byte for byte those of single local `ipscope run`s.
# 2. The same campaign from --configfile plans the same jobs (dry run on the finished tree: none).
# 3. Fault: plate P3's folder loses its images; its shard jobs fail with ipscope's error in
#    their logs, P1 and P2 finish (keep-going); after the folder is restored, a rerun plans
#    exactly P3's 4 shards + its merge + the campaign table job, and the tree again equals
#    the single runs.
# 4. Fault: one shard job is killed with SIGKILL while ipscope runs (no retries); the other
#    shards and plates finish, a rerun plans only that shard + its merge + the campaign job,
#    resumes it, and the tree again equals the single runs.
# Needs: ipscope on PATH (or $IPSCOPE_BIN), snakemake on PATH (or $SNAKEMAKE).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$1; shift
EXEC_ARGS=("$@")
IPSCOPE=${IPSCOPE_BIN:-ipscope}
IPSCOPE=$(command -v "$IPSCOPE")
SNAKEMAKE=${SNAKEMAKE:-snakemake}
t0=$(date +%s)
mkdir -p "$WORK"
cd "$WORK"
WORK=$PWD
rm -rf plates single camp wf wf2 wf3 killed.once .snakemake
say() { echo "[workflow-test $(( $(date +%s) - t0 )) s] $*"; }

for i in 1 2 3; do
  "$IPSCOPE" demo plates/P$i --seed $i --plate-id P$i --sites 1 --size 128 --quiet
done
RUN=(--layout plates/P1/layout.csv --channel w1=DNA --channel w2=OCT4 --quiet)
for i in 1 2 3; do
  "$IPSCOPE" run plates/P$i -o single/P$i "${RUN[@]}"
done
"$IPSCOPE" run plates/P1 plates/P2 plates/P3 -o camp "${RUN[@]}"
say "plates and single local runs ready"

export PATH="$(dirname "$IPSCOPE"):$PATH"
sm() {
  "$SNAKEMAKE" -s "$ROOT/workflow/Snakefile" "$@"
}
CONFIG=(plates='["plates/P1","plates/P2","plates/P3"]' out=wf shards=4
        layout=plates/P1/layout.csv channels='["w1=DNA","w2=OCT4"]')

same_as_single() {
  local out=$1 n=0
  for i in 1 2 3; do
    for t in Image Nuclei Wells Errors Qc Curves; do
      cmp "single/P$i/$t.parquet" "$out/Metadata_Plate=P$i/$t.parquet"
      n=$((n + 1))
    done
  done
  for t in CampaignWells CampaignQc CampaignNormalized CampaignCurves; do
    cmp "camp/$t.parquet" "$out/$t.parquet"
    n=$((n + 1))
  done
  say "$out: $n tables equal the single local runs byte for byte"
}

# planned JOBS COUNT lines of a dry run, as "rule count" pairs
planned() {
  sm "$@" -n --quiet rules 2>/dev/null | awk '$1 ~ /^(shard|merge_plate|campaign|all)$/ {print $1, $2}' | sort -u
}

s=$(date +%s)
sm "${EXEC_ARGS[@]}" --config "${CONFIG[@]}"
wf_seconds=$(( $(date +%s) - s ))
same_as_single wf
say "workflow run: $wf_seconds s for 3 plates x 4 shards"

# --configfile: same keys from a file; on the finished tree nothing is left to do.
cat > campaign.yaml <<YAML
plates: [plates/P1, plates/P2, plates/P3]
out: wf
shards: 4
layout: plates/P1/layout.csv
channels: ["w1=DNA", "w2=OCT4"]
YAML
left=$(planned --configfile campaign.yaml)
[ -z "$left" ] || { echo "configfile run plans jobs on a finished campaign: $left"; exit 1; }
say "--configfile: nothing to redo on the finished campaign"

# Fault: a shard of P3 finds a bad plate directory.
rm -rf wf2
mkdir plates/P3.hidden && mv plates/P3/*.tif plates/P3.hidden/
CONFIG2=("${CONFIG[@]/out=wf/out=wf2}")
if sm "${EXEC_ARGS[@]}" --config "${CONFIG2[@]}" > fault.log 2>&1; then
  echo "the workflow succeeded although plate P3 had no images"; exit 1
fi
grep -q "^error: plates/P3: " wf2/.logs/shard_P3_1.log \
  || { echo "ipscope's error is not in the shard log"; cat wf2/.logs/shard_P3_1.log; exit 1; }
for i in 1 2; do
  [ -f "wf2/Metadata_Plate=P$i/manifest.json" ] || { echo "P$i did not finish"; exit 1; }
done
[ ! -e wf2/campaign.json ]
say "fault: P3's shards failed with ipscope's error in the log; P1 and P2 finished"
mv plates/P3.hidden/*.tif plates/P3/ && rmdir plates/P3.hidden
plan=$(planned "${EXEC_ARGS[@]}" --config "${CONFIG2[@]}")
expected=$'all 1\ncampaign 1\nmerge_plate 1\nshard 4'
if [ "$plan" != "$expected" ]; then
  echo "rerun plans other jobs than P3's:"; echo "$plan"; exit 1
fi
sm "${EXEC_ARGS[@]}" --config "${CONFIG2[@]}"
same_as_single wf2
say "rerun redid only P3 (4 shards, 1 merge, campaign); total $(( $(date +%s) - t0 )) s"

# Fault: the job of shard 2 of P2 is killed (SIGKILL, as the OOM killer or scancel would)
# while its ipscope runs. An ipscope stand-in does the killing once, after the real ipscope
# has taken its output lock; every other job runs ipscope unchanged.
cat > kill_once.sh <<SH
#!/usr/bin/env bash
if [[ " \$* " == *" -o wf3/.shards/P2/2 "* ]] && mkdir "$WORK/killed.once" 2>/dev/null; then
  "$IPSCOPE" "\$@" & pid=\$!
  for _ in \$(seq 1 2000); do
    [ -e wf3/.shards/P2/2/.ipscope.lock ] && break
    kill -0 \$pid 2>/dev/null || break
    sleep 0.005
  done
  if kill -9 \$pid 2>/dev/null; then echo "kill_once: ipscope (pid \$pid) killed with SIGKILL"; fi
  wait \$pid
  exit \$?
fi
exec "$IPSCOPE" "\$@"
SH
chmod +x kill_once.sh
CONFIG3=("${CONFIG[@]/out=wf/out=wf3}" retries=0 ipscope="$WORK/kill_once.sh")
if sm "${EXEC_ARGS[@]}" --config "${CONFIG3[@]}" > kill.log 2>&1; then
  echo "the workflow succeeded although a shard job was killed"; cat wf3/.logs/shard_P2_2.log; exit 1
fi
grep -q "killed with SIGKILL" wf3/.logs/shard_P2_2.log \
  || { echo "shard 2 of P2 was not killed while running"; cat wf3/.logs/shard_P2_2.log; exit 1; }
for i in 1 3; do
  [ -f "wf3/Metadata_Plate=P$i/manifest.json" ] || { echo "P$i did not finish"; exit 1; }
done
[ ! -e "wf3/Metadata_Plate=P2/manifest.json" ] && [ ! -e wf3/campaign.json ]
say "killed job: shard 2 of P2 failed; P1 and P3 finished"
plan=$(planned "${EXEC_ARGS[@]}" --config "${CONFIG3[@]}")
expected=$'all 1\ncampaign 1\nmerge_plate 1\nshard 1'
if [ "$plan" != "$expected" ]; then
  echo "rerun after the kill plans other jobs than P2's shard 2:"; echo "$plan"; exit 1
fi
sm "${EXEC_ARGS[@]}" --config "${CONFIG3[@]}"
same_as_single wf3
say "rerun redid only the killed shard (1 shard, 1 merge, campaign); total $(( $(date +%s) - t0 )) s"
