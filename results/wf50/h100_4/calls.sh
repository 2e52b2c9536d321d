#!/usr/bin/env bash
# The device calls of the session of 2026-12-06 (third), in order; what each brought back through $OUT lies in
# results/wf50/h100_4/ (steptime/, s2/). Run from the repository root: bash results/wf50/h100_4/calls.sh N
# Every machine: one NVIDIA H100 80GB HBM3, PyTorch 2.11.0+cu130 (gpu.txt); A-D are the four machines the
    # calls got.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}
D=runs/t   # SFT models of a 1500-step base of the default preset (traces ~400 tokens, as the preset's)
mkdir -p $D $OUT
# rl.py with the sliding layers' training attention on the einsum path (the tiled code before flash took it
    # over)
EINSUM='import sys, runpy, model as M; M.flash_window_ok = lambda q, n_sink: False
sys.argv = ["rl.py"] + sys.argv[1:]; runpy.run_path("rl.py", run_name="__main__")'
# rl.py with the decoding graph captured as before 2026-12-06 (third session): `with torch.cuda.graph()`
OLDCAPTURE='import sys, runpy, torch, model as M
def call(self):
    if self.graph is not None:
        return self.graph.replay()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        self.fn()
    torch.cuda.current_stream().wait_stream(side)
    self.graph = torch.cuda.CUDAGraph()
    if self.generator is not None:
        self.graph.register_generator_state(self.generator)
    with torch.cuda.graph(self.graph):
        self.fn()
M.Recorded.__call__ = call
sys.argv = ["rl.py"] + sys.argv[1:]; runpy.run_path("rl.py", run_name="__main__")'
RL="--steps 10 --eval-every 0 --save-every 0"
source results/wf50/models.sh   # models(): the SFT models in $D
case ${1:-} in
1)  # 309 s, at 0353f48 (machine A): the base and its SFT models (in the background), the CUDA tests
    # beside them; then, alone on the GPU,
    # rollout.py and RL step times: flash against einsum, alternating (runs of one code differ by +-0.07 s)
    models &
    python -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_bench.py -k cuda > $OUT/pytest.txt 2>&1
    wait
    cp $D/*.log $D/convert.json $OUT/
    timeout 120 python results/wf50/steptime/rollout.py > $OUT/rollout.jsonl 2> $OUT/rollout.log
    for v in flash einsum flash2 einsum2 flash3 einsum3; do
      case $v in flash*) C=(rl.py);; *) C=(-c "$EINSUM");; esac
      timeout 60 python "${C[@]}" --init $D/sft_swa.pt $RL --out $D/st_$v.pt > $OUT/rl_swa_$v.log 2>&1
      cp $D/st_$v.jsonl $OUT/rl_swa_$v.jsonl
    done
    timeout 60 python rl.py --init $D/sft_sa.pt $RL --out $D/st_sa.pt > $OUT/rl_sa.log 2>&1
    cp $D/st_sa.jsonl $OUT/rl_sa.jsonl ;;
2)  # 4 s, same machine (A): what call 1 left in runs/t (only 8 of its files came back through $OUT)
    cd runs/t && tar czf $OUT/c1.tgz *.log *.jsonl convert.json ;;
3)  # 6 s, at 285c785 (machine B): one layer's decoding attention, SDPA with a mask against
    # FlashAttention's varlen kernel
    python results/wf50/steptime/decode_attn.py > $OUT/decode_attn.jsonl ;;
4)  # 276 s, at d89806a (machine C): the update alone (parts.py: the sliding layers' tiled path is flash
    # now) by micro-batch size; then RL step
    # times with micro-batches of 32k and 64k tokens, alternating; (the models again: a fresh machine)
    models
    timeout 200 python results/wf50/steptime/parts.py --old model.py --only update > $OUT/parts.jsonl 2> $OUT/parts.log
    for v in swa32 swa64 sa32 sa64 swa32b swa64b sa32b sa64b; do
      m=${v%%[0-9]*}; mbt=${v#$m}; mbt=${mbt%b}
      timeout 60 python rl.py --init $D/sft_$m.pt $RL --micro-batch-tokens $((mbt * 1024)) --out $D/mb_$v.pt \
        > $D/mb_$v.log 2>&1
    done
    cd $D && tar czf $OUT/c4.tgz mb_*.jsonl ;;
5)  # 43 s, same machine (C): the einsum path against flash once more, on this quieter machine
    for v in einsum4 flash4 einsum5; do
      case $v in flash*) C=(rl.py);; *) C=(-c "$EINSUM");; esac
      timeout 60 python "${C[@]}" --init $D/sft_swa.pt $RL --out $D/st_$v.pt > $D/st_$v.log 2>&1
    done
    cd $D && tar czf $OUT/c5.tgz st_einsum4.jsonl st_flash4.jsonl st_einsum5.jsonl ;;
6)  # 33 s, same machine (C): where an RL step's host time goes (cProfile, first 60 lines)
    for m in swa sa; do
      python -m cProfile -s cumtime rl.py --init $D/sft_$m.pt $RL --out $D/prof_$m.pt 2>/dev/null | grep -v "^rl:" \
        | head -60 > $OUT/prof_$m.txt
    done ;;
7)  # 261 s, at 66393c0 (machine D): the CUDA graph captured with capture_begin/end (no emptying of the
    # allocator's cache) against
    # `with torch.cuda.graph()` (the code before, patched back in), alternating, SWA and SA; the CUDA tests
    # beside
    # the models
    models &
    python -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_bench.py -k cuda > $OUT/pytest.txt 2>&1
    wait
    for v in swa_new swa_old sa_new sa_old swa_new2 swa_old2 sa_new2 sa_old2; do
      m=${v%%_*}
      case $v in *new*) C=(rl.py);; *) C=(-c "$OLDCAPTURE");; esac
      timeout 60 python "${C[@]}" --init $D/sft_$m.pt $RL --out $D/cap_$v.pt > $D/cap_$v.log 2>&1
    done
    cd $D && tar czf $OUT/c7.tgz cap_*.jsonl ;;
8)  # 345 s, at f3f0be0 (same machine, D): the last of the session's device time: base s2 drawn a fourth
    # time, the recipe (SFT, RL seed 0, evaluations)
    # with the code as it now stands (flash for the sliding layers' training attention, the new capture)
    BASES=2 timeout 470 bash results/wf50/recipe.sh runs/wf50 > runs/recipe_s2.log 2>&1
    gzip -f runs/wf50/s2/traces_*.jsonl
    tar czf $OUT/s2.tgz --exclude='*.pt' runs/wf50/s2 runs/recipe_s2.log ;;
*) echo "usage: calls.sh N (a record of what ran; N = the device call)"; exit 1 ;;
esac
