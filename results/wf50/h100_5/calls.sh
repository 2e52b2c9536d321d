#!/usr/bin/env bash
# The device calls of the session of 2026-12-06 (fourth), in order; what each brought back through $OUT lies in
# results/wf50/h100_5/. Run from the repository root: bash results/wf50/h100_5/calls.sh N
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}
D=runs/t   # SFT models of a 1500-step base of the default preset (traces ~400 tokens, as the preset's)
mkdir -p $D $OUT
RL="--steps 10 --eval-every 0 --save-every 0"
source results/wf50/models.sh   # models(): the SFT models in $D
gpu() { nvidia-smi --query-gpu=name --format=csv,noheader; python -c "import torch; print(torch.__version__)"; }
case ${1:-} in
1)  # 294 s, at d2b994d plus the two scripts (machine E, one NVIDIA H100 80GB HBM3, PyTorch 2.11.0+cu130, every call):
    # one full layer's decoding attention several ways, a rollout with each, then the SA model's RL step with each
    gpu > $OUT/gpu.txt
    timeout 120 python results/wf50/steptime/decode_split.py > $OUT/decode_split.jsonl 2> $OUT/decode_split.log
    timeout 150 python results/wf50/steptime/decode_ab.py > $OUT/decode_ab.jsonl 2> $OUT/decode_ab.log
    models
    for rep in 1 2; do
      for way in sdpa "split 128" matmul "split 64"; do
        f=sa_${way/ /}_$rep
        WAY="$way" timeout 60 python results/wf50/steptime/decode_ab.py rl --init $D/sft_sa.pt $RL --out $D/$f.pt \
          > $D/$f.log 2>&1
      done
    done
    cd $D && tar czf $OUT/c1.tgz *.log *.jsonl convert.json ;;
2)  # 243 s, at 060c5f7 (after ~1 h of refused starts, a fresh machine F): full layers decode with FlashAttention's varlen kernel (only the slots in use; stopped rows at position 0),
    # against the code before (d2b994d, carried as runs/old): the CUDA tests beside the models, then RL step times
    # alternating new / old
    gpu > $OUT/gpu.txt
    models &
    python -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_bench.py -k cuda > $OUT/pytest.txt 2>&1
    wait
    R=$PWD
    for run in sa_1 swa_1 sa_2; do
      m=${run%_*}
      timeout 60 python rl.py --init $D/sft_$m.pt $RL --out $D/new_$run.pt > $D/new_$run.log 2>&1
      (cd runs/old && timeout 60 python rl.py --init $R/$D/sft_$m.pt $RL --out $R/$D/old_$run.pt > $R/$D/old_$run.log 2>&1)
    done
    cd $D && tar czf $OUT/c2.tgz *.log *.jsonl convert.json ;;
2b) # 9 s, right after 2 on machine F: the new flash decoding test, whose name -k cuda had missed
    python -m pytest -q -p no:cacheprovider tests/test_model.py -k "flash_decoding or flash_and" ;;
3)  # 86 s, same machine: bench.py at 060c5f7 (found: batch 1 failed, "seqused_k must be contiguous")
    nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
    timeout 200 python bench.py --only decode,generate,attention --no-hf --json $OUT/bench.json > $OUT/bench.log 2>&1
    ;;
4)  # 43 s, same machine, after the fix (`used` made contiguous; not yet the batch gate): CUDA tests, bench
    nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
    python -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_bench.py -k "flash or cuda" > $OUT/pytest.txt 2>&1
    timeout 60 python bench.py --only decode,generate --no-hf --json $OUT/bench.json > $OUT/bench.log 2>&1 ;;
esac
