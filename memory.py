"""
Peak GPU memory of real-model shapes, measured with random weights (no real weights can be fetched
here): one RL training step (forward, backward and AdamW over a micro-batch, as rl.py's update) and
one batched generation (rl.py's rollouts), for each shape, weight dtype and gradient checkpointing.

    python memory.py                                    # both shapes, ~1-2 minutes on one H100
    python memory.py --shapes qwen2.5-0.5b --seq-len 2048 --micro-batch 2 --gen-batch 128

One JSON line per measurement; "oom" where it did not fit the GPU at hand. What fits a 24 GB GPU
is the peak plus the CUDA context (~0.5 GB) below 24 GB. README "Your own model" has the arithmetic.
"""
import json
import sys
import time

import torch

from common import POSITIVE_INT, ArgumentParser, fail, print_settings
from engine import generate
from model import GPT, GPTConfig
from rl import token_logprobs

DEVICE = "cuda"

SHAPES = {   # config.json of each, as hf.config_from_hf maps it (window for the SWA rows)
    "qwen2.5-0.5b": dict(vocab_size=151936, n_layer=24, n_head=14, n_kv_head=2, n_embd=896, mlp_hidden=4864,
                         qkv_bias=True, tie_embeddings=True, rope_theta=1e6, norm_eps=1e-6),
    "qwen2.5-1.5b": dict(vocab_size=151936, n_layer=28, n_head=12, n_kv_head=2, n_embd=1536, mlp_hidden=8960,
                         qkv_bias=True, tie_embeddings=True, rope_theta=1e6, norm_eps=1e-6),
}


def peak(fn):
    """(peak GB allocated during fn, seconds); "oom" if it did not fit."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    try:
        fn()
        torch.cuda.synchronize()
    except torch.OutOfMemoryError:
        return "oom", None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2), round(time.time() - t0, 2)


def train_step(cfg, dtype, grad_ckpt, batch, seq_len):
    with torch.device(DEVICE):   # made on the GPU: initialising 1.5B weights on the CPU takes long
        model = GPT(cfg, attn_impl="tiled").to(dtype)
    model.grad_checkpointing = grad_ckpt
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=DEVICE == "cuda")
    idx = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device=DEVICE)

    def step():
        for _ in range(2):   # the second step has AdamW's state allocated: the steady state
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                logp, _ = token_logprobs(model, idx)
            (-logp.mean()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    result = peak(step)
    del model, opt
    return result


def generation(cfg, batch, prompt_len, new_tokens):
    with torch.device(DEVICE):
        model = GPT(cfg).to(torch.bfloat16)
    prompts = torch.randint(0, cfg.vocab_size, (batch, prompt_len)).tolist()
    result = peak(lambda: generate(model, prompts, new_tokens, temperature=1.0, seed=0))
    del model
    return result


def main():
    ap = ArgumentParser(__doc__)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--seq-len", type=POSITIVE_INT, default=1024, help="tokens per training row")
    ap.add_argument("--micro-batch", type=POSITIVE_INT, default=4, help="rows per forward/backward")
    ap.add_argument("--window", type=POSITIVE_INT, default=512, help="W of the sliding-window rows")
    ap.add_argument("--gen-batch", type=POSITIVE_INT, default=64, help="sequences per generate call")
    ap.add_argument("--prompt-len", type=POSITIVE_INT, default=256)
    ap.add_argument("--new-tokens", type=POSITIVE_INT, default=768)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        fail("memory.py measures GPU memory: it needs CUDA")
    print_settings("memory", args, file=sys.stderr)   # stdout is JSON lines
    for name in args.shapes:
        cfg = GPTConfig(**SHAPES[name], max_seq_len=max(args.seq_len, args.prompt_len + args.new_tokens) + 1)
        with torch.device("meta"):   # shapes only
            print(json.dumps({"shape": name, "params_M": round(GPT(cfg).num_params() / 1e6, 1)}), flush=True)
        for dtype in (torch.float32, torch.bfloat16):
            for grad_ckpt in (False, True):
                gb, s = train_step(cfg, dtype, grad_ckpt, args.micro_batch, args.seq_len)
                print(json.dumps({"shape": name, "what": "train_step", "weights": str(dtype)[6:],
                                  "grad_ckpt": grad_ckpt, "micro_batch": args.micro_batch, "seq_len": args.seq_len,
                                  "peak_gb": gb, "seconds": s}), flush=True)
        for window in (None, args.window):
            swa = GPTConfig(**{**cfg.__dict__, "window": window})
            gb, s = generation(swa, args.gen_batch, args.prompt_len, args.new_tokens)
            print(json.dumps({"shape": name, "what": "generate", "attention": swa.describe(), "weights": "bfloat16",
                              "batch": args.gen_batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                              "peak_gb": gb, "seconds": s}), flush=True)


if __name__ == "__main__":
    main()
