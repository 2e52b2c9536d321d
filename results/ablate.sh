#!/usr/bin/env bash
# The ablation table of issue 12: variants of the SWA model of one recipe run, each SFT'd and GRPO'd like it.
# B is a run folder of `run.sh` (or one base folder of results/wf50/recipe.sh): its base, its converted SWA
# model, its SA + SFT, SWA + SFT and SWA + RL (rl_swa_s<S>.pt) are the baseline rows. The W variants start
# from a base pretrained for their window (`pretrain.py --window W`: the corpus's window-friendly traces are
# written for it), converted and fine-tuned like the SWA + SFT row, with that base's SA + SFT beside it; the
# others are converted from B's base (sinks, a full layer in the pattern) or fine-tuned from B's converted
# model with another window-friendly share of the SFT data. Each variant: SFT, one GRPO run (the baseline's
# seed S, the preset's settings), eval.py (the preset's problems, greedy and 1 sample). Independent pipelines
# run in parallel; every line resumes or skips what is done, so on the device (10-minute calls) the same
# command runs again until it prints "ablate: done"; `python results/ablate_table.py O` prints the table.
#   timeout 570 bash results/ablate.sh runs/finding/seed3 runs/abl35   # at the 35% corpus: still to run
#   timeout 570 bash results/ablate.sh runs/wf50/s0 runs/abl50      # results/wf50/ablate/
#   (at the 20% corpus, from runs/default: `git show ab9762d:results/h100/ablate2/`)
#   OMP_NUM_THREADS=1 PRESET=cpu WINDOWS="32 128" PATTERN=SF bash results/ablate.sh runs/cpu0 runs/cpu_abl
#     (B from `bash run.sh --preset cpu --out runs/cpu0`; 2 CPU cores, one thread per pipeline: results/cpu_ablate/)
# PRESET, WINDOWS (the own-base windows: half and twice the preset's) and PATTERN (one full layer in four;
# the 2-layer cpu model takes SF) are the only knobs.
set -uo pipefail
trap 'trap - TERM; kill 0' TERM   # a timeout stops the whole pipeline, background jobs included
export PYTHONUNBUFFERED=1
B=$1 O=$2
# the RL seed of B's baseline row (run.sh names its RL checkpoints rl_swa_s<seed>.pt): the variants' too
S=$(ls $B/rl_swa_s*.pt 2>/dev/null | head -1 | sed 's/.*rl_swa_s\([0-9]*\)\.pt$/\1/')
S=${S:-0}
PRESET=${PRESET:-default} WINDOWS=${WINDOWS:-64 256} PATTERN=${PATTERN:-SSSF}
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
new() { [ ! -f "$1" ]; }   # an output not written yet (checkpoints and JSON are renamed into place whole)
E() { new $O/eval_$1.json && python eval.py --k 1 --no-progress --json $O/eval_$1.json \
  --md $O/eval_$1.md --ckpt "${@:2}" > $O/eval_$1.log 2>&1; }
[ -f data/tokenizer.tiktoken ] || python -m data.tokenizer

variant() {   # name, the checkpoint its SFT starts from, sft.py's extra flags: SFT -> RL -> eval
  local v=$1 init=$2
  shift 2
  python sft.py --init $init --out $O/sft_$v.pt --resume "$@" >> $O/sft_$v.log 2>&1 &&
    python rl.py --init $O/sft_$v.pt --seed $S --out $O/rl_$v.pt --save-every 10 --resume >> $O/rl_$v.log 2>&1 &&
    E $v $O/sft_$v.pt $O/rl_$v.pt
  t $v
}

window() {    # W: a base pretrained for the window; its SA + SFT; its SWA variant
  local W=$1
  python pretrain.py --preset $PRESET --window $W --out $O/base_w$W.pt --resume >> $O/pretrain_w$W.log 2>&1 || return
  if new $O/w$W.pt; then
    python convert.py --init $O/base_w$W.pt --n-val 0 --out $O/w$W.pt > $O/convert_w$W.json 2> $O/convert_w$W.log || return
  fi
  { python sft.py --init $O/base_w$W.pt --out $O/sft_sa_w$W.pt --resume >> $O/sft_sa_w$W.log 2>&1 &&
    E sa_w$W $O/sft_sa_w$W.pt; } &
  variant w$W $O/w$W.pt
  wait
}

conv() {      # name, convert.py's flags: a variant converted from B's base (B's window)
  local v=$1
  shift
  new $O/$v.pt && { python convert.py --init $B/base.pt --n-val 0 --out $O/$v.pt "$@" > $O/convert_$v.json \
    2> $O/convert_$v.log || return; }
  variant $v $O/$v.pt
}

for W in $WINDOWS; do window $W & done
conv sink4 --sinks 4 &
conv $(echo $PATTERN | tr SF sf) --layer-pattern $PATTERN &   # named by its pattern: sssf
variant wf0 $B/swa.pt --window-friendly-frac 0 &
variant wf005 $B/swa.pt --window-friendly-frac 0.05 &
E swa $B/sft_sa.pt $B/sft_swa.pt $B/rl_swa_s$S.pt &
wait
t all
cat $O/eval_*.md
n=$(ls $O/eval_*.json | wc -l) want=$(( 5 + 2 * $(echo $WINDOWS | wc -w) ))
[ $n = $want ] && echo "ablate: done" || echo "ablate: $n of $want evaluations written; run it again"
