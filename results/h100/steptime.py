"""
Where an RL step's time goes (issue 12): the rollouts of one step (256 samples), the GPU kernels of
one decoding step (their names to stderr), and the update with the sliding layers on the tiled
and the dense path, plus a profile of each (stderr). One JSON line per measurement. Earlier
versions compared decode loops: steptime3_*.jsonl (commit 9d5fda5: loops dropping stopped rows).

    python results/h100/steptime.py --init runs/d6k/sft_swa.pt > steptime_swa.jsonl
"""
import argparse
import copy
import json
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import model as M  # noqa: E402
import rl  # noqa: E402
from common import apply_preset, data_knobs, load  # noqa: E402
from data.tokenizer import encode_prompt  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--init", required=True)
p.add_argument("--reps", type=int, default=4)
cli = p.parse_args()

dev = "cuda" if torch.cuda.is_available() else "cpu"   # cpu: a smoke check of this script only
model, enc, meta = load(cli.init, dev, attn_impl="tiled")
args = apply_preset(rl.get_args(["--init", cli.init]), "rl", meta)
torch.backends.cuda.matmul.allow_tf32 = True
problems = rl.step_problems(args, data_knobs(meta), 0)
prompts = [encode_prompt(enc, q["question"]) for q in problems for _ in range(args.group_size)]
name = os.path.basename(cli.init)
n_new = min(args.max_new_tokens, model.config.max_seq_len - max(map(len, prompts)))


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def emit(**row):
    print(json.dumps({"init": name, **row}), flush=True)


roll = lambda seed: rl.rollout(model, prompts, n_new, 1.0, enc.eot_token, seed=seed, gen_batch=256)
timed(lambda: roll(0))   # warm-up
runs = [timed(lambda: roll(seed)) for seed in range(1, cli.reps + 1)]
lens = [[len(c) for c in comps] for _, (comps, _) in runs]
emit(part="rollout", decode="model.decode", seconds=round(sum(dt for dt, _ in runs) / len(runs), 3),
     each=[round(dt, 3) for dt, _ in runs], len_max=[max(x) for x in lens],
     len_mean=round(sum(map(sum, lens)) / sum(map(len, lens)), 1))

if dev == "cuda":   # GPU kernels of one decoding step: the CUDA graph replays as many
    def kernels(n_new):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            M.generate(model, prompts, n_new, temperature=1.0, seed=0, cuda_graph=False)
            torch.cuda.synchronize()
        return [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    short, long = kernels(9), kernels(41)
    emit(part="decode step", kernels_per_step=round((len(long) - len(short)) / 32, 1))
    names = {}
    for e in long:
        names[e.name] = names.get(e.name, 0) + 1
    for n, c in sorted(names.items(), key=lambda kv: -kv[1])[:40]:
        print(f"{c:6d}  {n[:140]}", file=sys.stderr)

comps, _ = rl.rollout(model, prompts, n_new, 1.0, enc.eot_token, seed=1, gen_batch=256)
adv = torch.randn(len(comps))
for mbt, impl in ((32768, "tiled"), (32768, "dense"), (65536, "dense")):   # sliding layers' training path
    args.micro_batch_tokens = mbt
    m = copy.deepcopy(model).train()
    m.attn_impl = impl
    opt = torch.optim.AdamW(m.parameters(), lr=1e-6)
    step = lambda: rl.optimize(m, opt, prompts, comps, adv, args, None, None, 1e-6)
    timed(step)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(step)[0] for _ in range(cli.reps)]
    emit(part="update", micro_batch_tokens=mbt, attn_impl=impl, seconds=round(min(times), 3),
         peak_mem_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if dev == "cuda" else None)
    if dev == "cuda":
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        print(f"update, micro-batches of {mbt} tokens, {impl}:", file=sys.stderr)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15), file=sys.stderr)
