#!/usr/bin/env bash
# How often does the default preset's pretraining give a strong base (issue 12)? Two more draws of
# the preset as it is (3000 steps, seeds 1 and 2), and a candidate fix, twice as long on twice the
# problems (6000 steps, 120k problems, seeds 0 and 1); each base then gets SFT as SA and as SWA and
# greedy eval on 1000 test problems; at the end the RL step time of one SA and one SWA model, each
# alone on the GPU. Results in results/h100/bases/. Two device calls of at most 10 minutes:
#   bash results/h100/bases.sh runs/bases pretrain
#   bash results/h100/bases.sh runs/bases sft
set -uo pipefail
export PYTHONUNBUFFERED=1
O=$1
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
B="s1 s2 L0 L1"
case $2 in
pretrain)
  P="python pretrain.py --preset default --resume"
  $P --seed 1 --steps 3000 --n-train 60000 --out $O/s1.pt > $O/pretrain_s1.log 2>&1 &
  $P --seed 2 --steps 3000 --n-train 60000 --out $O/s2.pt > $O/pretrain_s2.log 2>&1 &
  $P --seed 0 --steps 6000 --n-train 120000 --out $O/L0.pt > $O/pretrain_L0.log 2>&1 &
  $P --seed 1 --steps 6000 --n-train 120000 --out $O/L1.pt > $O/pretrain_L1.log 2>&1 &
  wait; t pretrain ;;
sft)
  for b in $B; do python convert.py --init $O/$b.pt --out $O/${b}_swa.pt --n-val 0 > $O/convert_$b.json & done
  wait; t convert
  for b in $B; do
    python sft.py --init $O/$b.pt --out $O/${b}_sft_sa.pt --resume > $O/sft_sa_$b.log 2>&1 &
    python sft.py --init $O/${b}_swa.pt --out $O/${b}_sft_swa.pt --resume > $O/sft_swa_$b.log 2>&1 &
  done
  wait; t sft
  for b in $B; do
    python eval.py --n 1000 --k 1 --no-progress --batch-size 1000 --ckpt $O/$b.pt $O/${b}_sft_sa.pt $O/${b}_sft_swa.pt \
      --label "$b base" --label "$b SA + SFT" --label "$b SWA + SFT" --json $O/eval_$b.json --md $O/eval_$b.md \
      > $O/eval_$b.log 2>&1 &
  done
  wait; t eval
  # RL step time, each model alone on the GPU (5 steps: the first compiles)
  for m in sa swa; do
    python rl.py --init $O/s1_sft_$m.pt --seed 0 --steps 5 --eval-every 0 --out $O/steptime_$m.pt \
      > $O/steptime_$m.log 2>&1
  done
  t steptime ;;
esac
