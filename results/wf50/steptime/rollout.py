"""
Where the time of one RL rollout goes (issue 12): `generate` on 256 prompts, as rl.py calls it, with random
weights of the default model (no eos, so every call decodes exactly N steps), one JSON line per figure:
  generate  seconds for N = 64, 352 and 704 new tokens (median of 3 after a warm-up); a line through them
            splits a call into a fixed part and a part per decoding step
  pieces    one call at N = 704, with a sync around each of: the prefill, the decoding loop and in it the
            decoding copy of the model (with_linear_weights_in) and the first step (eager warm-up + CUDA graph
            capture); rest: the cache, the generator, turning the outputs into lists
    python results/wf50/steptime/rollout.py > rollout.jsonl
"""
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
import bench  # noqa: E402
import model as M  # noqa: E402

dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")   # cpu: a smoke check of the script
cuda = dev.type == "cuda"
B, NS = (256, (64, 352, 704)) if cuda else (4, (4, 8, 16))
if cuda:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cuda.enable_cudnn_sdp(False)   # as rl.py


def emit(**row):
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


def clock():
    bench.sync(dev)
    return time.perf_counter()


class Pieces:
    """Wraps the functions `generate` calls so that each records its time (synced before and after)."""

    def __init__(self):
        self.t = {}
        self.orig = (M.GPT.prefill, M.decode, M.with_linear_weights_in, M.Recorded.__call__)
        prefill, decode, copy_fn, call = self.orig

        def timed(name, fn):
            def wrapper(*a, **kw):
                t0 = clock()
                out = fn(*a, **kw)
                self.t[name] = self.t.get(name, 0.0) + clock() - t0
                return out
            return wrapper

        def first_call(rec):   # only the call that records the graph: timing every replay would serialise them
            return (timed("first step (warm-up + capture)", call) if rec.graph is None else call)(rec)
        M.GPT.prefill = timed("prefill", prefill)
        M.decode = timed("decode (copy, first step, loop)", decode)
        M.with_linear_weights_in = timed("decoding copy", copy_fn)
        M.Recorded.__call__ = first_call

    def restore(self):
        M.GPT.prefill, M.decode, M.with_linear_weights_in, M.Recorded.__call__ = self.orig


g = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, 1000, (int(torch.randint(60, 100, (), generator=g)),), generator=g).tolist()
           for _ in range(B)]
for window in (128, None):
    torch.manual_seed(0)
    model = M.GPT(bench.default_config(window=window)).to(dev).eval()
    name = "full" if window is None else f"sliding W={window}"
    call = lambda n: M.generate(model, prompts, n, temperature=1.0, seed=0)
    times = {}
    for n in NS:
        call(n)
        times[n] = statistics.median(bench.timed(lambda: call(n), dev) for _ in range(3))
        emit(part="generate", attention=name, batch=B, new_tokens=n, seconds=times[n])
    per_step = (times[NS[-1]] - times[NS[0]]) / (NS[-1] - NS[0])
    emit(part="generate fit", attention=name, ms_per_step=1e3 * per_step,
         fixed_s=times[NS[-1]] - NS[-1] * per_step)
    pieces = Pieces()
    t0 = clock()
    out = call(NS[-1])
    total = clock() - t0
    pieces.restore()
    t = pieces.t
    emit(part="pieces", attention=name, new_tokens=NS[-1], total_s=total, **t,
         loop_s=t["decode (copy, first step, loop)"] - t.get("decoding copy", 0)
         - t.get("first step (warm-up + capture)", 0),
         rest_s=total - t["prefill"] - t["decode (copy, first step, loop)"], tokens=sum(map(len, out[0])))
