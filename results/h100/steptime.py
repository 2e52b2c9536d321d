"""
Where an RL step's time goes (issue 12): the rollouts of one step (256 samples, the same seeds for
each loop) with model.decode and with the loop before it (kept here), and the update at two
micro-batch sizes, plus a profile of one update (stderr). One JSON line per measurement.
results/h100/steptime/steptime3_*.jsonl came from this file at commit 9d5fda5, where it also
measured decode loops that drop stopped rows (model.SHRINK_AT); they were slower and are gone.

    python results/h100/steptime.py --init runs/d6k/sft_swa.pt > steptime_swa.jsonl
"""
import argparse
import copy
import json
import os
import sys
import time

import torch

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


def old_decode(model, cache, logits, pos, steps, temperature=1.0, top_k=None, eos_id=None, generator=None,
               cuda_graph=True):
    """model.decode at commit 5b882fb, the A/B reference: full layers over every slot, a look every 16 steps."""
    B, device = logits.shape[0], logits.device
    step = M.DecodeStep(model, cache, B, device, cuda_graph)
    pos = pos.clone()
    tokens = torch.zeros(B, steps, dtype=torch.long, device=device)
    logps = torch.zeros(B, steps, device=device)
    n_out = torch.full((B,), steps, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(steps):
        tok, lp = M.sample_next(logits, temperature, top_k, generator)
        tokens[:, t], logps[:, t] = tok, lp
        if eos_id is not None:
            newly = (tok == eos_id) & ~done
            n_out = torch.where(newly, t + 1, n_out)
            done |= newly
            if t % 16 == 15 and bool(done.all()):
                break
        if t == steps - 1:
            break
        logits = step(tok, pos)
        pos += 1
    return tokens, logps, n_out


new_decode = M.decode
for label, fn in (("loop before (commit 5b882fb)", old_decode), ("model.decode", new_decode)):
    M.decode = fn
    roll = lambda seed: rl.rollout(model, prompts, n_new, 1.0, enc.eot_token, seed=seed, gen_batch=256)
    timed(lambda: roll(0))   # warm-up
    runs = [timed(lambda: roll(seed)) for seed in range(1, cli.reps + 1)]   # the same seeds for each variant
    lens = [[len(c) for c in comps] for _, (comps, _) in runs]
    emit(part="rollout", decode=label, seconds=round(sum(dt for dt, _ in runs) / len(runs), 3),
         each=[round(dt, 3) for dt, _ in runs], len_max=[max(x) for x in lens],
         len_mean=round(sum(map(sum, lens)) / sum(map(len, lens)), 1))
M.decode = new_decode

comps, _ = rl.rollout(model, prompts, n_new, 1.0, enc.eot_token, seed=1, gen_batch=256)
adv = torch.randn(len(comps))
for mbt in (16384, 32768):
    args.micro_batch_tokens = mbt
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-6)
    step = lambda: rl.optimize(m, opt, prompts, comps, adv, args, None, None, 1e-6)
    timed(step)
    times = [timed(step)[0] for _ in range(cli.reps)]
    emit(part="update", micro_batch_tokens=mbt, seconds=round(min(times), 3),
         peak_mem_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if dev == "cuda" else None)
    if mbt == 32768 and dev == "cuda":
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15), file=sys.stderr)
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15), file=sys.stderr)
