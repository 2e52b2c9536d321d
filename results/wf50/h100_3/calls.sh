#!/usr/bin/env bash
# The device calls of the session of 2026-12-06 (second), one NVIDIA H100 80GB HBM3, PyTorch 2.11.0+cu130, in order.
# .gpu/base held the top-level *.py and data/ of commit b8f694b (the code before the decode and rl.py changes):
#   mkdir -p .gpu/base && git archive b8f694b $(git ls-tree --name-only b8f694b | grep '\.py$') data | tar -x -C .gpu/base
# Each call's output came back through $OUT; here it lies under results/wf50/h100_3/ and results/wf50/steptime/.
case ${1:-} in
1)  # 122 s, at d5207ee's parent plus the uncommitted decode change (the same model.py as d5207ee, less the fused
    # projections): the CUDA tests (graphed decoding == eager decoding, sampling now inside the graph), then parts.py
    python -m pytest -q -p no:cacheprovider tests/test_bench.py tests/test_model.py -k cuda   # -> pytest.txt
    python results/wf50/steptime/parts.py --old .gpu/base/model.py > parts.jsonl 2> parts.log ;;
2)  # 540 s (cut by its own timeout in the last configuration): torch.compile of the update
    timeout 540 python results/wf50/steptime/compiled.py > compiled.jsonl 2> compiled.log ;;
3)  # 453 s, at d5207ee: base s2 drawn a third time, the recipe to its end
    BASES=2 timeout 550 bash results/wf50/recipe.sh runs/wf50 > runs/recipe_s2.log 2>&1 ;;
4)  # 78 s, same machine: RL step time, old code (b8f694b) against new (d5207ee), each alone, 10 steps
    D=runs/wf50/s2
    for m in swa sa; do for code in old new; do
      R="python rl.py"; [ $code = old ] && R="python .gpu/base/rl.py"
      timeout 100 $R --init $D/sft_$m.pt --steps 10 --eval-every 0 --save-every 0 --out runs/st/${code}_$m.pt \
        > runs/st/${code}_$m.log 2>&1
    done; done ;;
5|6|7)  # 53 s, then 57 s and 95 s on the same machine: flex_attention compiled with dynamic shapes (a patch, not
    # the code as committed), alone (compiled.py --flex-fn, twice: cold and warm compile cache), then inside rl.py
    # beside the tiled path: flexdyn, tiled, then tiled2 flexdyn2 tiled3 flexdyn3
    timeout 170 python results/wf50/steptime/compiled.py --flex-fn > flexfn_1.jsonl   # and again: flexfn_2.jsonl
    P='import sys, runpy, functools, torch, model as M; from torch.nn.attention.flex_attention import flex_attention
M._compiled_flex = functools.lru_cache(maxsize=1)(lambda: torch.compile(flex_attention, dynamic=True))
sys.argv = ["rl.py"] + sys.argv[1:]; runpy.run_path("rl.py", run_name="__main__")'
    for v in flexdyn tiled tiled2 flexdyn2 tiled3 flexdyn3; do
      A=""; case $v in flex*) A="--attn-impl flex";; esac
      timeout 100 python -c "$P" --init runs/wf50/s2/sft_swa.pt --steps 10 --eval-every 0 --save-every 0 $A \
        --out runs/st/$v.pt > runs/st/$v.log 2>&1
    done ;;
*) echo "usage: calls.sh 1..7 (a record of what ran; the run ids are the device calls)"; exit 1 ;;
esac
