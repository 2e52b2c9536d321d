"""
Does torch.compile pay for RL's update (issue 12's 0.7 s)? rl.optimize on batches of 256 synthetic sequences whose
lengths change from batch to batch as RL's do (prompts 80-130 tokens, completions N(mean, 90) clipped to
150-760, mean 300..450), eager against the model compiled with dynamic shapes, sliding layers tiled or flex.
One JSON line per batch: seconds (the first ones compile), graphs compiled so far; then the best of 3 on one batch.
--flex-fn: only the eager model with its flex_attention call compiled with dynamic shapes (sliding layers).
    python results/wf50/steptime/compiled.py > compiled.jsonl 2> compiled.log
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
import bench  # noqa: E402
import model as M  # noqa: E402
import rl  # noqa: E402
from common import PRESETS  # noqa: E402

import argparse  # noqa: E402
from functools import lru_cache  # noqa: E402

from torch.nn.attention.flex_attention import flex_attention  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--flex-fn", action="store_true")
cli = ap.parse_args()
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")   # cpu: a smoke check of the script
cuda = dev.type == "cuda"
n, scale = (256, 1) if cuda else (8, 10)
if cuda:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cuda.enable_cudnn_sdp(False)   # as rl.py
args = rl.get_args(["--init", "none"])
for k, v in PRESETS["default"]["rl"].items():
    setattr(args, k, v)


def batch(seed, mean):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 1000, (int(torch.randint(80, 131, (), generator=g)) // scale,), generator=g).tolist()
               for _ in range(n)]
    lens = ((torch.randn(n, generator=g) * 90 + mean).clamp(150, 760) // scale).int().tolist()
    comps = [torch.randint(0, 1000, (m,), generator=g).tolist() for m in lens]
    sampler = [(-torch.rand(m, generator=g)).tolist() for m in lens]
    return prompts, comps, torch.randn(n, generator=g), sampler


batches = [batch(s, mean) for s, mean in enumerate((400, 420, 380, 450, 300, 350, 400, 410, 390, 430))]
configs = ((128, "tiled", False), (128, "tiled", True), (128, "flex", True), (None, "tiled", False), (None, "tiled", True))
if cli.flex_fn:
    M._compiled_flex = lru_cache(maxsize=1)(lambda: torch.compile(flex_attention, dynamic=True))
    configs = ((128, "flex", False),)
t_start = time.perf_counter()
for window, impl, compiled in configs:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = M.GPT(M.GPTConfig(vocab_size=1016, window=window, **PRESETS["default"]["model"]), attn_impl=impl)
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    fwd = torch.compile(model, dynamic=True) if compiled else model
    name = dict(attention="full" if window is None else f"sliding W={window}", attn_impl=impl, compiled=compiled)
    for i, (p, c, a, s) in enumerate(batches):
        try:
            dt = bench.timed(lambda: rl.optimize(fwd, opt, p, c, a, args, None, s, 1e-6), dev)
        except Exception as e:   # a path that does not compile says so, and the run goes on
            print(json.dumps({**name, "batch": i, "error": f"{type(e).__name__}: {str(e)[:300]}"}), flush=True)
            break
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        print(json.dumps({**name, "batch": i, "seconds": round(dt, 3), "unique_graphs": graphs}), flush=True)
    else:
        p, c, a, s = batches[0]
        step = lambda: rl.optimize(fwd, opt, p, c, a, args, None, s, 1e-6)
        best = min(bench.timed(step, dev) for _ in range(3))
        print(json.dumps({**name, "best_of_3": round(best, 3), "process_s": round(time.perf_counter() - t_start, 1)}),
              flush=True)
