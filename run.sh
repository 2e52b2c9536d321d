#!/usr/bin/env bash
# The whole SWARR recipe, in order, then the results table:
#   tokenizer (if missing) -> pretrain the SA base -> convert it to SWA -> the base report (eval.py on
#   both; report.py says whether the draw is weak) -> SFT of SA and of SWA (same data, steps,
#   hyperparameters) -> GRPO of both (same settings) -> eval.py on them -> results.md / results.json
#
#   bash run.sh [--preset smoke|tiny|cpu|default] [--seed S] [--window W] [--rl-seeds "0 1 2"]
#               [--sinks N] [--layer-pattern S] [--wf-frac F] [--corpus-wf-frac F]
#               [--out runs/NAME] [--force] [--gpus N (torchrun: N processes, README "More GPUs")]
#
# Every setting comes from one row of the presets table (common.py); without --preset, default
# when CUDA is available, cpu otherwise; the row's expected time is printed first. --window and
# --wf-frac go to pretraining and flow from there through every checkpoint's data record (convert,
# SFT, RL and eval read them there); --corpus-wf-frac is the pretraining corpus's share alone. Each
# stage skips work whose finished output exists (training stages resume a partial one; the evaluation is
# redone when a model is newer than its table), unless --force.
# A SIGTERM or Ctrl-C is passed on to the running stage (a training stage saves at its next step
# boundary) and stops the recipe; running it again continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")"

preset="" seed=0 window="" sinks=0 pattern=S wf_frac="" corpus_wf="" out="" force=0 rl_seeds="" gpus=1
value() {   # an option's value: `--preset` last on the line is one clear line, not bash's "unbound variable"
  [ $# -ge 2 ] || { echo "error: $1 needs a value (see bash run.sh --help)" >&2; exit 1; }
  printf '%s' "$2"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$(value "$@"); shift 2 ;;
    --seed) seed=$(value "$@"); shift 2 ;;
    --window) window=$(value "$@"); shift 2 ;;
    --sinks) sinks=$(value "$@"); shift 2 ;;
    --layer-pattern) pattern=$(value "$@"); shift 2 ;;
    --wf-frac) wf_frac=$(value "$@"); shift 2 ;;
    --corpus-wf-frac) corpus_wf=$(value "$@"); shift 2 ;;
    --rl-seeds) rl_seeds=$(value "$@"); shift 2 ;;
    --out) out=$(value "$@"); shift 2 ;;
    --force) force=1; shift ;;
    --gpus) gpus=$(value "$@"); shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see bash run.sh --help)" >&2; exit 1 ;;
  esac
done
source setup.sh   # PY: a Python with torch and the rest (installs what is missing, once)
# Signals: bash runs a trap only once the command in the foreground has ended, so every Python command
# runs in the background and is waited for ("$PY" is the function py); a SIGTERM or Ctrl-C sent to this
# script is passed on to it as SIGTERM at once, and the recipe stops when it has exited.
python=$PY stage=""
py() { "$python" "$@" & stage=$!; wait $stage; }
PY=py
# --gpus N: pretraining, SFT, RL and evaluation as N data-parallel processes, one per GPU (torchrun; dist.py)
[[ "$gpus" =~ ^[1-9][0-9]*$ ]] || { echo "error: --gpus must be a positive integer, got '$gpus'" >&2; exit 1; }
dpy() {
  if [ "$gpus" = 1 ]; then py "$@"
  else py -m torch.distributed.run --standalone --nproc_per_node "$gpus" -- "$@"; fi
}
stop() {   # $1: the signal, $2: the exit status it calls for
  if [ -n "$stage" ]; then kill -TERM "$stage" 2>/dev/null || true; wait "$stage" || true; fi
  echo "run.sh: stopped by SIG$1; run it again to continue where it stopped" >&2
  exit "$2"
}
trap 'stop TERM 143' TERM
trap 'stop INT 130' INT
if [ -z "$preset" ]; then
  preset=$("$PY" -c "from common import default_preset; print(default_preset())")
  echo "no --preset given: using '$preset' ($( [ $preset = default ] && echo CUDA found || echo no CUDA))"
fi
# an unknown preset: common.apply_preset's one line ("unknown preset 'x'; known: ...") and exit 1
expect=$("$PY" -c "import argparse, common, sys
args = common.apply_preset(argparse.Namespace(preset=sys.argv[1]), 'eval')
print(common.PRESETS[args.preset].get('expect', 'unknown'))" "$preset") || exit 1
echo "preset '$preset': the whole recipe takes $expect"
out=${out:-runs/$preset}
rl_seeds=${rl_seeds:-$seed}
mkdir -p "$out"
# The run record: the settings that made this folder. A rerun with other settings would otherwise
# reuse the old checkpoints (and report their window as the new one), so it refuses; --force starts
# over, removing the old stage outputs (old RL seeds would otherwise still be plotted).
# (corpus_wf_frac only when given: folders made before the flag keep their record)
record=$("$PY" -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' \
  preset "$preset" seed "$seed" window "${window:-preset}" sinks "$sinks" layer_pattern "$pattern" \
  wf_frac "${wf_frac:-preset}" rl_seeds "$rl_seeds" $( [ -n "$corpus_wf" ] && echo corpus_wf_frac "$corpus_wf" ))
if [ -s "$out/run.json" ] && [ "$(cat "$out/run.json")" != "$record" ]; then
  if [ $force = 0 ]; then
    echo "error: $out holds a run made with other settings ($(cat "$out/run.json")); use another --out," \
      "or --force to start over" >&2
    exit 1
  fi
  echo "--force: $out was made with other settings; removing its stage outputs"
  rm -f "$out"/{base,swa,sft_sa,sft_swa}.{pt,jsonl} "$out"/rl_*.{pt,jsonl,svg} \
    "$out"/{convert.json,base.json,base.md,final.json,results.json,results.md,rl_curves.svg}
fi
trap 'rm -f "$out"/*.tmp$$' EXIT   # this script's temporary files, if a stage fails
echo "$record" > "$out/run.json.tmp$$" && mv "$out/run.json.tmp$$" "$out/run.json"
resume=$([ $force = 1 ] && echo "" || echo "--resume")
data=()
[ -n "$window" ] && data+=(--window "$window")
[ -n "$wf_frac" ] && data+=(--window-friendly-frac "$wf_frac")
[ -n "$corpus_wf" ] && data+=(--corpus-wf-frac "$corpus_wf")
say() { echo; echo "=== $* ($(date +%H:%M:%S))"; }
start=$(date +%s)

[ -f data/tokenizer.tiktoken ] || { say tokenizer; "$PY" -m data.tokenizer; }

say "pretrain SA base"
dpy pretrain.py --preset "$preset" --seed "$seed" "${data[@]}" --out "$out/base.pt" $resume
# convert's outputs are the checkpoint and its report: both there, or it is done again (a kill after the
# checkpoint used to leave convert.json empty for good); the report is renamed into place when whole
if [ $force = 1 ] || [ ! -f "$out/swa.pt" ] || [ ! -s "$out/convert.json" ]; then
  say "convert to SWA (the run's window, pattern $pattern, sinks $sinks)"
  # --n-val 0: the base report below measures both models on the run's 1000 test problems
  "$PY" convert.py --init "$out/base.pt" --layer-pattern "$pattern" --sinks "$sinks" --out "$out/swa.pt" \
    --n-val 0 > "$out/convert.json.tmp$$"
  mv "$out/convert.json.tmp$$" "$out/convert.json"
  cat "$out/convert.json"
fi
# the base report: what the base writes and how well, what conversion costs, whether the draw is weak
if [ $force = 1 ] || [ ! -s "$out/base.json" ]; then
  say "the base report (the base and the converted model, before SFT)"
  dpy eval.py --ckpt "$out/base.pt" "$out/swa.pt" --label "SA base, no SFT" --label "SWA converted, no SFT" \
    --seed "$seed" --json "$out/base.json" > /dev/null
fi
"$PY" report.py base "$out"

say "SFT of the SA model"
dpy sft.py --init "$out/base.pt" --seed "$seed" --out "$out/sft_sa.pt" $resume
say "SFT of the SWA model"
dpy sft.py --init "$out/swa.pt" --seed "$seed" --out "$out/sft_swa.pt" $resume

ckpts=("$out/sft_sa.pt" "$out/sft_swa.pt")
labels=(--label "SA + SFT" --label "SWA + SFT")
for s in $rl_seeds; do
  for m in sa swa; do
    say "RL of the $m model (seed $s)"
    dpy rl.py --init "$out/sft_$m.pt" --seed "$s" --out "$out/rl_${m}_s$s.pt" $resume
    ckpts+=("$out/rl_${m}_s$s.pt"); labels+=(--label "$(echo $m | tr a-z A-Z) + SFT + RL (seed $s)")
  done
done

# evaluation: again only when a model it evaluates is newer than its table (or there is none)
fresh=1
for c in "${ckpts[@]}"; do [ "$out/final.json" -nt "$c" ] || fresh=0; done
if [ $force = 1 ] || [ $fresh = 0 ]; then
  say "evaluate"
  dpy eval.py --ckpt "${ckpts[@]}" "${labels[@]}" --seed "$seed" --json "$out/final.json" > /dev/null
fi
"$PY" report.py results "$out"   # results.json and results.md: the base report, then every model
"$PY" plot.py "$out/rl_curves.svg" "$out"/rl_*.jsonl
echo; echo "run.sh --preset $preset finished in $(( $(date +%s) - start )) s; results in $out/results.md"
