#!/usr/bin/env bash
# The recipe with its controls (issue 12) at the preset before (corpus 20% window-friendly), as measured on one
# H100 (results/preset20/s0/; then results/h100/recipe.sh, its output runs/d6k):
# pretrain, SFT of SA and SWA, the two SFT controls, GRPO (the preset's: lr 1e-4, 40 steps of 32
# prompts x 8 samples) of SA and SWA with three seeds each, eval.py on 1000 held-out test problems.
# Independent runs go in parallel on the one GPU. Every line resumes or skips what is done, so on
# the device (10-minute calls) the same command runs again until it prints "recipe: done":
#   timeout 570 bash results/preset20/recipe.sh runs/d6k
# then python results/wf50/summary.py with a folder holding runs/d6k as s0. The default preset pretrains on a
# corpus 50% window-friendly since 4114e5b; --corpus-wf-frac 0.2 below keeps this script's corpus.
set -uo pipefail
export PYTHONUNBUFFERED=1
O=${1:-runs/d6k}
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
new() { [ ! -f "$1" ]; }   # an output not written yet (checkpoints and JSON are renamed into place whole)
python pretrain.py --preset default --corpus-wf-frac 0.2 --out $O/base.pt --resume >> $O/pretrain.log 2>&1; t pretrain
new $O/swa.pt && python convert.py --init $O/base.pt --out $O/swa.pt > $O/convert.json 2> $O/convert.log; t convert
python sft.py --init $O/base.pt --out $O/sft_sa.pt --resume >> $O/sft_sa.log 2>&1 &
python sft.py --init $O/swa.pt --out $O/sft_swa.pt --resume >> $O/sft_swa.log 2>&1 &
python sft.py --init $O/swa.pt --window-friendly-frac 1 --out $O/ctl_wfonly.pt --resume >> $O/ctl_wfonly.log 2>&1 &
wait; t sft
for m in sa swa; do for s in 0 1 2; do
  python rl.py --init $O/sft_$m.pt --seed $s --out $O/rl_${m}_s$s.pt --save-every 10 --resume >> $O/rl_${m}_s$s.log 2>&1 &
done; done
# control 2: the SA model's own correct samples, as many sequences as RL sees (40 steps x 256)
new $O/sa_samples.jsonl && python distill.py --ckpt $O/sft_sa.pt --n 10240 --out $O/sa_samples.jsonl \
  > $O/distill.json 2> $O/distill.log
python sft.py --init $O/sft_swa.pt --data $O/sa_samples.jsonl --steps 40 --batch-size 256 --warmup 4 --lr 1e-4 \
  --out $O/ctl_distill.pt --resume >> $O/ctl_distill.log 2>&1
wait; t rl
E() { new $O/eval_$1.json && python eval.py --n 1000 --k 2 --no-progress --batch-size 1000 --json $O/eval_$1.json \
  --md $O/eval_$1.md "${@:2}" > $O/eval_$1.log 2>&1; }
E sft --ckpt $O/swa.pt $O/sft_sa.pt $O/sft_swa.pt \
  --label "SWA converted, no SFT" --label "SA + SFT" --label "SWA + SFT" &
E ctl --ckpt $O/ctl_wfonly.pt $O/ctl_distill.pt \
  --label "control: SWA + SFT on wf traces only" --label "control: SWA + SFT, then SFT on SA samples" &
for s in 0 1 2; do
  E rl$s --ckpt $O/rl_sa_s$s.pt $O/rl_swa_s$s.pt --label "SA + SFT + RL (seed $s)" --label "SWA + SFT + RL (seed $s)" &
done
wait; t eval
cat $O/eval_*.md
python plot.py $O/rl_curves.svg $O/rl_sa_s*.jsonl $O/rl_swa_s*.jsonl
n=$(ls $O/eval_*.json | wc -l)
[ $n = 5 ] && echo "recipe: done" || echo "recipe: $n of 5 evaluations written; run it again"
