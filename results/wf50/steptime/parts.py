"""
Where an RL step's time can still go (issue 12's 0.7 s), measured in parts on one GPU with random weights
(the default model's shapes), one JSON line per figure:
  decode  ms per decoding step of `model.decode` (batch 256, 100-token cache to start, steps 64..640 timed
          apart as in bench.py, temperature 1, no eos): the loop of --old (a model.py whose sampling and
          bookkeeping ran eagerly after each graph replay), the loop now (the whole step one graph), and now
          with q/k/v and gate/up each one matmul in the decoding copy (a prototype patched in here)
  update  rl.optimize on 256 synthetic sequences (prompts 80-130 tokens, completions N(400, 90) clipped to
          150-760: the lengths of the preset's rollouts), by micro-batch tokens and sliding layers' path,
          with and without the sampler's log-probs (rl.py passes them: the sampler_gap metric); best of 3,
          peak memory; a profile of the default settings to stderr
    python results/wf50/steptime/parts.py --old path/to/old/model.py > parts.jsonl 2> parts.log
"""
import argparse
import importlib.util
import json
import os
import sys
import types

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
import bench  # noqa: E402
import model as M  # noqa: E402
import rl  # noqa: E402
from common import PRESETS  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("--old", required=True, help="an earlier model.py to compare the decoding loop with")
ap.add_argument("--only", default="decode,update")
cli = ap.parse_args()
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")   # cpu: a smoke check of the script
cuda = dev.type == "cuda"
B, CONTEXT, N1, N2 = (256, 100, 64, 640) if cuda else (4, 8, 4, 12)
if cuda:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cuda.enable_cudnn_sdp(False)   # as rl.py


def emit(**row):
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


def config(window):
    return M.GPTConfig(vocab_size=1016, window=window, **PRESETS["default"]["model"])


def fused_attention(self, x, cos, sin, impl, mask=None, cache=None, pos=None):
    """Attention.forward's decoding branch with one matmul for q, k and v."""
    B, T, _ = x.shape
    cfg, D = self.cfg, self.cfg.head_dim
    q, k, v = F.linear(x, self.qkv).split([cfg.n_head * D, cfg.n_kv_head * D, cfg.n_kv_head * D], -1)
    q = q.reshape(B, T, cfg.n_head, D).transpose(1, 2)
    k = k.reshape(B, T, cfg.n_kv_head, D).transpose(1, 2)
    v = v.reshape(B, T, cfg.n_kv_head, D).transpose(1, 2)
    qk = M.apply_rope(torch.cat([q, k], 1), cos, sin)
    q, k = qk[:, :cfg.n_head], qk[:, cfg.n_head:]
    slot, visible = mask[self.kind]
    k, v = cache.update(self.layer_idx, k, v, slot, pos)
    qg = q.reshape(B, cfg.n_kv_head, cfg.n_head // cfg.n_kv_head, D)
    if MATMUL:   # attention as two batched matmuls and a softmax instead of SDPA's kernel
        p = torch.softmax((qg @ k.transpose(-1, -2)).float() / D ** 0.5 + visible, -1).to(v.dtype)
        y = (p @ v).reshape(B, cfg.n_head, 1, D)
    else:
        y = F.scaled_dot_product_attention(qg, k, v, attn_mask=visible).reshape(B, cfg.n_head, 1, D)
    return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


MATMUL = False


def fused_mlp(self, x):
    gate, up = F.linear(x, self.gate_up).chunk(2, -1)
    return self.down_proj(F.silu(gate) * up)


def fusing(copy_fn):
    def fused_copy(model, dtype):
        dec = copy_fn(model, dtype)
        for block in dec.layers:
            a, m = block.attn, block.mlp
            a.qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            m.gate_up = torch.cat([m.gate_proj.weight, m.up_proj.weight])
            a.forward = types.MethodType(fused_attention, a)
            m.forward = types.MethodType(fused_mlp, m)
        return dec
    return fused_copy


if "decode" in cli.only:
    spec = importlib.util.spec_from_file_location("model_old", cli.old)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    plain = M.with_linear_weights_in
    for window in (128, None):
        torch.manual_seed(0)
        model = M.GPT(config(window)).to(dev).eval()
        name = "full" if window is None else f"sliding W={window}"
        prompts = [torch.randint(0, 1000, (n,)).tolist() for n in (5, 90, 130, 40)]
        with torch.no_grad():
            ref = M.generate(model, prompts, 300, temperature=0.0)
        for mm in (False, True):   # the prototype decodes as the model does (greedy, bf16: nearly every token)
            MATMUL, M.with_linear_weights_in = mm, fusing(plain)
            with torch.no_grad():
                outs = M.generate(model, prompts, 300, temperature=0.0)
            same = sum(a == b for r, o in zip(ref[0], outs[0]) for a, b in zip(r, o)) / sum(map(len, ref[0]))
            emit(part="fused prototype", attention=name, matmul_attention=mm, greedy_tokens_same=same)
        for label, mod, fuse, mm in (("old loop", old, 0, 0), ("loop now", M, 0, 0), ("loop now, fused", M, 1, 0),
                                     ("loop now, fused, matmul attention", M, 1, 1),
                                     ("old loop", old, 0, 0), ("loop now", M, 0, 0)):   # twice: drift
            MATMUL, M.with_linear_weights_in = mm, fusing(plain) if fuse else plain
            bench.M = mod
            _, s_per_step, _ = bench.decode_rate(model, B, CONTEXT, dev, N1, N2, True)
            emit(part="decode", attention=name, loop=label, batch=B, steps=f"{N1}..{N2}", ms_per_step=1e3 * s_per_step)
        M.with_linear_weights_in, bench.M = plain, M

if "update" in cli.only:
    g = torch.Generator().manual_seed(0)
    n, scale = (256, 1) if cuda else (8, 10)   # cpu: a few short sequences
    prompts = [torch.randint(0, 1000, (int(torch.randint(80, 131, (), generator=g) // scale),), generator=g).tolist()
               for _ in range(n)]
    lens = ((torch.randn(n, generator=g) * 90 + 400).clamp(150, 760) // scale).int().tolist()
    comps = [torch.randint(0, 1000, (m,), generator=g).tolist() for m in lens]
    sampler = [(-torch.rand(m, generator=g)).tolist() for m in lens]
    adv = torch.randn(n, generator=g)
    args = rl.get_args(["--init", "none"])
    for k, v in PRESETS["default"]["rl"].items():
        setattr(args, k, v)

    runs = [(128, "tiled", 32768, True), (128, "tiled", 32768, False), (128, "tiled", 65536, True),
            (128, "tiled", 131072, True), (128, "dense", 32768, True), (128, "dense", 65536, True),
            (None, "tiled", 32768, True), (None, "tiled", 32768, False), (None, "tiled", 65536, True),
            (None, "tiled", 131072, True)]
    for window, impl, mbt, gap in runs:
        torch.manual_seed(0)
        model = M.GPT(config(window), attn_impl=impl).to(dev).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        args.micro_batch_tokens = mbt
        step = lambda: rl.optimize(model, opt, prompts, comps, adv, args, None, sampler if gap else None, 1e-6)
        bench.timed(step, dev)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        best = min(bench.timed(step, dev) for _ in range(3))
        name = "full" if window is None else f"sliding W={window}"
        emit(part="update", attention=name, attn_impl=impl, micro_batch_tokens=mbt, sampler_gap=gap, seconds=best,
             peak_mem_gb=torch.cuda.max_memory_allocated() / 1e9 if cuda else None)
        if cuda and mbt == 32768 and gap:
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            print(f"update, {name}, {impl}, micro-batches of {mbt} tokens:", file=sys.stderr)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25), file=sys.stderr)
