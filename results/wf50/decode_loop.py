"""
Where does an RL rollout's decoding step go (issue 12's 0.7 s step)? ms per decoding step of the default
model (random weights, batch 256, 64-token prompts, 600 new tokens, sampling at temperature 1, an eos id):
  graph   the CUDA graph of model.decode_step alone, replayed (the floor of the loop as it is)
  loop    model.decode, the loop generate and rl.py run: the graph, then sampling and the eos bookkeeping
          as eager kernels from Python, and (full attention) the cache grown every 32 steps
  fused   the same step with sampling and bookkeeping recorded in the graph too (noise drawn inside it from
          the default generator; a fixed-size cache, so for full attention it attends over every slot)
decode_loop.jsonl holds graph, loop and fused from commit 5cdf2ba, whose fused step wrote the Gumbel sampling
out instead of calling model.sample_next (one division by the temperature fewer). Since commit d5207ee
model.decode's loop is the fused one (with generate's own seeded generator); "loop" measures that now, and
"graph" records the model step with model.Recorded (model.DecodeStep then). torch.compile of the
step was measured before: results/h100/steptime/ (decode_compile.py), README "RL step time".
A measurement for the README, not part of the recipe:
    python results/wf50/decode_loop.py            # on a CUDA machine; --device cpu runs each path once, small
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import model as M  # noqa: E402
from common import PRESETS  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("--device", default="cuda")
args = ap.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
B, PROMPT, STEPS = (256, 64, 600) if cuda else (4, 8, 16)
EOS = 1015


def fused_step(model, cache, bufs):
    """One decoding step, sampling and bookkeeping included, all on the device: what a graph records."""
    tok, pos, t, tokens, logps, n_out, done = bufs
    new, lp = M.sample_next(model.decode_step(tok, pos, cache), 1.0, None, None)
    at = t.expand(tok.shape[0], 1)
    tokens.scatter_(1, at, new[:, None])
    logps.scatter_(1, at, lp[:, None])
    newly = (new == EOS) & ~done
    n_out.copy_(torch.where(newly, t + 1, n_out))
    done.logical_or_(newly)
    tok.copy_(new)
    pos.add_(1)
    t.add_(1)


def timed(fn, n):
    fn()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


for window in (128, None):
    cfg = M.GPTConfig(vocab_size=1016, window=window, **PRESETS["default"]["model"])
    model = M.GPT(cfg).to(dev).eval()
    dec = M.with_linear_weights_in(model, torch.bfloat16) if cuda else model
    lengths = torch.full((B,), PROMPT, device=dev)
    row = {"attention": "full" if window is None else f"sliding W={window}", "batch": B, "steps": STEPS}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):
        dtype = torch.bfloat16 if cuda else torch.float32
        # graph: the recorded model step alone, at a mid-rollout position
        cache = M.KVCache(cfg, lengths, PROMPT + STEPS, dtype)
        tok, pos = torch.zeros(B, dtype=torch.long, device=dev), torch.full((B,), PROMPT + STEPS // 2, device=dev)
        step = M.Recorded(lambda: dec.decode_step(tok, pos, cache), dev)
        row["graph_ms"] = 1e3 * timed(step, STEPS)
        # loop: model.decode as generate calls it (its own copy of the weights in bf16, its cache growth)
        cache = M.KVCache(cfg, lengths, PROMPT + STEPS, dtype)
        logits = torch.randn(B, cfg.vocab_size, device=dev)
        gen = torch.Generator(dev).manual_seed(0)
        row["loop_ms"] = 1e3 * timed(lambda: M.decode(model, cache, logits, lengths, STEPS, 1.0, None, EOS, gen),
                                     1 if not cuda else 3) / STEPS
        # fused: sampling and bookkeeping inside the graph
        cache = M.KVCache(cfg, lengths, PROMPT + STEPS, dtype)
        bufs = (torch.zeros(B, dtype=torch.long, device=dev), lengths.clone(), torch.zeros(1, dtype=torch.long, device=dev),
                torch.zeros(B, STEPS + 2, dtype=torch.long, device=dev), torch.zeros(B, STEPS + 2, device=dev),
                torch.full((B,), STEPS, device=dev), torch.zeros(B, dtype=torch.bool, device=dev))
        fused_step(dec, cache, bufs)   # warm-up
        if cuda:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fused_step(dec, cache, bufs)
            run = graph.replay
        else:
            run = lambda: fused_step(dec, cache, bufs)
        bufs[1].copy_(lengths)
        bufs[2].zero_()
        row["fused_ms"] = 1e3 * timed(run, STEPS - 2)
        row["fused_tokens_ok"] = bool((bufs[3][:, :STEPS - 2] < cfg.vocab_size).all())
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
