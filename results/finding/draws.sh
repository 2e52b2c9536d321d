#!/usr/bin/env bash
# The finding's draws: `bash run.sh --seed S` for each S in SEEDS, one after another, each end to end and
# nothing picked by hand; each draw's outputs without its checkpoints go to DEST/seed<S>, then the table.
#   bash results/finding/draws.sh                        # seeds 0-4 of the default preset, ~8 min each (H100)
#   SEEDS="1 2" DEADLINE=570 DEST=$OUT bash results/finding/draws.sh
# The draws run in runs/finding/seed<S>; a rerun resumes them (run.sh skips finished stages and continues a
# cut one). DEADLINE (seconds, 0 = none): the running draw is stopped then (SIGTERM: a training stage saves
# at its next step), so a machine lent for a few minutes at a time can run them call after call.
# RL_SEEDS: run.sh's --rl-seeds (default: the draw's seed). ARGS: more run.sh options, as separate words
# (ARGS="--preset smoke" checks this script on a CPU in a minute).
set -uo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-"0 1 2 3 4"} DEST=${DEST:-results/finding} DEADLINE=${DEADLINE:-0} ARGS=${ARGS:-}
RL_SEEDS=${RL_SEEDS:-}
for s in $SEEDS; do
  left=0
  if [ "$DEADLINE" -gt 0 ]; then
    left=$((DEADLINE - SECONDS))
    [ $left -gt 30 ] || { echo "draws.sh: deadline reached before seed $s"; break; }
  fi
  run=runs/finding/seed$s
  mkdir -p "$run" "$DEST/seed$s"
  echo "=== draws.sh: seed $s ($(date -u +%F' '%T) UTC, ${left}s left; 0 = no deadline)" >> "$run/run.log"
  # timeout 0 means no limit; a stage given SIGTERM gets 30 s to save before SIGKILL
  timeout -k 30 "$left" bash run.sh --seed "$s" --out "$run" --rl-seeds "${RL_SEEDS:-$s}" $ARGS \
    >> "$run/run.log" 2>&1
  echo "draws.sh: seed $s rc=$?"
  tr '\r' '\n' < "$run/run.log" | grep -v '%|' | grep -E '^(===|step|run.sh|error|weak|.*accuracy)' | tail -8
  # what the table and the claims read: the results, the logs and every stage's metrics (no checkpoints;
  # results.md holds the base report, plot.py redraws rl_curves.svg from the rl_*.jsonl)
  for f in "$run"/{results.json,results.md,convert.json,run.log} "$run"/*.jsonl; do
    [ -f "$f" ] && [ "${f##*/}" != sa_samples.jsonl ] && cp "$f" "$DEST/seed$s/"   # controls.sh's data: not
  done
done
python results/finding/table.py "$DEST" || true
