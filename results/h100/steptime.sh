#!/usr/bin/env bash
# The RL step-time measurements of results/h100/steptime/final and steptime/cudnn (issue 12), each one
# device call: SFT models of a 1500-step base (their traces are as long as the preset's, ~400 tokens),
# then each measurement alone on the GPU.
#   bash results/h100/steptime.sh final   # steptime.py (rollouts, kernels, update paths), rl.py --steps 6, decode_compile.py
#   bash results/h100/steptime.sh cudnn   # rl.py --steps 10 with SDPA's cuDNN backend on and off (rl.py turns it off now)
# (final ran at commit 1a629e9; cudnn at ff4e06f, when rl.py still left cuDNN on)
set -uo pipefail
export PYTHONUNBUFFERED=1
D=runs/t
mkdir -p $D
[ -f data/tokenizer.tiktoken ] || python -m data.tokenizer
if [ ! -f $D/sft_swa.pt ]; then
  python pretrain.py --preset default --steps 1500 --eval-every 0 --out $D/base.pt > $D/pretrain.log 2>&1
  python convert.py --init $D/base.pt --n-val 0 --out $D/swa.pt > $D/convert.json 2>&1
  python sft.py --init $D/base.pt --out $D/sft_sa.pt > $D/sft_sa.log 2>&1 &
  python sft.py --init $D/swa.pt --out $D/sft_swa.pt > $D/sft_swa.log 2>&1
  wait
fi
NOCUDNN='import sys, runpy, torch; torch.backends.cuda.enable_cudnn_sdp(False); sys.argv = ["rl.py"] + sys.argv[1:]
runpy.run_path("rl.py", run_name="__main__")'
case $1 in
final)
  for m in swa sa; do
    python results/h100/steptime.py --init $D/sft_$m.pt > $D/steptime_$m.jsonl 2> $D/steptime_$m.log
  done
  R="python rl.py --steps 6 --eval-every 0 --save-every 0"
  $R --init $D/sft_swa.pt --out $D/rl_swa_tiled.pt > $D/rl_swa_tiled.log 2>&1
  $R --init $D/sft_swa.pt --attn-impl dense --out $D/rl_swa_dense.pt > $D/rl_swa_dense.log 2>&1
  $R --init $D/sft_sa.pt --out $D/rl_sa.pt > $D/rl_sa.log 2>&1
  python results/h100/decode_compile.py > $D/decode_compile.jsonl 2> $D/decode_compile.log ;;
cudnn)
  R="--steps 10 --eval-every 0 --save-every 0"
  python rl.py $R --init $D/sft_swa.pt --out $D/rl_swa_tiled.pt > $D/rl_swa_tiled.log 2>&1
  python -c "$NOCUDNN" $R --init $D/sft_swa.pt --out $D/rl_swa_tiled_nocudnn.pt > $D/rl_swa_tiled_nocudnn.log 2>&1
  python -c "$NOCUDNN" $R --init $D/sft_swa.pt --attn-impl dense --out $D/rl_swa_dense_nocudnn.pt \
    > $D/rl_swa_dense_nocudnn.log 2>&1
  python rl.py $R --init $D/sft_sa.pt --out $D/rl_sa.pt > $D/rl_sa.log 2>&1
  python -c "$NOCUDNN" $R --init $D/sft_sa.pt --out $D/rl_sa_nocudnn.pt > $D/rl_sa_nocudnn.log 2>&1 ;;
esac
