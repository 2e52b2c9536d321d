# Sourced by results/wf50/h100_4/calls.sh and h100_5/calls.sh: models() makes, in $D, SFT models of a 1500-step
# base of the default preset (traces ~400 tokens, as the preset's) for RL step-time runs; ~110 s on an H100. A
# machine is warm only ~30 s after a call, so a later call may have to make them again.
models() {
  [ -f $D/sft_swa.pt ] && return
  python pretrain.py --preset default --steps 1500 --eval-every 0 --out $D/base.pt > $D/pretrain.log 2>&1
  python convert.py --init $D/base.pt --n-val 0 --out $D/swa.pt > $D/convert.json 2>&1
  python sft.py --init $D/base.pt --out $D/sft_sa.pt > $D/sft_sa.log 2>&1 &
  python sft.py --init $D/swa.pt --out $D/sft_swa.pt > $D/sft_swa.log 2>&1
  wait
}
