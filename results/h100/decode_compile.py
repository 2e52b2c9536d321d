"""
Would a fused decoding step reach the RL step-time target (issue 12)? ms per decoding step of the
default model (random weights, batch 256, 512 positions in the cache), the step as model.py runs it
(a CUDA graph of eager kernels) against the same step through torch.compile (fused kernels), also
graphed. A measurement for the README, not part of the recipe. (Its recorded figures came from commit
1a629e9, when model.DecodeStep took the step's inputs; it now records a closure with model.Recorded.)

    python results/h100/decode_compile.py
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import model as M  # noqa: E402
from common import PRESETS  # noqa: E402

B, CONTEXT, STEPS = 256, 512, 200
dev = torch.device("cuda")
for window in (None, 128):
    cfg = M.GPTConfig(vocab_size=1016, window=window, **PRESETS["default"]["model"])
    model = M.GPT(cfg).to(dev).eval()
    for compiled in (False, True):
        if compiled:
            model.decode_step = torch.compile(model.decode_step, dynamic=False)
        cache = M.KVCache(cfg, torch.full((B,), CONTEXT, device=dev), CONTEXT + STEPS + 1, torch.bfloat16)
        for t in cache.k + cache.v:
            t.normal_()
        tok, pos = torch.zeros(B, dtype=torch.long, device=dev), torch.full((B,), CONTEXT, device=dev)
        logits = torch.zeros(B, cfg.vocab_size, device=dev)
        step = M.Recorded(lambda: logits.copy_(model.decode_step(tok, pos, cache)), dev)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            t0 = time.perf_counter()
            for _ in range(3):
                step()    # warm-up (and compile), then the graph is captured
            torch.cuda.synchronize()
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(STEPS):
                pos.fill_(CONTEXT + i)
                step()
                tok.copy_(logits.argmax(-1))
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / STEPS
        print(json.dumps({"attention": "full" if window is None else f"sliding W={window}", "compiled": compiled,
                          "batch": B, "context": CONTEXT, "ms_per_step": round(dt * 1e3, 3),
                          "warmup_s": round(warm, 1)}), flush=True)
