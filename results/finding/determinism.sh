#!/usr/bin/env bash
# Does a seed pin a base on one GPU? pretrain.py (300 steps, 20k problems) twice with PyTorch's deterministic
# algorithms and twice without; are the weights bitwise equal, and what does determinism cost in tokens/s?
#   bash results/finding/determinism.sh runs/det      # from the repository root, on a GPU (~2 minutes)
# Not run yet: the session that wrote it spent its device time on draw seed0 (docs/log.md, 2026-12-07).
# (P="--preset smoke --seed 0 --steps 20" bash results/finding/determinism.sh /tmp/det checks it on a CPU)
set -uo pipefail
O=${1:-runs/det}; mkdir -p $O
export CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONUNBUFFERED=1
P=${P:-"--preset default --seed 0 --steps 300 --n-train 20000 --eval-every 0"}
for r in det1 det2 nd1 nd2; do
  python - $O/$r.pt $r $P > $O/$r.log 2>&1 <<'PY'
import runpy, sys, torch
out, run, *args = sys.argv[1:]
if run.startswith("det"):
    torch.use_deterministic_algorithms(True)
sys.argv = ["pretrain.py", *args, "--out", out]
runpy.run_path("pretrain.py", run_name="__main__")
PY
  rc=$?
  tok=$(python -c "import json,statistics,sys; r=[json.loads(l) for l in open(sys.argv[1])]
print(statistics.median(x['tokens_per_s'] for x in r[5:]))" $O/$r.jsonl 2>&1)
  echo "$r rc=$rc median tokens/s (steps 50-300) $tok; $(grep -h '"wall_s"' $O/$r.log | tail -1)"
done
python - $O <<'PY'
import sys, torch
O = sys.argv[1]
w = {r: torch.load(f"{O}/{r}.pt", weights_only=False)["model"] for r in ("det1", "det2", "nd1", "nd2")}
for a, b in (("det1", "det2"), ("nd1", "nd2"), ("det1", "nd1")):
    diff = max((w[a][k].float() - w[b][k].float()).abs().max().item() for k in w[a])
    print(f"{a} vs {b}: max |weight difference| {diff:.3g} ({'bitwise equal' if diff == 0 else 'differ'})")
PY
