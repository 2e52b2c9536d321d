#!/usr/bin/env bash
# The ablation table of issue 12 (results/h100/ablate/): one default-preset base (W=128), then each
# variant is converted from it and fine-tuned exactly like the SWA+SFT row, then one RL run (seed 0,
# the default preset's settings). --window converts to another window and the data record follows,
# so SFT and RL write the window-friendly traces for that window (the base's pretraining corpus is
# the W=128 one). Three phases, each one device call of at most 10 minutes:
#   bash results/h100/ablate.sh runs/abl sft     # pretrain, convert the variants, SFT them (parallel)
#   bash results/h100/ablate.sh runs/abl rl      # RL of every variant (parallel)
#   bash results/h100/ablate.sh runs/abl eval    # eval.py on 1000 test problems, greedy and 1 sample
# (3000 pretraining steps on 60k problems was the preset's value then; pinned here since it changed)
set -uo pipefail
export PYTHONUNBUFFERED=1
O=$1
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
V="swa w64 w256 sink4 sssf wf0 wf005"
case $2 in
sft)
  python pretrain.py --preset ${PRESET:-default} --steps 3000 --n-train 60000 --out $O/base.pt --resume > $O/pretrain.log 2>&1; t pretrain
  python convert.py --init $O/base.pt --out $O/swa.pt --n-val 0 > $O/convert_swa.json &
  python convert.py --init $O/base.pt --window 64 --out $O/w64.pt --n-val 0 > $O/convert_w64.json &
  python convert.py --init $O/base.pt --window 256 --out $O/w256.pt --n-val 0 > $O/convert_w256.json &
  python convert.py --init $O/base.pt --sinks 4 --out $O/sink4.pt --n-val 0 > $O/convert_sink4.json &
  python convert.py --init $O/base.pt --layer-pattern SSSF --out $O/sssf.pt --n-val 0 > $O/convert_sssf.json &
  wait; t convert
  python sft.py --init $O/base.pt --out $O/sft_sa.pt --resume > $O/sft_sa.log 2>&1 &
  for v in swa w64 w256 sink4 sssf; do
    python sft.py --init $O/$v.pt --out $O/sft_$v.pt --resume > $O/sft_$v.log 2>&1 &
  done
  python sft.py --init $O/swa.pt --window-friendly-frac 0 --out $O/sft_wf0.pt --resume > $O/sft_wf0.log 2>&1 &
  python sft.py --init $O/swa.pt --window-friendly-frac 0.05 --out $O/sft_wf005.pt --resume \
    > $O/sft_wf005.log 2>&1 &
  wait; t sft ;;
rl)
  for v in $V; do
    python rl.py --init $O/sft_$v.pt --seed 0 --out $O/rl_$v.pt --save-every 10 --resume > $O/rl_$v.log 2>&1 &
  done
  wait; t rl ;;
eval)
  E="python eval.py --n 1000 --k 1 --no-progress --batch-size 1000"
  $E --ckpt $O/sft_sa.pt $O/sft_swa.pt $O/rl_swa.pt --json $O/eval_swa.json --md $O/eval_swa.md > $O/eval_swa.log 2>&1 &
  for v in w64 w256 sink4 sssf wf0 wf005; do
    $E --ckpt $O/sft_$v.pt $O/rl_$v.pt --json $O/eval_$v.json --md $O/eval_$v.md > $O/eval_$v.log 2>&1 &
  done
  wait; t eval
  cat $O/eval_*.md ;;
esac
