#!/usr/bin/env bash
# The second H100 session's driver (README, "Ablations at 50%"), as it ran: base 0's convert, SFT (SA,
# SWA) and SWA RL seed 0 (the recipe's commands), and the ablations
set -uo pipefail
trap 'trap - TERM; kill 0' TERM
export PYTHONUNBUFFERED=1
D=runs/wf50/s0 O=runs/abl50 S=0
mkdir -p $D $O
snap() { while sleep 60; do tar czf $OUT/snap.tgz.tmp --exclude='*.pt' --exclude='*.pt.tmp*' runs && mv $OUT/snap.tgz.tmp $OUT/snap.tgz; done; }
[ -n "${OUT:-}" ] && snap &
SNAP=$!
[ -f $D/swa.pt ] || python convert.py --init $D/base.pt --out $D/swa.pt > $D/convert.json 2> $D/convert.log
core() {
  python sft.py --init $D/base.pt --seed $S --out $D/sft_sa.pt --resume >> $D/sft_sa.log 2>&1 &
  python sft.py --init $D/swa.pt --seed $S --out $D/sft_swa.pt --resume >> $D/sft_swa.log 2>&1 &
  wait
  python rl.py --init $D/sft_swa.pt --seed 0 --out $D/rl_swa_s0.pt --save-every 10 --resume >> $D/rl_swa_s0.log 2>&1
  echo "[core done]"
}
core &
CORE=$!
# meanwhile the variants, from a folder holding only B's base and converted model: the baseline rows' evaluation
# must wait for the finished RL checkpoint (rl.py saves unfinished ones at the same path every 10 steps)
mkdir -p runs/wf50/s0pre && ln -sf ../s0/base.pt ../s0/swa.pt runs/wf50/s0pre/
bash results/ablate.sh runs/wf50/s0pre $O &
wait $CORE $!
bash results/ablate.sh $D $O | tail -1   # the baseline rows' evaluation waited for core
[ -n "${OUT:-}" ] && tar czf $OUT/snap.tgz.tmp --exclude='*.pt' --exclude='*.pt.tmp*' runs && mv $OUT/snap.tgz.tmp $OUT/snap.tgz
echo call2: end
kill $SNAP 2> /dev/null
