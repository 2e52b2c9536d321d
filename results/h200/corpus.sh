#!/usr/bin/env bash
# Does the base's skill at window-friendly traces depend on how many of them its corpus holds? (issue 12)
# Draws of the default recipe with the pretraining corpus at window-friendly share F (SFT keeps the
# data record's 0.2): pretrain -> convert -> SFT of SA and SWA -> GRPO of both (seed 0) -> eval.py on
# 1000 test problems (greedy and 2 samples). Seeds' pipelines run in parallel on the one GPU; every line
# resumes or skips what is done, so on the device the same command runs again until "corpus: done":
#   timeout 570 bash results/h200/corpus.sh runs/corpus 0.5 0 1 2
set -uo pipefail
trap 'trap - TERM; kill 0' TERM   # a timeout stops the whole pipeline, background jobs included
export PYTHONUNBUFFERED=1
O=$1 F=$2
shift 2
mkdir -p $O
t0=$(date +%s); t() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
new() { [ ! -f "$1" ]; }   # an output not written yet (checkpoints and JSON are renamed into place whole)
[ -f data/tokenizer.tiktoken ] || python -m data.tokenizer

draw() {
  local S=$1 D=$O/s$1
  mkdir -p $D
  python pretrain.py --preset ${PRESET:-default} --seed $S --corpus-wf-frac $F --out $D/base.pt --resume \
    >> $D/pretrain.log 2>&1 || return
  t "s$S pretrain"
  if new $D/swa.pt; then python convert.py --init $D/base.pt --out $D/swa.pt > $D/convert.json 2> $D/convert.log || return; fi
  python sft.py --init $D/base.pt --seed $S --out $D/sft_sa.pt --resume >> $D/sft_sa.log 2>&1 &
  python sft.py --init $D/swa.pt --seed $S --out $D/sft_swa.pt --resume >> $D/sft_swa.log 2>&1 &
  wait
  t "s$S sft"
  for m in sa swa; do
    python rl.py --init $D/sft_$m.pt --seed 0 --out $D/rl_$m.pt --save-every 10 --resume >> $D/rl_$m.log 2>&1 &
  done
  wait
  t "s$S rl"
  new $D/eval.json && python eval.py --n 1000 --k 2 --no-progress --batch-size 1000 --json $D/eval.json --md $D/eval.md \
    --ckpt $D/swa.pt $D/sft_sa.pt $D/sft_swa.pt $D/rl_sa.pt $D/rl_swa.pt --label "SWA converted, no SFT" \
    --label "SA + SFT" --label "SWA + SFT" --label "SA + SFT + RL" --label "SWA + SFT + RL" > $D/eval.log 2>&1
  t "s$S eval"
}

for S in "$@"; do draw $S & done
wait
t all
for S in "$@"; do echo "## s$S (corpus wf share $F)"; cat $O/s$S/eval.md 2>/dev/null; done
n=$(ls $O/s*/eval.json 2>/dev/null | wc -l)
[ $n = $# ] && echo "corpus: done" || echo "corpus: $n of $# evaluations written; run it again"
