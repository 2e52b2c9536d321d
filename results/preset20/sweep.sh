#!/usr/bin/env bash
# GPU session, part 1 (one H100, ~7 minutes): the default recipe's base and SFT models with the
# fixed flow, the control "SWA + SFT on window-friendly traces only", the SA model's correct samples
# for the distillation control, and an RL learning-rate sweep (60 steps) on the SWA and SA models.
# (1500 pretraining steps was the preset's value then; pinned here since the preset changed)
set -uo pipefail
export PYTHONUNBUFFERED=1
O=runs/default
mkdir -p $O/sweep "${OUT:-/tmp}"
nvidia-smi -L
python -m pytest -q tests/test_model.py -k cuda > $O/gpu_tests.log 2>&1 &
python pretrain.py --preset default --steps 1500 --n-train 60000 --corpus-wf-frac 0.2 --out $O/base.pt --resume > $O/pretrain.log 2>&1
python convert.py --init $O/base.pt --out $O/swa.pt > $O/convert.json 2> $O/convert.log
python sft.py --init $O/base.pt --out $O/sft_sa.pt --resume > $O/sft_sa.log 2>&1 &
python sft.py --init $O/swa.pt --out $O/sft_swa.pt --resume > $O/sft_swa.log 2>&1 &
python sft.py --init $O/swa.pt --window-friendly-frac 1 --out $O/sft_swa_wfonly.pt --resume > $O/sft_swa_wfonly.log 2>&1 &
wait
grep -h sft_final $O/sft_*.jsonl | cut -c1-400
for lr in 3e-5 1e-4 3e-4; do
  timeout 330 python rl.py --init $O/sft_swa.pt --out $O/sweep/swa_lr$lr.pt --lr $lr --steps 60 --eval-every 10 \
    --eval-n 128 > $O/sweep/swa_lr$lr.log 2>&1 &
done
timeout 330 python rl.py --init $O/sft_sa.pt --out $O/sweep/sa_lr1e-4.pt --lr 1e-4 --steps 60 --eval-every 10 \
  --eval-n 128 > $O/sweep/sa_lr1e-4.log 2>&1 &
python distill.py --ckpt $O/sft_sa.pt --n 16000 --out $O/sa_samples.jsonl > $O/distill.json 2> $O/distill.log &
wait
cat $O/gpu_tests.log | tail -3; cat $O/convert.json $O/distill.json
for f in $O/sweep/*.jsonl; do echo "$f"; grep eval_acc $f | cut -c1-200; tail -1 $f | cut -c1-300; done
tar czf "${OUT:-/tmp}/sweep.tgz" $O/*.log $O/*.json $O/*.jsonl $O/sweep/*.jsonl $O/sweep/*.log
