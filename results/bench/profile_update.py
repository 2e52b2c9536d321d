"""Where one micro-batch of the GRPO update spends its GPU time, full attention against SWA: the profile
behind docs/results.md's "The GRPO step on long rollouts" (the update gains far less from the window than
the rollout does).

    python results/bench/profile_update.py --json results/bench/profile_update_h100.json   # one GPU, ~1 min
    python results/bench/profile_update.py --quick                                          # CPU, tiny sizes

One micro-batch as rl.py trains it (bench.py's rlstep at L = 8192): rows of --seq-len tokens, as many as fit
in rl.py's --micro-batch-tokens, the default model with random weights, bf16 autocast on CUDA, rl.py's
training attention path (--attn-impl), the log-probs of every token, then backward. torch.profiler times
each kernel over --reps forward+backward passes; kernels are grouped by name (a heuristic: the table lists
the largest ones so the grouping can be checked): attention, matrix products, the rest.
"""
import argparse
import json
import os
import re
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))   # the project

from bench import default_config, device_name, sync, tiny_config
from common import write_atomic
from model import GPT
from rl import get_args as rl_args
from rl import token_logprobs

GROUPS = [("attention", r"flash|fmha|attention|flex|sdpa|triton_tem"),
          ("matmul", r"gemm|cutlass|sm90_|nvjet|cublas|addmm|aten::mm|aten::bmm|aten::linear")]


def group_of(name):
    return next((g for g, pattern in GROUPS if re.search(pattern, name, re.I)), "other")


def profile(window, args, device, s):
    torch.manual_seed(0)
    config = (tiny_config if args.quick else default_config)(window=window, max_seq_len=args.seq_len + 64)
    model = GPT(config, attn_impl=s.attn_impl).to(device).train()
    rows = max(1, s.micro_batch_tokens // args.seq_len)
    idx = torch.randint(0, config.vocab_size, (rows, args.seq_len + 1), device=device)
    cuda = device.type == "cuda"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logp, _ = token_logprobs(model, idx)
        (-logp.mean()).backward()
        model.zero_grad(set_to_none=True)

    for _ in range(2):   # warm-up: kernels chosen, flex compiled, allocator grown
        step()
    sync(device)
    activities = [torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.reps):
            step()
        sync(device)
    kernels = [(e.key, (e.self_device_time_total if cuda else e.self_cpu_time_total) / args.reps / 1e3)
               for e in prof.key_averages()]
    kernels = sorted([k for k in kernels if k[1] > 0], key=lambda k: -k[1])
    total = sum(ms for _, ms in kernels)
    groups = {g: sum(ms for name, ms in kernels if group_of(name) == g) for g in ("attention", "matmul", "other")}
    return dict(attention="full" if window is None else f"sliding W={window}", rows=rows,
                seq_len=args.seq_len, tokens=rows * args.seq_len, ms=round(total, 2),
                **{f"{g}_ms": round(v, 2) for g, v in groups.items()},
                top=[dict(kernel=name[:90], group=group_of(name), ms=round(ms, 3)) for name, ms in kernels[:12]])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model and rows, on the CPU")
    ap.add_argument("--seq-len", type=int, help="tokens per row (default 8192 + a 128-token prompt; --quick: 96)")
    ap.add_argument("--windows", help="full and/or sliding windows (default full,128; --quick full,32)")
    ap.add_argument("--reps", type=int, default=3, help="profiled forward+backward passes")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    args.seq_len = args.seq_len or (96 if args.quick else 8320)
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    s = rl_args(["--init", "(none)"])
    if args.quick:
        s.micro_batch_tokens = 4 * args.seq_len
    windows = args.windows or ("full,32" if args.quick else "full,128")
    windows = [None if w == "full" else int(w) for w in windows.split(",")]
    out = dict(device=device_name(device), attn_impl=s.attn_impl, micro_batch_tokens=s.micro_batch_tokens,
               results=[profile(w, args, device, s) for w in windows])
    for r in out["results"]:
        print(f"\n{r['attention']}: {r['rows']} rows x {r['seq_len']} tokens, {r['ms']} ms per forward+backward "
              f"(attention {r['attention_ms']}, matmul {r['matmul_ms']}, other {r['other_ms']}), "
              f"{out['device']}")
        print("| kernel | group | ms |\n|---|---|---|")
        for k in r["top"]:
            print(f"| `{k['kernel']}` | {k['group']} | {k['ms']} |")
    if args.json:
        write_atomic(args.json, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
