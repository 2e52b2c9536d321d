#!/usr/bin/env bash
# device call 1: ablation phase "sft" beside the CPU-preset search round 1
set -u
export PYTHONUNBUFFERED=1
mkdir -p runs
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 580 bash results/h100/ablate.sh runs/abl sft > runs/abl_sft.out 2>&1 &
A=$!
python results/cpu_search/round1.py > runs/c1.json
timeout 570 python results/cpu_search/search.py runs/c1.json runs/s1 --jobs 14 --minutes 7.5 > runs/s1.out 2>&1
wait $A
cat runs/abl_sft.out; tail -5 runs/s1.out
mkdir -p $OUT/abl $OUT/s1
cp runs/abl_sft.out runs/abl/*.log runs/abl/*.json runs/abl/*.jsonl $OUT/abl/ 2>/dev/null
cp runs/s1.out runs/c1.json $OUT/s1/; cp runs/s1/summary.jsonl $OUT/s1/ 2>/dev/null
for d in runs/s1/*/; do n=$(basename $d); mkdir -p $OUT/s1/$n; cp $d/*.jsonl $d/*.json $OUT/s1/$n/ 2>/dev/null
  for f in $d/*.err; do tail -c 3000 $f > $OUT/s1/$n/$(basename $f); done; done
python - <<'PY'
import json
for l in open("runs/s1/summary.jsonl"):
    r = json.loads(l)
    print(r["name"], r["tag"], [(x["label"], x["greedy_acc"], x["pass1_sampled"], x["sample_wf_frac"]) for x in r["rows"]["results"]])
PY
