#!/usr/bin/env bash
# The default recipe on one GPU (issue 12), the preset as it stands (pretraining corpus half window-friendly):
# three bases (seeds 0 1 2), each SFT'd as SA and SWA and GRPO'd with seed 0; on base 0 also RL seeds 1 and 2
# and the two SFT controls; eval.py on 1000 held-out test problems (greedy and 2 samples); then the RL step
# time of each base-0 model alone on the GPU. Bases pretrain one after another (side by side they are 1.5x
# slower); a base's later stages run while the next one pretrains. Every line resumes or skips what is done,
# so on the device the same command runs again until it prints "recipe: done":
#   timeout 570 bash results/wf50/recipe.sh runs/wf50
# BASES="1 2" bash results/wf50/recipe.sh runs/wf50 does only those bases (a device call that may be the last)
# (PRESET=smoke bash results/wf50/recipe.sh runs/x checks the plumbing on a CPU in a few minutes)
# (traces_*.jsonl, the greedy traces of each evaluation, came after the recorded runs: they have none)
set -uo pipefail
trap 'trap - TERM; kill 0' TERM   # a timeout stops the whole pipeline, background jobs included
export PYTHONUNBUFFERED=1
O=${1:-runs/wf50}
B=${BASES:-0 1 2}   # the bases (seeds) to do
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
new() { [ ! -f "$1" ]; }   # an output not written yet (checkpoints and JSON are renamed into place whole)
finished() { python -c "import sys, torch; m = torch.load(sys.argv[1], weights_only=False)['meta']
sys.exit(m.get('train_state') is not None)" "$1" 2> /dev/null; }   # pretrain --resume would remake the corpus first
[ -f data/tokenizer.tiktoken ] || python -m data.tokenizer
E() { local D=$1 n=$2; shift 2; new $D/eval_$n.json && python eval.py --n 1000 --k 2 --no-progress --batch-size 1000 \
  --json $D/eval_$n.json --md $D/eval_$n.md --traces $D/traces_$n.jsonl "$@" > $D/eval_$n.log 2>&1; }
R() { python rl.py --init $1/sft_$2.pt --seed $3 --out $1/rl_$2_s$3.pt --save-every 10 --resume \
  >> $1/rl_$2_s$3.log 2>&1; }   # RL of model $2 (sa|swa) of base folder $1, seed $3
ER() { E $1 rl$2 --ckpt $1/rl_sa_s$2.pt $1/rl_swa_s$2.pt --label "SA + SFT + RL (seed $2)" \
  --label "SWA + SFT + RL (seed $2)"; }   # evaluation of both models' RL seed $2

later() {   # everything after pretraining, for the base of seed $1: the core rows first, then base 0's extras
  local S=$1 D=$O/s$1
  if new $D/swa.pt; then python convert.py --init $D/base.pt --out $D/swa.pt > $D/convert.json 2> $D/convert.log || return; fi
  python sft.py --init $D/base.pt --seed $S --out $D/sft_sa.pt --resume >> $D/sft_sa.log 2>&1 &
  python sft.py --init $D/swa.pt --seed $S --out $D/sft_swa.pt --resume >> $D/sft_swa.log 2>&1 &
  wait; t "s$S sft"
  E $D sft --ckpt $D/swa.pt $D/sft_sa.pt $D/sft_swa.pt --label "SWA converted, no SFT" --label "SA + SFT" \
    --label "SWA + SFT" &
  R $D sa 0 & R $D swa 0 & wait; t "s$S rl seed 0"
  ER $D 0 &
  if [ $S = 0 ]; then   # RL seeds 1 and 2, and the two SFT controls
    python sft.py --init $D/swa.pt --window-friendly-frac 1 --out $D/ctl_wfonly.pt --resume >> $D/ctl_wfonly.log 2>&1 &
    for r in 1 2; do R $D sa $r & R $D swa $r & done
    # control 2: the SA model's own correct samples, as many sequences as RL sees (40 x 256)
    new $D/sa_samples.jsonl && python distill.py --ckpt $D/sft_sa.pt --n 10240 --out $D/sa_samples.jsonl \
      > $D/distill.json 2> $D/distill.log
    python sft.py --init $D/sft_swa.pt --data $D/sa_samples.jsonl --steps 40 --batch-size 256 --warmup 4 --lr 1e-4 \
      --out $D/ctl_distill.pt --resume >> $D/ctl_distill.log 2>&1
    wait; t "s$S rl seeds 1 2, controls"
    E $D ctl --ckpt $D/ctl_wfonly.pt $D/ctl_distill.pt --label "control: SWA + SFT on wf traces only" \
      --label "control: SWA + SFT, then SFT on SA samples" &
    ER $D 1 & ER $D 2 &
  fi
  wait; t "s$S eval"
}

for S in $B; do
  mkdir -p $O/s$S
  finished $O/s$S/base.pt || python pretrain.py --preset ${PRESET:-default} --seed $S --out $O/s$S/base.pt --resume \
    >> $O/s$S/pretrain.log 2>&1 || continue
  t "s$S pretrain"
  later $S &
done
wait
# the step time alone on the GPU: 6 steps of 256 rollouts (rl_*.jsonl's step_time; the first step compiles)
[ -f $O/s0/sft_sa.pt ] && for m in swa sa; do
  new $O/steptime_$m.pt && python rl.py --init $O/s0/sft_$m.pt --steps 6 --eval-every 0 --save-every 0 \
    --out $O/steptime_$m.pt > $O/steptime_$m.log 2>&1
done
t all
for S in $B; do echo "## base s$S"; cat $O/s$S/eval_*.md 2>/dev/null; done
want=0; for S in $B; do want=$(( want + ($S == 0 ? 5 : 2) )); done   # s0: sft, ctl, rl0-2
n=$(for S in $B; do ls $O/s$S/eval_*.json 2>/dev/null; done | wc -l)
[ $n = $want ] && echo "recipe: done" || echo "recipe: $n of $want evaluations written; run it again"
