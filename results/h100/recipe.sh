#!/usr/bin/env bash
# The default recipe with its controls, as measured on one H100 (results/h100/d3k/): pretrain (3000
# steps), SFT of SA and SWA, the two SFT controls, GRPO (lr 1e-4, 40 steps) of SA and SWA with three
# seeds each, eval.py on 1000 test problems. Independent runs go in parallel on the one GPU.
# On the device this ran as three calls of at most 10 minutes (the eval lines and the SA seeds 1-2
# were the second and third); every command is the one below.
set -uo pipefail
export PYTHONUNBUFFERED=1
O=${1:-runs/d3k}
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
python pretrain.py --preset default --out $O/base.pt --resume > $O/pretrain.log 2>&1; t pretrain
python convert.py --init $O/base.pt --out $O/swa.pt > $O/convert.json 2> $O/convert.log; t convert
python sft.py --init $O/base.pt --out $O/sft_sa.pt --resume > $O/sft_sa.log 2>&1 &
python sft.py --init $O/swa.pt --out $O/sft_swa.pt --resume > $O/sft_swa.log 2>&1 &
python sft.py --init $O/swa.pt --window-friendly-frac 1 --out $O/ctl_wfonly.pt --resume > $O/ctl_wfonly.log 2>&1 &
wait; t sft
for s in 0 1 2; do
  python rl.py --init $O/sft_swa.pt --seed $s --out $O/rl_swa_s$s.pt --save-every 10 > $O/rl_swa_s$s.log 2>&1 &
done
python rl.py --init $O/sft_sa.pt --seed 0 --out $O/rl_sa_s0.pt --save-every 10 > $O/rl_sa_s0.log 2>&1 &
# control 2: the SA model's own correct samples, as many sequences as RL sees (40 steps x 256)
python distill.py --ckpt $O/sft_sa.pt --n 10240 --out $O/sa_samples.jsonl > $O/distill.json 2> $O/distill.log
python sft.py --init $O/sft_swa.pt --data $O/sa_samples.jsonl --steps 40 --batch-size 256 --warmup 4 --lr 1e-4 \
  --out $O/ctl_distill.pt > $O/ctl_distill.log 2>&1
wait; t rl
for s in 1 2; do
  python rl.py --init $O/sft_sa.pt --seed $s --out $O/rl_sa_s$s.pt --save-every 10 > $O/rl_sa_s$s.log 2>&1 &
done
E="python eval.py --n 1000 --k 2 --no-progress --batch-size 1000"
$E --ckpt $O/swa.pt $O/sft_sa.pt $O/sft_swa.pt --label "SWA converted, no SFT" --label "SA + SFT" --label "SWA + SFT" \
  --json $O/eval_sft.json --md $O/eval_sft.md > $O/eval_sft.log 2>&1 &
$E --ckpt $O/ctl_wfonly.pt $O/ctl_distill.pt --label "control: SWA + SFT on wf traces only" \
  --label "control: SWA + SFT, then SFT on SA samples" --json $O/eval_ctl.json --md $O/eval_ctl.md > $O/eval_ctl.log 2>&1 &
$E --ckpt $O/rl_sa_s0.pt $O/rl_swa_s0.pt --label "SA + SFT + RL (seed 0)" --label "SWA + SFT + RL (seed 0)" \
  --json $O/eval_rl0.json --md $O/eval_rl0.md > $O/eval_rl0.log 2>&1 &
$E --ckpt $O/rl_swa_s1.pt $O/rl_swa_s2.pt --label "SWA + SFT + RL (seed 1)" --label "SWA + SFT + RL (seed 2)" \
  --json $O/eval_rl12.json --md $O/eval_rl12.md > $O/eval_rl12.log 2>&1 &
wait
$E --ckpt $O/rl_sa_s1.pt $O/rl_sa_s2.pt --label "SA + SFT + RL (seed 1)" --label "SA + SFT + RL (seed 2)" \
  --json $O/eval_rl12sa.json --md $O/eval_rl12sa.md > $O/eval_rl12sa.log 2>&1
t eval
cat $O/eval_*.md
python plot.py $O/rl_curves.svg $O/rl_sa_s*.jsonl $O/rl_swa_s*.jsonl
