"""
Stage 0: pretrain the full-attention ("SA") base model from scratch on the embedded math corpus.
No pretrained model can be downloaded here, so this makes the one SWARR starts from.

    python pretrain.py --preset tiny --out runs/tiny/base.pt          # CPU, about a minute
    python pretrain.py --preset default --out runs/default/base.pt    # one GPU, a few minutes
    python pretrain.py --preset default --out runs/default/base.pt --resume   # continue a run

The corpus is generated problems + worked solutions in both styles (data/mathgen.py), packed
into rows of max_seq_len tokens with the loss on every token. This file also holds the training
loop that sft.py shares: AdamW, linear warmup then cosine decay, gradient clipping, bf16 autocast
and torch.compile on GPU, held-out loss, atomic checkpoints and exact resume (the batch of a step
is a pure function of (seed, step), so restoring weights, optimizer and step restores the run).
"""
import json
import math
import os
import signal
import time
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import dist
from checkpoint import check_resume, resume, rng_state, save_checkpoint, start_metrics
from common import (COUNT, FRACTION, NONNEG, POSITIVE, POSITIVE_INT, PRESETS, ArgumentParser, add_preset_arg,
                    apply_preset, claim_outputs, fail, pick_device, print_settings)
from data.mathgen import DEFAULT_KNOBS, check_knobs, make_problems
from data.tokenizer import encode_example, load_tokenizer
from model import GPT, GPTConfig
from safety import stop_at_step_boundaries, stop_if_asked


def add_train_args(ap):
    """The optimisation flags pretrain.py and sft.py share (None = take the preset's value)."""
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=POSITIVE_INT, help="optimizer steps")
    g.add_argument("--batch-size", type=POSITIVE_INT, help="rows per step")
    g.add_argument("--lr", type=POSITIVE, help="peak learning rate")
    g.add_argument("--warmup", type=COUNT, help="linear warmup steps")
    g.add_argument("--min-lr-frac", type=FRACTION, default=0.1, help="cosine decays to this fraction of --lr")
    g.add_argument("--weight-decay", type=NONNEG, default=0.1)
    g.add_argument("--grad-clip", type=POSITIVE, default=1.0)
    g = ap.add_argument_group("run")
    g.add_argument("--out", required=True, help="checkpoint to write (atomically)")
    g.add_argument("--metrics", help="JSON-lines metrics (default: --out with .jsonl)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved at --out (none there: start fresh; finished: do nothing)")
    g.add_argument("--save-every", type=COUNT, default=500, help="checkpoint every N steps (and at the end)")
    g.add_argument("--eval-every", type=COUNT, help="held-out loss every N steps")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--no-compile", action="store_true", help="skip torch.compile on GPU")
    add_memory_args(ap)


def add_memory_args(ap, micro_batch=True):
    """What lets a ~1B imported model train on one 24 GB GPU (README, "Your own model")."""
    g = ap.add_argument_group("memory (big models)")
    if micro_batch:
        g.add_argument("--micro-batch", type=POSITIVE_INT, help="rows per forward/backward; gradients accumulate "
                                                                "over the batch (default: the whole batch at once)")
    g.add_argument("--grad-ckpt", action="store_true", help="recompute each block's activations in backward")
    g.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                   help="weights, gradients and AdamW state: bf16 halves them (8 instead of 16 bytes per "
                        "parameter) but rounds away updates below ~1/256 of a weight")


def apply_memory_args(model, args):
    model.grad_checkpointing = args.grad_ckpt
    return model.to(torch.bfloat16) if args.dtype == "bf16" else model


def check_train_args(args, inputs=()):
    """After the preset filled the gaps: the device, positive sizes, the metrics path, and the outputs
    (not one of `inputs`, writable, locked: common.claim_outputs) before any work."""
    args.device = pick_device(args.device)
    for k in ("steps", "batch_size", "lr"):
        if not getattr(args, k) > 0:
            fail(f"--{k.replace('_', '-')} must be positive")
    if args.batch_size % dist.world():
        fail(f"--batch-size {args.batch_size} cannot be split evenly over {dist.world()} processes")
    args.metrics = args.metrics or os.path.splitext(args.out)[0] + ".jsonl"
    if dist.is_main():   # DISTRIBUTED: rank 0 alone writes
        claim_outputs([args.out, args.metrics], inputs)
    return args


# ----------------------------------------------------------------------------------------------
# data

def _make_chunk(a):
    return make_problems(*a[:2], seed=a[2], **a[3])


def _chunks(n, split, seed, knobs, chunk):
    """n problems as jobs of `chunk` each, each its own seed stream: deterministic, disjoint."""
    return [(min(chunk, n - i), split, seed * 1_000_003 + i // chunk, knobs or {}) for i in range(0, n, chunk)]


def _in_workers(fn, jobs):
    """fn over jobs, in order: in worker processes when there are several jobs."""
    if len(jobs) == 1:
        return [fn(jobs[0])]
    with Pool(min(len(jobs), os.cpu_count() or 1), _quiet_worker) as pool:
        return pool.map(fn, jobs)


def generate_problems(n, split, seed, knobs=None, chunk=2000):
    """n problems, made in parallel chunks."""
    return [r for part in _in_workers(_make_chunk, _chunks(n, split, seed, knobs, chunk)) for r in part]


def _quiet_worker():
    """A corpus worker leaves Ctrl-C to the main process (one line, safety.py; else each worker printed a
    traceback), and dies silently on the SIGTERM with which the pool ends it (it inherits the main process's
    handler, which would print a line of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def token_stream(enc, problems):
    """The examples' ids one after another: prompt, solution and end token of each."""
    ids = [t for r in problems for t in encode_example(enc, r["question"], r["solution"])[0]]
    return np.array(ids, dtype=np.int32)


def rows_of(stream, seq_len):
    """A token stream cut into (x, y) rows of seq_len, y one token ahead, the loss on every token."""
    n = (len(stream) - 1) // seq_len
    data = torch.from_numpy(stream[:n * seq_len + 1].astype(np.int64))
    x, y = data[:-1].view(n, seq_len), data[1:].view(n, seq_len)
    return x, y, torch.ones_like(x, dtype=torch.bool)


def _corpus_chunk(job):
    return token_stream(load_tokenizer(), _make_chunk(job))


def corpus_rows(n, split, seed, knobs, seq_len, chunk=2000):
    """Pretraining rows of generate_problems(n, ...): their examples end to end, cut into rows of seq_len. Each
    chunk is made and tokenized in a worker, so only token ids (not the problems' text) come back."""
    return rows_of(np.concatenate(_in_workers(_corpus_chunk, _chunks(n, split, seed, knobs, chunk))), seq_len)


def batch_at(rows, step, batch_size, seed):
    """The batch of a step: a pure function of (seed, step), which is what makes resume exact."""
    x, y, m = rows
    n = x.shape[0]
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, offset = divmod(start + len(idx), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 10_007 + epoch))
        idx += perm[offset:offset + batch_size - len(idx)].tolist()
    return x[idx], y[idx], m[idx]


# ----------------------------------------------------------------------------------------------
# the shared training loop

def masked_loss(logits, y, mask):
    """Mean cross-entropy over the tokens where mask is true (prompts and padding are excluded)."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
    mask = mask.flatten().float()
    return (ce * mask).sum() / mask.sum().clamp_min(1)


def flops_per_token(model, seq_len):
    """Training FLOPs per token: 6 per weight (embedding lookups excluded) + attention's score and
    value products (12 per layer, dimension and attended key; half the context when causal, ~W when sliding)."""
    cfg = model.config
    n = model.num_params() - model.tok_emb.weight.numel()
    ctx = [seq_len / 2 if k == "F" else min(cfg.window, seq_len / 2) for k in cfg.layer_kinds()]
    return 6 * n + 12 * cfg.n_embd * sum(ctx)


def peak_flops(device):
    """bf16 dense tensor-core peak of known GPUs (None if unknown: MFU is then not reported)."""
    if not str(device).startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    for key, peak in (("H100", 989e12), ("H200", 989e12), ("A100", 312e12), ("4090", 165e12),
                      ("3090", 71e12), ("L40", 181e12), ("A6000", 155e12)):
        if key in name:
            return peak
    return None


def evaluate_loss(model, batches, device):
    """The mean loss per token of `batches` (DISTRIBUTED: each rank takes every N-th batch; sums gathered)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=device.startswith("cuda")):
        for x, y, m in batches[dist.rank()::dist.world()]:
            x, y, m = x.to(device), y.to(device), m.to(device)
            n = int(m.sum())
            total += float(masked_loss(model(x), y, m)) * n
            count += n
    model.train()
    return dist.sum(total) / max(dist.sum(count), 1)


def train(model, get_batch, val_batches, args, meta, final=None):
    """Optimise `model` for args.steps steps on get_batch(step) -> (x, y, mask); checkpoint to args.out.
    Returns the metrics of the last step. Used by pretrain.py and sft.py alike. `final(last metrics)`, if
    given, is the stage's closing row (sft's held-out evaluation): the checkpoint is marked finished only
    once that row is written, so a run killed before it resumes at its last step and writes it then."""
    device = args.device
    cuda = device.startswith("cuda")
    apply_memory_args(model.to(device), args)
    decay = [p for p in model.parameters() if p.dim() >= 2]      # no decay on norms' gains
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=cuda)
    start = resume(args, meta, model, opt)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    fwd = torch.compile(model) if cuda and not args.no_compile else model
    ddp = dist.ddp(fwd)   # DISTRIBUTED: the forward that trains, DDP averaging the ranks' gradients (fwd on one)
    seq_len = get_batch(0)[0].shape[1]
    flops_tok, peak = flops_per_token(model, seq_len), peak_flops(device)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))

    def save(step, finished):
        state = {"step": step, "optimizer": opt.state_dict(), "rng": rng_state()}
        save_checkpoint(args.out, model, **meta, step=step, train_state=None if finished else state)

    log = start_metrics(args.metrics, start)
    stop_at_step_boundaries()   # SIGTERM or Ctrl-C: the step under way ends, then a save and exit (safety.py)
    record = {}
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc=meta["stage"],
               dynamic_ncols=True)
    t_last, tokens_since = time.time(), 0
    for step in bar:
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, m = get_batch(step)   # the global batch
        # DISTRIBUTED: n, the tokens in the loss per rank (DDP averages the ranks' gradients, so each rank's
        # loss is its tokens' sum / n); each rank takes its rows of the batch. On one process: the batch's
        n = m.sum().clamp_min(1) / dist.world()
        x, y, m = (t[dist.share(len(t))].to(device, non_blocking=True) for t in (x, y, m))
        if not args.micro_batch or args.micro_batch >= x.shape[0]:
            with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                loss = masked_loss(ddp(x), y, m) * (m.sum().clamp_min(1) / n)   # x 1 on one process
            loss.backward()
        else:   # the same loss, accumulated: each part's masked mean weighted by its share of the tokens
            loss = 0.0
            for i in range(0, x.shape[0], args.micro_batch):
                part = slice(i, i + args.micro_batch)
                with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                    part_loss = masked_loss(ddp(x[part]), y[part], m[part]) * m[part].sum().clamp_min(1) / n
                part_loss.backward()
                loss = loss + part_loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens_since += x.numel() * dist.world()   # the global batch's
        last = step + 1 == args.steps
        if step % 10 == 0 or last or (args.eval_every and (step + 1) % args.eval_every == 0):
            loss_val = float(dist.mean(loss.detach()))   # a host sync: only on logging steps (DISTRIBUTED: all)
            dt = time.time() - t_last
            tok_s = tokens_since / dt
            record = {"stage": meta["stage"], "step": step + 1, "loss": round(loss_val, 5), "lr": lr,
                      "grad_norm": round(float(grad_norm), 4), "tokens_per_s": round(tok_s),
                      "mfu": round(tok_s * flops_tok / (peak * dist.world()), 4) if peak else None}
            if args.eval_every and ((step + 1) % args.eval_every == 0 or last):
                record["val_loss"] = round(evaluate_loss(fwd, val_batches, device), 5)
            log(record)
            val = {"val": record["val_loss"]} if "val_loss" in record else {}
            bar.set_postfix(loss=f"{loss_val:.4f}", tok_s=f"{tok_s:.3g}", **val)
            t_last, tokens_since = time.time(), 0
        if args.save_every and (step + 1) % args.save_every == 0 and not last:
            save(step + 1, finished=False)
        if not last:
            stop_if_asked(lambda: save(step + 1, finished=False), args.out, step + 1, dist.largest)
    if final:
        if start < args.steps:
            save(args.steps, finished=False)   # the training is kept; what is left is the closing row
        record = final(record)
        log(record)
    if start < args.steps or final:
        save(args.steps, finished=True)
    # a signal after the last step: the run is finished and saved, only the line and the exit status are left
    stop_if_asked(None, args.out, args.steps, dist.largest)
    return record


def main():
    dist.init()   # under torchrun: join the other ranks (dist.py); nothing on one process
    ap = ArgumentParser(__doc__, sections=("pretrain", "model", "data"))
    g = ap.add_argument_group("model and data")
    add_preset_arg(g)
    g.add_argument("--n-train", type=POSITIVE_INT, help="generated training problems")
    g.add_argument("--n-val", type=POSITIVE_INT, help="held-out problems for the validation loss")
    g.add_argument("--window", type=POSITIVE_INT,
                   help="the run's window: the window-friendly traces are written for it, "
                        "and later stages (convert, sft, rl, eval) take it from here")
    g.add_argument("--window-friendly-frac", type=FRACTION,
                   help="share of window-friendly solutions in the data record: what SFT writes, later stages read")
    g.add_argument("--corpus-wf-frac", type=FRACTION,
                   help="share of window-friendly solutions in the pretraining corpus only "
                        "(a preset without one: --window-friendly-frac's)")
    g.add_argument("--data-knobs", type=json.loads, default={},
                   help='other generator knobs as JSON, e.g. \'{"n_events": [2, 3]}\'')
    for name in ("n_layer", "n_head", "n_kv_head", "n_embd"):
        g.add_argument("--" + name.replace("_", "-"), type=POSITIVE_INT, help=f"override the preset's {name}")
    add_train_args(ap)
    args = check_train_args(apply_preset(ap.parse_args(), "pretrain"))
    preset = PRESETS[args.preset]
    torch.manual_seed(args.seed)

    enc = load_tokenizer()
    sizes = {**preset["model"], **{k: getattr(args, k) for k in ("n_layer", "n_head", "n_kv_head", "n_embd")
                                   if getattr(args, k)}}
    try:
        # exactly the tokenizer's ids: a padded vocabulary would let sampling emit ids nothing can decode
        cfg = GPTConfig(vocab_size=enc.n_vocab, **sizes)
    except ValueError as e:
        fail(str(e))
    if not isinstance(args.data_knobs, dict):
        fail("--data-knobs must be a JSON object")
    knobs = {**DEFAULT_KNOBS, **preset["data"], **args.data_knobs}
    for k in ("window", "window_friendly_frac"):
        if getattr(args, k) is not None:
            knobs[k] = getattr(args, k)
    check_knobs(knobs, "--data-knobs")
    print_settings("pretrain", args, model=sizes, data=knobs)
    # the base learns both styles from its corpus; the share SFT teaches is the data record's (knobs)
    corpus = dict(knobs)
    if args.corpus_wf_frac is not None:
        corpus["window_friendly_frac"] = args.corpus_wf_frac
    meta = {"stage": "pretrain", "preset": args.preset, "tokenizer": "data/tokenizer.tiktoken", "data": knobs,
            "history": [{"stage": "pretrain", "n_train": args.n_train, "seed": args.seed, "steps": args.steps,
                         "corpus_wf_frac": corpus["window_friendly_frac"]}]}
    check_resume(args, meta, cfg)   # a finished run, or one of other settings, says so before the corpus

    t0 = time.time()
    rows = corpus_rows(args.n_train, "train", args.seed, corpus, cfg.max_seq_len)
    val = corpus_rows(args.n_val, "val", args.seed, corpus, cfg.max_seq_len)
    val_batches = [tuple(t[i:i + args.batch_size] for t in val)
                   for i in range(0, val[0].shape[0], args.batch_size)]
    n = rows[0].shape[0]
    print(f"data: {n} rows x {cfg.max_seq_len} tokens ({time.time() - t0:.1f}s); one epoch = "
          f"{n / args.batch_size:.0f} steps")
    model = GPT(cfg)
    print(f"model: {model.num_params() / 1e6:.2f}M parameters, {cfg.n_layer} layers, {cfg.describe()}")
    t0 = time.time()
    last = train(model, lambda s: batch_at(rows, s, args.batch_size, args.seed), val_batches, args, meta)
    print(json.dumps({**last, "wall_s": round(time.time() - t0, 1), "out": args.out}))


if __name__ == "__main__":
    main()
