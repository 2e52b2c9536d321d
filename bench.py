"""
Performance of swarr: the attention paths alone, decoding through `generate`, and training.

    python bench.py                                # everything, on CUDA when there is one
    python bench.py --quick                        # CPU-sized version of everything, under a minute
    python bench.py --only decode,generate --json bench.json
    python bench.py --only rlstep --rl-lengths 512,8192 --rl-windows full,128 --json rlstep.json

Sections (each prints a markdown table; --json writes every figure with its shape and device,
rewritten after every row so an interrupted run keeps what it measured):

  attention  one attention call, forward and forward+backward: time, effective TFLOP/s and peak
             memory for SA causal (SDPA), SWA dense / tiled / flex (the model's code path; tiled
             on CUDA in bf16 is FlashAttention's window kernel) and a raw compiled flex_attention
             call with its own block mask.
  decode     steady-state decoding speed of generate's loop (engine.py's `decode`) from a cache
             already holding `context` tokens, full vs sliding, and the KV cache it holds.
  generate   `generate` end to end (prefill + decode), and the Hugging Face Llama baseline
             (same shapes, random weights) when `transformers` imports.
  training   tokens/s and MFU of the default model's training step (AdamW, bf16, compiled on GPU).
  rlstep     one GRPO step as rl.py runs it (rollouts through the model's own cache, the judge, the
             update on rl.py's training path) for the default model with random weights, full attention
             and SWA, 32 prompts x 8 rollouts each forced to L new tokens (the end token banned): step
             time split into rollout, update and the rest (judge, advantages), tokens/s of each, peak
             memory (model and optimizer included), the sampler's log-prob gap to the trainer's.

Conventions. Times are medians after a warm-up call (CUDA events on GPU). Effective TFLOP/s count
useful FLOPs only: 4*D per visible (query, key) pair for the forward (QK^T and PV), three times
that for forward+backward; a causal layer sees T(T+1)/2 pairs, a sliding one about T*W. The
"forward" of the attention table is a training forward on CUDA (inputs require grad, so its memory
holds what the backward needs; on CPU it runs without autograd, FlexAttention having no CPU
backward); peak memory is the most allocated above the inputs during the call (CUDA only).
A row that fails (out of memory, a missing package) says so and the run goes on.
"""
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import engine
import model as M
from checkpoint import data_knobs
from common import (POSITIVE_INT, PRESETS, ArgumentParser, claim_outputs, fail, pick_device, print_settings,
                    release_outputs, write_atomic)
from data.tokenizer import encode_prompt, load_tokenizer
from engine import generate
from eval import judge
from model import GPT, GPTConfig
from pretrain import flops_per_token, peak_flops
from rl import get_args as rl_args
from rl import group_advantages, make_batch, microbatches, step_problems, token_logprobs



def default_config(**changes):
    """The default preset's model (presets table, common.py) at its run's window: ~10M parameters."""
    preset = PRESETS["default"]
    return GPTConfig(**{**dict(vocab_size=1024, **preset["model"], window=preset["data"]["window"]), **changes})


def tiny_config(**changes):
    return GPTConfig(**{**dict(vocab_size=256, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                               max_seq_len=1024, window=32), **changes})


# ----------------------------------------------------------------------------------------------
# measuring

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, device, target_s=0.25, max_reps=30):
    """Median seconds of one fn() call, after a warm-up call; about target_s of repetitions.
    On CUDA each sample times `inner` calls queued back to back (at least ~2 ms of work), so the
    host's launch overhead overlaps the GPU's work instead of adding to sub-millisecond kernels."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    est = max(time.perf_counter() - t0, 1e-6)
    reps = int(max(3, min(max_reps, target_s / est)))
    inner = int(min(20, max(1, 2e-3 / est)))
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(fn, device):
    """The most memory allocated above what was allocated before fn() (CUDA only)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def failure(e):
    """One line for a row that could not be measured."""
    if isinstance(e, torch.OutOfMemoryError):
        return "OOM"
    first = (str(e).strip().splitlines() or [""])[0][:100]
    return f"{type(e).__name__}: {first}"


def free_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Report:
    """Rows per section, printed as markdown tables and saved as JSON after every row."""

    def __init__(self, path, meta):
        self.path, self.data = path, {"meta": meta, "sections": {}}

    def add(self, section, row):
        self.data["sections"].setdefault(section, []).append(row)
        self.save()
        return row

    def save(self):
        if self.path:
            write_atomic(self.path, json.dumps(self.data, indent=1))

    def table(self, section, columns, title):
        """columns: [(header, key or function of the row)]."""
        rows = self.data["sections"].get(section, [])
        print(f"\n### {title}\n")
        print("| " + " | ".join(h for h, _ in columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            cells = [fmt(get(row) if callable(get) else row.get(get)) for _, get in columns]
            print("| " + " | ".join(cells) + " |")
        sys.stdout.flush()


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    if isinstance(x, int) and abs(x) >= 10000:
        return f"{x:,}"
    return str(x)


def mib(b):
    return None if b is None else b / 2**20


# ----------------------------------------------------------------------------------------------
# 1. attention alone

def no_grad(fn):
    with torch.no_grad():
        return fn()


def visible_pairs(T, W):
    """(query, key) pairs a causal (W=None) or sliding layer computes."""
    if W is None or W >= T:
        return T * (T + 1) // 2
    return W * T - W * (W - 1) // 2


def bench_attention(report, device, quick):
    B, H, Hkv, D = (1, 4, 2, 64) if quick else (2, 8, 2, 64)
    Ts, Ws = ((128, 256), (16, 64)) if quick else ((1024, 4096, 16384, 32768), (128, 512))
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    raw_flex = torch.compile(flex_attention, dynamic=False) if cuda else flex_attention

    def raw_mask(T, W):
        def sliding(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < W)
        return create_block_mask(sliding, None, None, T, T, device=device)

    for T in Ts:
        if cuda:
            torch._dynamo.reset()   # compiled flex kernels of earlier shapes: no guards to walk past
        g = torch.Generator(device).manual_seed(T)
        q = torch.randn(B, H, T, D, device=device, dtype=dtype, generator=g).requires_grad_()
        k, v = (torch.randn(B, Hkv, T, D, device=device, dtype=dtype, generator=g).requires_grad_()
                for _ in "kv")
        grad_out = torch.randn(B, H, T, D, device=device, dtype=dtype, generator=g)
        paths = [("SA causal (SDPA)", None,
                  lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))]
        for W in Ws:
            bm = raw_mask(T, W)
            paths += [
                ("SWA dense", W, lambda q, k, v, W=W: M.dense_attention(q, k, v, W)),
                ("SWA tiled", W, lambda q, k, v, W=W: M.tiled_attention(q, k, v, W)),
                ("SWA flex (model path)", W, lambda q, k, v, W=W: M.flex_attention_fn(device)(
                    q, k, v, block_mask=M._flex_block_mask(T, W, 0, str(device)), enable_gqa=True)),
                ("SWA flex (raw call)", W,
                 lambda q, k, v, bm=bm: raw_flex(q, k, v, block_mask=bm, enable_gqa=True)),
            ]
        for name, W, attn in paths:
            flops = 4 * B * H * D * visible_pairs(T, W)
            row = dict(path=name, B=B, H=H, Hkv=Hkv, D=D, T=T, W=W, dtype=str(dtype).split(".")[-1],
                       device=str(device))
            # CPU: the forward without autograd (FlexAttention refuses inputs that require grad there)
            fwd = ((lambda a=attn: a(q, k, v)) if cuda
                   else (lambda a=attn: a(q.detach(), k.detach(), v.detach())))
            fwd_bwd = lambda a=attn: torch.autograd.grad(a(q, k, v), (q, k, v), grad_out)
            for mode, fn, mult in (("fwd", fwd, 1), ("fwd_bwd", fwd_bwd, 3)):
                try:
                    sec = median_time(fn, device)
                    row[f"{mode}_ms"] = sec * 1e3
                    row[f"{mode}_tflops"] = mult * flops / sec / 1e12
                    row[f"{mode}_peak_mib"] = mib(peak_bytes(fn, device))
                except Exception as e:
                    row[f"{mode}_error"] = failure(e)
                    free_memory(device)
            report.add("attention", row)
            print(f"attention {name} T={T} W={W}: " + ", ".join(
                f"{k}={fmt(v)}" for k, v in row.items() if k.startswith(("fwd", "error"))), flush=True)
        del q, k, v, grad_out
        free_memory(device)
    err = lambda mode: lambda r: r.get(f"{mode}_error")
    report.table("attention", [("path", "path"), ("T", "T"), ("W", "W"),
                               ("fwd ms", "fwd_ms"), ("fwd TFLOP/s", "fwd_tflops"),
                               ("fwd peak MiB", "fwd_peak_mib"),
                               ("fwd+bwd ms", "fwd_bwd_ms"), ("fwd+bwd TFLOP/s", "fwd_bwd_tflops"),
                               ("fwd+bwd peak MiB", "fwd_bwd_peak_mib"), ("fwd error", err("fwd")),
                               ("bwd error", err("fwd_bwd"))],
                 f"Attention alone: B={B}, H={H}, Hkv={Hkv}, head dim {D}, {str(dtype).split('.')[-1]}, "
                 f"{device_name(device)}")
    attention_summary(report, max(Ts), max(Ws), Ts[-2] if len(Ts) > 1 else Ts[0])


def attention_summary(report, T_long, W_big, T_mem):
    """The figures the targets are stated in, read off the attention rows."""
    rows = report.data["sections"].get("attention", [])
    pick = lambda path, T, W: next((r for r in rows if (r["path"], r["T"], r["W"]) == (path, T, W)), {})
    ratios = [pick("SWA flex (model path)", r["T"], r["W"]).get(f"{m}_ms", math.nan) / r[f"{m}_ms"]
              for r in rows if r["path"] == "SWA flex (raw call)"
              for m in ("fwd", "fwd_bwd") if f"{m}_ms" in r]
    sa, swa = pick("SA causal (SDPA)", T_long, None), pick("SWA flex (model path)", T_long, W_big)
    dense, tiled = pick("SWA dense", T_mem, W_big), pick("SWA tiled", T_mem, W_big)
    div = lambda a, b: a / b if a is not None and b else None
    summary = {
        "flex_model_over_raw_time_max": max(ratios) if ratios else None,
        f"sa_over_swa{W_big}_fwd_bwd_time_T{T_long}": div(sa.get("fwd_bwd_ms"), swa.get("fwd_bwd_ms")),
        f"dense_over_tiled_fwd_peak_T{T_mem}_W{W_big}":
            div(dense.get("fwd_peak_mib"), tiled.get("fwd_peak_mib")),
        f"dense_over_tiled_fwd_bwd_peak_T{T_mem}_W{W_big}":
            div(dense.get("fwd_bwd_peak_mib"), tiled.get("fwd_bwd_peak_mib")),
    }
    report.data["attention_summary"] = summary
    report.save()
    print("\n" + "\n".join(f"- {k}: {fmt(v)}" for k, v in summary.items()), flush=True)


# ----------------------------------------------------------------------------------------------
# 2. decoding

def autocast(device):
    # as generate: bf16 autocast on CUDA, without the weight cache (CUDA graphs)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda", cache_enabled=False)


@torch.no_grad()
def decode_rate(model, batch, context, device, n1, n2, cuda_graph):
    """Generated tokens/s of generate's decoding loop, from a cache already holding `context`
    tokens per row. Timing n1 and n2 steps and taking the difference removes the first step's
    warm-up and CUDA-graph capture, so this is the steady state (prefill is timed in `generate`)."""
    cfg = model.config
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    lengths = torch.full((batch,), context, device=device)
    cache = engine.KVCache(cfg, lengths, context + n2, dtype)    # as if prompts of `context` tokens were prefilled
    for t in cache.k + cache.v:
        # random values: the result does not matter, but GPUs multiply zeros faster than real data
        # (fewer bits flip, less power, higher clocks), which would flatter the measurement
        t.normal_()
    logits = torch.randn(batch, cfg.vocab_size, device=device)
    gen = torch.Generator(device).manual_seed(0)

    def run(n):
        with autocast(device):
            engine.decode(model, cache, logits, lengths, n, temperature=1.0, generator=gen, cuda_graph=cuda_graph)
    run(n1)                                         # warm-up: allocator, cuBLAS, graph pools
    t1 = min(timed(lambda: run(n1), device) for _ in range(2))
    t2 = min(timed(lambda: run(n2), device) for _ in range(2))
    dt = t2 - t1
    if dt <= 0:   # noise (a busy CPU) larger than the difference: fall back to the whole n2-step run
        dt = t2 * (n2 - n1) / n2
    return batch * (n2 - n1) / dt, dt / (n2 - n1), cache.nbytes()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def bench_decode(report, device, quick):
    contexts = (64, 256) if quick else (1024, 4096, 16384, 32768)
    batches = (1, 8) if quick else (1, 256)
    big_batch = 16 if quick else 512
    n1, n2 = (2, 10) if quick else (8, 136)
    base = tiny_config if quick else default_config
    max_len = max(contexts) + n2 + 1
    models = {}
    for label, window in (("full", None), (f"sliding W={base().window}", base().window)):
        torch.manual_seed(0)    # same weights; speed does not depend on them
        models[label] = GPT(base(window=window, max_seq_len=max_len)).to(device).eval()
    configs = [(label, b, c, True) for label in models for b in batches for c in contexts]
    configs += [(label, big_batch, contexts[0], True) for label in models]
    # and without the CUDA graph, to show what it saves
    configs += [(label, b, contexts[0], False) for label in models for b in (1, big_batch)]
    if device.type != "cuda":
        configs = [c for c in configs if c[3]]      # the graph is CUDA-only
    for label, batch, context, graph in configs:
        row = dict(attention=label, batch=batch, context=context, cuda_graph=graph and device.type == "cuda",
                   steps=n2 - n1, device=str(device))
        try:
            tok_s, step_s, nbytes = decode_rate(models[label], batch, context, device, n1, n2, graph)
            row.update(tokens_per_s=tok_s, ms_per_step=step_s * 1e3, kv_cache_mib=mib(nbytes))
        except Exception as e:
            row["error"] = failure(e)
        finally:
            free_memory(device)
        report.add("decode", row)
        print(f"decode {row}", flush=True)
    rows = report.data["sections"].get("decode", [])
    for row in rows:    # the SWA speed-up at the same batch and context
        same = [r for r in rows if r["attention"] == "full" and (r["batch"], r["context"], r["cuda_graph"])
                == (row["batch"], row["context"], row["cuda_graph"]) and "tokens_per_s" in r]
        if row["attention"] != "full" and same and "tokens_per_s" in row:
            row["speedup_vs_full"] = row["tokens_per_s"] / same[0]["tokens_per_s"]
    report.save()
    report.table("decode", [("attention", "attention"), ("batch", "batch"), ("context", "context"),
                            ("CUDA graph", "cuda_graph"), ("tokens/s", "tokens_per_s"),
                            ("ms/step", "ms_per_step"), ("KV cache MiB", "kv_cache_mib"),
                            ("SWA / full", "speedup_vs_full"), ("error", "error")],
                 f"Decoding (generate's loop, steady state, {n2 - n1} steps, sampling at T=1), "
                 f"{describe(base())} model, {device_name(device)}")


# ----------------------------------------------------------------------------------------------
# 3. generate end to end, and the Hugging Face baseline

def hf_llama(cfg, device):
    """The equivalent Hugging Face Llama (random weights, bf16), or raise ImportError."""
    from transformers import LlamaConfig, LlamaForCausalLM
    hidden = M.MLP(cfg).gate_proj.out_features
    hcfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=hidden,
                       num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                       num_key_value_heads=cfg.n_kv_head, max_position_embeddings=cfg.max_seq_len,
                       rms_norm_eps=cfg.norm_eps, tie_word_embeddings=False,
                       bos_token_id=None, eos_token_id=None, pad_token_id=0)
    hf_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return LlamaForCausalLM(hcfg).to(device=device, dtype=hf_dtype).eval()


def bench_generate(report, device, quick, hf=True):
    B_big, P, N_target, N_cmp = (16, 8, 24, 16) if quick else (512, 64, 960, 256)
    base = tiny_config if quick else default_config
    g = torch.Generator().manual_seed(0)

    def prompts(B):
        return torch.randint(1, base().vocab_size, (B, P), generator=g).tolist()

    def ours(window, B, N):
        torch.manual_seed(0)
        model = GPT(base(window=window)).to(device)
        ps = prompts(B)
        generate(model, ps, 8, seed=0)              # warm-up: compiles flex for this prompt length
        outs = []
        sec = timed(lambda: outs.append(generate(model, ps, N, seed=0)), device)
        return sum(map(len, outs[0][0])) / sec, sec

    runs = [("swarr generate", "sliding", B_big, N_target), ("swarr generate", "full", B_big, N_target)]
    runs += [("swarr generate", kind, B, N_cmp) for B in (1, B_big) for kind in ("full", "sliding")]
    for name, kind, B, N in runs:
        window = base().window if kind == "sliding" else None
        row = dict(impl=name, attention=kind if kind == "full" else f"sliding W={window}", batch=B,
                   prompt=P, new_tokens=N, device=str(device))
        try:
            row["tokens_per_s"], row["seconds"] = ours(window, B, N)
        except Exception as e:
            row["error"] = failure(e)
        free_memory(device)
        report.add("generate", row)
        print(f"generate {row}", flush=True)

    # static cache last: Hugging Face may torch.compile its decoding step for it (slow to start)
    hf_runs = [(1, "dynamic"), (B_big, "dynamic"), (B_big, "static")] if hf else []
    for B, cache_impl in hf_runs:
        row = dict(impl=f"HF Llama generate ({cache_impl} cache)", attention="full", batch=B, prompt=P,
                   new_tokens=N_cmp, device=str(device))
        try:
            model = hf_llama(base(window=None), device)
            ids = torch.tensor(prompts(B), device=device)
            kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                      top_p=1.0, pad_token_id=0)
            if cache_impl == "static":
                kw["cache_implementation"] = "static"
            with torch.no_grad():
                t0 = time.perf_counter()
                # warm-up; for the static cache at the timed length, as its shapes are the cache's
                model.generate(ids, max_new_tokens=N_cmp if cache_impl == "static" else 8, **kw)
                row["warmup_s"] = time.perf_counter() - t0
                out = []
                sec = timed(lambda: out.append(model.generate(ids, max_new_tokens=N_cmp, **kw)), device)
            new = out[0].shape[1] - P
            row.update(new_tokens=new, tokens_per_s=B * new / sec, seconds=sec)
            del model
        except ImportError as e:
            row["error"] = f"skipped: transformers not importable ({e.name or e})"
            report.add("generate", row)
            break
        except Exception as e:
            row["error"] = failure(e)
        free_memory(device)
        report.add("generate", row)
        print(f"generate {row}", flush=True)
    rows = report.data["sections"].get("generate", [])
    for row in rows:    # against HF at the same batch and length, best HF variant
        hf_rows = [r for r in rows if r["impl"].startswith("HF") and "tokens_per_s" in r
                   and (r["batch"], r["new_tokens"]) == (row["batch"], row["new_tokens"])]
        if row["impl"].startswith("swarr") and hf_rows and "tokens_per_s" in row:
            row["x_best_hf"] = row["tokens_per_s"] / max(r["tokens_per_s"] for r in hf_rows)
    report.save()
    report.table("generate", [("implementation", "impl"), ("attention", "attention"), ("batch", "batch"),
                              ("prompt", "prompt"), ("new tokens", "new_tokens"),
                              ("tokens/s", "tokens_per_s"), ("seconds", "seconds"),
                              ("x best HF", "x_best_hf"), ("error", "error")],
                 f"generate end to end (prefill + decode, sampling at T=1), {describe(base())} model, "
                 f"{device_name(device)}")


# ----------------------------------------------------------------------------------------------
# 4. training

def bench_training(report, device, quick):
    cuda = device.type == "cuda"
    B, T, steps = (2, 64, 3) if quick else (32, 1024, 20)
    base = tiny_config if quick else default_config
    for window in (base().window, None):
        cfg = base(window=window, max_seq_len=T)
        row = dict(model=describe(cfg), params=None, batch=B, seq_len=T, compiled=cuda,
                   dtype="bf16" if cuda else "fp32", device=str(device))
        try:
            torch.manual_seed(0)
            model = GPT(cfg).to(device)
            row["params"] = model.num_params()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1,
                                    fused=cuda)
            fwd = torch.compile(model) if cuda else model
            x = torch.randint(cfg.vocab_size, (B, T + 1), device=device)

            def step():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    logits = fwd(x[:, :-1])
                loss = F.cross_entropy(logits.float().view(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            step()
            sync(device)
            row["first_step_s"] = time.perf_counter() - t0      # compilation included
            sec = median_time(step, device, target_s=1.0, max_reps=steps)
            row["ms_per_step"] = sec * 1e3
            row["tokens_per_s"] = B * T / sec
            row["tflops"] = flops_per_token(model, T) * B * T / sec / 1e12
            peak = peak_flops(str(device))
            row["mfu"] = row["tflops"] * 1e12 / peak if peak else None
            del model, opt, fwd
        except Exception as e:
            row["error"] = failure(e)
        free_memory(device)
        report.add("training", row)
        print(f"training {row}", flush=True)
    mfu = lambda r: None if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
    report.table("training", [("model", "model"), ("params", "params"),
                              ("batch x seq", lambda r: f"{r['batch']}x{r['seq_len']}"),
                              ("compiled", "compiled"), ("ms/step", "ms_per_step"),
                              ("tokens/s", "tokens_per_s"), ("TFLOP/s", "tflops"), ("MFU", mfu),
                              ("first step s", "first_step_s"), ("error", "error")],
                 f"Training step (AdamW, grad clip, "
                 f"{'bf16 autocast, torch.compile' if cuda else 'fp32, eager'}), {device_name(device)}")


# ----------------------------------------------------------------------------------------------
# 5. a GRPO step on long traces

def forced_rollouts(model, prompts, L, eos_id, temperature, seed, gen_batch):
    """rl.rollout with the end token banned: every completion is exactly L tokens long."""
    comps, logps = [], []
    for i in range(0, len(prompts), gen_batch):
        c, lp = generate(model, prompts[i:i + gen_batch], L, temperature=temperature, eos_id=eos_id,
                         seed=seed + i, ban_eos=True)
        comps += c
        logps += lp
    return comps, logps


def peak_mib_since_reset(device):
    """The most memory allocated since the last reset (model and optimizer included), then a new reset."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    return mib(peak)


def rl_step(model, opt, enc, problems, L, s, device, seed=0):
    """One optimizer step of rl.py's loop with rollouts forced to L tokens -> its figures. The loop's body is
    inline in rl.run, so it is mirrored here call for call (the same functions, in the same order), leaving out
    only what rl.py logs on the side (ratio_stats, the style mix). s: rl.py's settings (rlstep_settings)."""
    cuda, G = device.type == "cuda", s.group_size
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    sync(device)
    peak_mib_since_reset(device)
    t0 = time.perf_counter()
    # 1. rollouts: B problems x G samples from the policy with its own attention and cache, none stopping early
    prompts = [encode_prompt(enc, p["question"]) for p in problems for _ in range(G)]
    comps, sampler_logps = forced_rollouts(model, prompts, L, enc.eot_token, s.temperature, seed, s.gen_batch)
    sync(device)
    t1 = time.perf_counter()
    rollout_peak = peak_mib_since_reset(device)

    # 2. rewards by the one rule; 3. group advantages (random weights solve nothing: all 0, the same kernels)
    judged = [judge(enc, c, p["answer"]) for c, p in zip(comps, (p for p in problems for _ in range(G)))]
    rewards = torch.tensor([float(j[0]) for j in judged])
    adv = group_advantages(rewards, G, s.scale_rewards).to(device)
    t2 = time.perf_counter()

    # 4. per-token loss -A log p and backward, micro-batch by micro-batch; 5. clip, one AdamW step
    n_tokens = sum(map(len, comps))
    batches = [(rows, *make_batch([prompts[i] for i in rows], [comps[i] for i in rows], s.pad_multiple,
                                  model.config.max_seq_len))
               for rows in microbatches([len(p) + len(c) for p, c in zip(prompts, comps)], s.micro_batch_tokens,
                                        s.pad_multiple)]
    opt.zero_grad(set_to_none=True)
    entropy, gap, gap_max = (torch.zeros((), device=device) for _ in range(3))
    for rows, idx, mask in batches:
        idx, mask = idx.to(device), mask.to(device).float()
        with autocast():
            logp, ent = token_logprobs(model, idx, s.temperature, with_entropy=True)
        loss = (-adv[rows, None] * logp * mask).sum() / mask.sum()
        (loss * (float(mask.sum()) / n_tokens)).backward()
        # as rl.py logs them: the policy's entropy, how far the sampler's log-probs are from the trainer's
        entropy = entropy + (ent * mask).sum()
        sampled = torch.zeros(logp.shape)
        sampled[mask.bool().cpu()] = torch.tensor([x for i in rows for x in sampler_logps[i]])   # rows in order
        diff = (logp.detach() - sampled.to(device)).abs() * mask
        gap, gap_max = gap + diff.sum(), torch.maximum(gap_max, diff.max())
    torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(device)
    t3 = time.perf_counter()

    lens, prompt_tokens = [len(c) for c in comps], sum(map(len, prompts))
    rollout_s, rest_s, update_s = t1 - t0, t2 - t1, t3 - t2
    update_peak = peak_mib_since_reset(device)
    return dict(
        rollouts=len(comps), prompt_tokens=prompt_tokens, rollout_tokens=n_tokens,
        update_tokens=prompt_tokens + n_tokens, completion_len_min=min(lens), completion_len_max=max(lens),
        end_tokens=sum(c.count(enc.eot_token) for c in comps), micro_batches=len(batches),
        step_s=t3 - t0, rollout_s=rollout_s, update_s=update_s, rest_s=rest_s,
        rollout_tok_s=n_tokens / rollout_s, update_tok_s=(prompt_tokens + n_tokens) / update_s,
        peak_mib=None if rollout_peak is None else max(rollout_peak, update_peak),
        rollout_peak_mib=rollout_peak, update_peak_mib=update_peak,
        entropy=float(entropy) / n_tokens, sampler_gap=float(gap) / n_tokens, sampler_gap_max=float(gap_max))


def rlstep_settings(prompts, group):
    """rl.py's own defaults, read off its parser (the rollout chunk, micro-batch tokens, padding, sliding
    layers' training path, temperature, clip...), with the default preset's learning rate."""
    s = rl_args(["--init", "(none)"])
    s.prompts_per_step, s.group_size, s.lr = prompts, group, PRESETS["default"]["rl"]["lr"]
    return s


def bench_rlstep(report, device, quick, lengths=None, windows=None, prompts=None, group=None):
    lengths = lengths or ((16, 48) if quick else (512, 2048, 8192, 16384))
    windows = windows or ((None, 32) if quick else (None, 128, 512))
    s = rlstep_settings(prompts or (2 if quick else 32), group or (2 if quick else 8))
    base = tiny_config if quick else default_config
    enc = load_tokenizer()
    problems = step_problems(s, data_knobs({"data": PRESETS["default"]["data"]}), 0)   # one set for every row
    longest = max(len(encode_prompt(enc, p["question"])) for p in problems) + max(lengths)
    max_len = -(-longest // s.pad_multiple) * s.pad_multiple
    cudnn_sdp = torch.backends.cuda.cudnn_sdp_enabled()
    # as rl.py: cuDNN's SDPA builds a plan per new shape, and RL brings new ones at every step
    torch.backends.cuda.enable_cudnn_sdp(False)
    for window in windows:
        label = "full" if window is None else f"sliding W={window}"
        torch.manual_seed(0)    # the same weights for every attention
        model = GPT(base(vocab_size=enc.n_vocab, window=window, max_seq_len=max_len), attn_impl=s.attn_impl)
        model = model.to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=(0.9, 0.95), eps=1e-8,
                                weight_decay=s.weight_decay)
        # first an untimed warm-up step (allocator, cuBLAS, AdamW's state), then one step per length
        for k, L in enumerate((min(lengths), *lengths)):
            row = dict(attention=label, window=window, new_tokens=L, model=describe(model.config),
                       attn_impl=s.attn_impl, device=str(device))
            try:
                row.update(rl_step(model, opt, enc, problems, L, s, device, seed=k))
            except Exception as e:
                row["error"] = failure(e)
            opt.zero_grad(set_to_none=True)
            free_memory(device)
            if k == 0:
                continue
            report.add("rlstep", row)
            print(f"rlstep {row}", flush=True)
        del model, opt
        free_memory(device)
    torch.backends.cuda.enable_cudnn_sdp(cudnn_sdp)
    rlstep_summary(report)
    report.table("rlstep", [("attention", "attention"), ("L", "new_tokens"), ("rollouts", "rollouts"),
                            ("step s", "step_s"), ("rollout s", "rollout_s"), ("update s", "update_s"),
                            ("rest s", "rest_s"), ("rollout tok/s", "rollout_tok_s"),
                            ("update tok/s", "update_tok_s"), ("peak MiB", "peak_mib"),
                            ("full / this step", "step_x_vs_full"), ("this / full peak", "peak_vs_full"),
                            ("sampler gap max", "sampler_gap_max"), ("error", "error")],
                 f"GRPO step as rl.py runs it ({s.prompts_per_step}x{s.group_size} rollouts, each forced to L "
                 f"new tokens; sliding layers train on {s.attn_impl}), {describe(base(window=None))} model, "
                 f"random weights, {device_name(device)}")


def rlstep_summary(report):
    """SWA against full attention at the same L (step time, peak memory), and how each attention's rollout cost
    per token grows from the shortest L to the longest."""
    rows = [r for r in report.data["sections"].get("rlstep", []) if "step_s" in r]
    summary = {}
    for row in rows:
        full = next((r for r in rows if r["window"] is None and r["new_tokens"] == row["new_tokens"]), None)
        if full and row["window"] is not None:
            row["step_x_vs_full"] = full["step_s"] / row["step_s"]
            if row["peak_mib"] is not None:
                row["peak_vs_full"] = row["peak_mib"] / full["peak_mib"]
    for label in dict.fromkeys(r["attention"] for r in rows):
        mine = sorted((r for r in rows if r["attention"] == label), key=lambda r: r["new_tokens"])
        if len(mine) > 1:
            short, long = mine[0], mine[-1]
            summary[f"{label}: rollout s/token, L={long['new_tokens']} over L={short['new_tokens']}"] = (
                short["rollout_tok_s"] / long["rollout_tok_s"])
    report.data["rlstep_summary"] = summary
    report.save()
    print("\n" + "\n".join(f"- {k}: {fmt(v)}" for k, v in summary.items()), flush=True)


# ----------------------------------------------------------------------------------------------

def describe(cfg):
    return f"{cfg.n_layer}L {cfg.n_embd}d {cfg.n_head}/{cfg.n_kv_head} heads, {cfg.describe()}"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


SECTIONS = {"attention": bench_attention, "decode": bench_decode, "generate": bench_generate,
            "training": bench_training, "rlstep": bench_rlstep}


def int_list(text, name, low, words=()):
    """"512,2048" -> (512, 2048); a word of `words` stands for None; anything else is one line and exit 1."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if item in words:
            out.append(None)
        elif item.isdigit() and int(item) >= low:
            out.append(int(item))
        else:
            also = "".join(f" or {w}" for w in words)
            fail(f"{name}: expected integers >= {low}{also}, got {item!r}")
    return tuple(out)


def main(argv=None):
    try:
        return run(argv)
    finally:
        release_outputs()   # called in-process (tests): --json is free once it returns or raises


def run(argv=None):
    ap = ArgumentParser(__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU-sized version of everything (a smoke test)")
    ap.add_argument("--device", help="cuda or cpu (default: cuda if available; cpu with --quick)")
    ap.add_argument("--json", help="write every figure here (rewritten after each row)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face baseline")
    g = ap.add_argument_group("rlstep")
    g.add_argument("--rl-lengths", help="new tokens each rollout is forced to (default 512,2048,8192,16384; "
                                        "--quick: 16,48)")
    g.add_argument("--rl-windows", help="full and/or sliding windows (default full,128,512; --quick: full,32)")
    g.add_argument("--rl-prompts", type=POSITIVE_INT, help="prompts per step (default 32 as the default preset; "
                                                           "--quick: 2)")
    g.add_argument("--rl-group", type=int, help="samples per prompt (default 8 as the default preset; --quick: 2)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    if args.rl_group is not None and args.rl_group < 2:
        fail(f"--rl-group must be >= 2 (advantages compare samples within a group), got {args.rl_group}")
    lengths = args.rl_lengths and int_list(args.rl_lengths, "--rl-lengths", 1)
    windows = args.rl_windows and int_list(args.rl_windows, "--rl-windows", 1, ["full"])
    options = {"generate": dict(hf=not args.no_hf),
               "rlstep": dict(lengths=lengths, windows=windows, prompts=args.rl_prompts, group=args.rl_group)}
    device = torch.device(pick_device(args.device or ("cpu" if args.quick else "auto")))
    claim_outputs([args.json])
    print_settings("bench", args)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
        torch.backends.cuda.matmul.allow_tf32 = True
    # one compiled flex kernel per (shape, window, path): more than dynamo's default 8 recompiles
    torch._dynamo.config.cache_size_limit = 64
    torch.manual_seed(0)
    meta = dict(command=" ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else argv)),
                device=device_name(device), torch=torch.__version__, cuda=torch.version.cuda,
                python=platform.python_version(), quick=args.quick, time=time.strftime("%Y-%m-%d %H:%M:%S"))
    report = Report(args.json, meta)
    print(f"bench: {meta['device']}, torch {meta['torch']}, sections {only}", flush=True)
    for name in only:
        t0 = time.perf_counter()
        try:
            SECTIONS[name](report, device, args.quick, **options.get(name, {}))
        except Exception as e:       # a section that breaks as a whole is reported, the rest runs
            report.add(name, {"error": failure(e)})
            print(f"{name}: failed: {failure(e)}", flush=True)
        print(f"({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    return report.data


if __name__ == "__main__":
    main()
