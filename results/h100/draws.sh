#!/usr/bin/env bash
# How reliable is the default preset's base (issue 12)? More draws of its pretraining (seed S), each
# then SFT as SA and greedy eval on 1000 test problems (SWA + SFT is <= 0.7% on every base so far).
# Resumes or skips what is done, like recipe.sh:  timeout 570 bash results/h100/draws.sh runs/draws 1 2
set -uo pipefail
export PYTHONUNBUFFERED=1
O=$1
shift
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
for s in "$@"; do
  ( python pretrain.py --preset default --seed $s --out $O/s$s.pt --resume >> $O/pretrain_s$s.log 2>&1 &&
    python sft.py --init $O/s$s.pt --out $O/s${s}_sft_sa.pt --resume >> $O/sft_sa_s$s.log 2>&1 &&
    { [ -f $O/eval_s$s.json ] || python eval.py --n 1000 --k 1 --no-progress --batch-size 1000 \
        --ckpt $O/s$s.pt $O/s${s}_sft_sa.pt --label "s$s base" --label "s$s SA + SFT" \
        --json $O/eval_s$s.json --md $O/eval_s$s.md > $O/eval_s$s.log 2>&1; } ) &
done
wait; t draws
cat $O/eval_s*.md 2>/dev/null
