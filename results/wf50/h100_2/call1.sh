#!/usr/bin/env bash
# The second H100 session's driver (README, "Ablations at 50%"), as it ran: the three pretrainings of the
# 50% ablation, side by side
set -uo pipefail
trap 'trap - TERM; kill 0' TERM
export PYTHONUNBUFFERED=1
P=${PRESET:-default}
D=runs/wf50/s0 O=runs/abl50
mkdir -p $D $O
[ -f data/tokenizer.tiktoken ] || python -m data.tokenizer
snap() { while sleep 60; do tar czf $OUT/snap.tgz.tmp --exclude='*.pt' --exclude='*.pt.tmp*' runs && mv $OUT/snap.tgz.tmp $OUT/snap.tgz; done; }
[ -n "${OUT:-}" ] && snap &
SNAP=$!
python pretrain.py --preset $P --seed 0 --out $D/base.pt --resume >> $D/pretrain.log 2>&1 &
for W in ${WINDOWS:-64 256}; do
  python pretrain.py --preset $P --window $W --out $O/base_w$W.pt --resume >> $O/pretrain_w$W.log 2>&1 &
done
wait $(jobs -p | grep -v "^$SNAP$")
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
tail -c 400 $D/pretrain.log $O/pretrain_w*.log
echo call1: done
kill $SNAP 2> /dev/null
