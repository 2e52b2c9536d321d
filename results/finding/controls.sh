#!/usr/bin/env bash
# The two SFT controls on one draw of run.sh (D: its folder, with swa.pt, sft_sa.pt and sft_swa.pt): is it the
# data or on-policy RL that closes the gap?
#   1. the converted SWA model SFT'd on window-friendly traces only (the data matched to the window), as long
#      as the recipe's SFT;
#   2. SWA + SFT, then SFT on the SA model's own correct samples (distill.py), as many sequences as RL sees
#      (40 steps x 256), at RL's learning rate: off-policy data written by SA, where RL uses its own samples.
# Then eval.py on both, as run.sh evaluates (the draw's 1000 test problems, greedy and k samples), into
# D/controls.json and D/controls.md. Every step skips what is done, so a cut call continues where it stopped.
#   bash results/finding/controls.sh runs/finding/seed3 [results/finding/seed3]   # ~4 min on one H100 (estimated)
# The second folder, when given, receives the tables and the controls' metrics (not the checkpoints, not the
# samples).
#   (PRESET=smoke: the smoke preset's lengths; a CPU check of the plumbing on `bash run.sh --preset smoke`)
set -euo pipefail
cd "$(dirname "$0")/../.."
D=$1 DEST=${2:-}
seed=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["seed"])' "$D/run.json")   # eval's problems
new() { [ ! -f "$1" ]; }   # distill.py's samples and eval.py's JSON are renamed into place whole
python sft.py --init "$D/swa.pt" --window-friendly-frac 1 --out "$D/ctl_wfonly.pt" --resume   # a finished one: skipped
n=10240 steps=40 batch=256 warmup=4
if [ "${PRESET:-}" = smoke ]; then n=16 steps=2 batch=4 warmup=1; fi
new "$D/sa_samples.jsonl" && python distill.py --ckpt "$D/sft_sa.pt" --n $n --out "$D/sa_samples.jsonl" \
  > "$D/distill.json"
python sft.py --init "$D/sft_swa.pt" --data "$D/sa_samples.jsonl" --steps $steps --batch-size $batch \
  --warmup $warmup --lr 1e-4 --out "$D/ctl_distill.pt" --resume
new "$D/controls.json" && python eval.py --ckpt "$D/ctl_wfonly.pt" "$D/ctl_distill.pt" \
  --label "control: SWA + SFT on wf traces only" --label "control: SWA + SFT, then SFT on SA samples" \
  --seed "$seed" --json "$D/controls.json" --md "$D/controls.md" > /dev/null
cat "$D/controls.md"
if [ -n "$DEST" ]; then
  mkdir -p "$DEST"
  cp "$D"/{controls.json,controls.md,distill.json,ctl_wfonly.jsonl,ctl_distill.jsonl} "$DEST/"
fi
