"""
Stage 2 of SWARR: adapt a (sliding-window) SFT checkpoint with on-policy GRPO on its own traces.

    python rl.py --init runs/default/sft_swa.pt --out runs/default/rl_swa.pt            # one GPU
    python rl.py --init runs/default/sft_swa.pt --out runs/default/rl_swa.pt --resume   # continue it
    python rl.py --init runs/tiny/sft.pt --steps 3 --device cpu --out runs/tiny/rl.pt   # CPU smoke

Each step: B training prompts x G samples from the policy with the checkpoint's own attention
(`model.generate`, so SWA models decode through their ring-buffer cache), reward 1 if
`eval.grade` accepts the answer else 0, group-normalised advantages, then `--num-iterations`
passes over the batch in token-sized micro-batches with the clipped policy loss, AdamW.
Metrics go to a JSON-lines file (one row per step, plus rows for the held-out evaluations) and,
at the end, to an SVG of reward, accuracy, length and "wf" (window-friendly) style fraction.

Where this departs from textbook GRPO (DeepSeekMath), on purpose:
- One optimizer step per pass over the batch (the micro-batches only accumulate gradients), so
  with the default num_iterations=1 every update is exactly on-policy and the clip never bites.
- Old log-probs come from the trainer, not from the sampler: a no-grad forward pass before the
  first update (for num_iterations=1 simply the detached log-probs of the training forward, which
  is the same number for free). On a GPU the sampler decodes token by token from a bf16 cache
  while the trainer runs the whole sequence under bf16 autocast with other kernels; their
  log-probs differ by rounding, and using the sampler's would make PPO's ratio measure that noise
  instead of the policy's change. The gap is logged (`sampler_gap`) and tests check that the two
  agree on CPU in fp32 (full and sliding models, completions longer than the window).
- Loss aggregation defaults to DAPO's token mean over the whole batch ("grpo" = per-sequence
  means, "dr_grpo" = sum / (sequences x max_new_tokens) are options), with DAPO's asymmetric
  "clip-higher" (0.2 / 0.28). No KL penalty by default (beta=0), so no reference model is kept.
- No top-k/top-p at sampling: the trainer scores the same tempered distribution it samples from.
- Truncated completions (no end-of-sequence token within --max-new-tokens) get reward 0 and stay
  in the loss unless --mask-truncated; the end-of-sequence token is a trained token.
- No dynamic re-sampling of zero-variance groups (DAPO); --drop-zero-std-groups only drops them.
- Learning rate: linear warmup, then constant (RL runs are stopped, not scheduled to an end).
- Sliding layers run the `tiled` path (same attention as `flex`, tested equal in model.py): RL
  batches come in ever-new shapes, and compiled flex recompiles for each (H100: 4-8k training
  tokens/s with flex against 160-290k with tiled). Decoding uses the ring-buffer cache either way.
"""
import copy
import json
import os
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cli import ArgumentParser, fail
from data.mathgen import DEFAULT_KNOBS, make_problems, solution_style
from data.tokenizer import encode_prompt, load_tokenizer
from eval import evaluate as evaluate_checkpoint
from eval import extract_answer, grade
from model import generate, load_checkpoint, save_checkpoint
from plot import rl_curves

ROOT = os.path.dirname(os.path.abspath(__file__))
RL_SEED_BASE = 7_000_000_000   # problem seeds of RL prompts: far from pretrain/SFT's seed * 1_000_003 + k
TRAIN_STATE = ("optimizer", "rng", "step", "args", "train_state", "stage", "init")  # not forwarded from --init


def get_args(argv=None):
    p = ArgumentParser(__doc__)
    # input / output
    p.add_argument("--init", required=True, help="checkpoint to start from (an SFT checkpoint)")
    p.add_argument("--out", default="runs/rl.pt", help="checkpoint written every --save-every steps and at the end")
    p.add_argument("--metrics", default=None, help="JSON-lines metrics (default: next to --out, .jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run saved at --out from its step")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--attn-impl", default="tiled", choices=["tiled", "dense", "flex", "auto"],
                   help="path for sliding layers (all compute the same attention): tiled trains ~30x faster "
                        "than flex here, whose static-shape compile recompiles for every new micro-batch shape")
    p.add_argument("--seed", type=int, default=0, help="seeds the prompts and the sampling of every step")
    # rollouts
    p.add_argument("--steps", type=int, default=200, help="total optimizer steps (including resumed ones)")
    p.add_argument("--prompts-per-step", type=int, default=32, help="B: 32 x 8 = 256 rollouts a step")
    p.add_argument("--group-size", type=int, default=8,
                   help="G: at accuracy 0.5 only 1%% of groups have no reward variance (0.5^8 x 2)")
    p.add_argument("--max-new-tokens", type=int, default=768,
                   help="covers the longest SFT-style trace (~720 tokens) with a ~130-token prompt in 1024")
    p.add_argument("--temperature", type=float, default=1.0, help="sample from the policy itself")
    p.add_argument("--gen-batch", type=int, default=256, help="rows per generate call (KV cache is small)")
    p.add_argument("--format-reward", type=float, default=0.0,
                   help="bonus for stopping with an extractable answer (off: correctness is the goal)")
    # objective
    p.add_argument("--loss-type", default="dapo", choices=["grpo", "dapo", "dr_grpo"],
                   help="dapo: every token weighs the same, so long wrong traces are not diluted")
    p.add_argument("--scale-rewards", default="group", choices=["group", "none"],
                   help="group: divide by the group's std (textbook GRPO); none: Dr. GRPO")
    p.add_argument("--clip-low", type=float, default=0.2, help="PPO's epsilon below 1")
    p.add_argument("--clip-high", type=float, default=0.28, help="DAPO's clip-higher: room for rare tokens to grow")
    p.add_argument("--beta", type=float, default=0.0, help="k3 KL to the initial policy; 0 keeps no reference model")
    p.add_argument("--num-iterations", type=int, default=1, help="mu: passes over each batch (1 = strictly on-policy)")
    p.add_argument("--mask-truncated", action="store_true", help="leave truncated completions out of the loss")
    p.add_argument("--drop-zero-std-groups", action="store_true",
                   help="skip groups whose rewards are all equal (their advantage is 0 anyway)")
    # optimization
    p.add_argument("--lr", type=float, default=1e-5, help="small: RL moves a trained policy, not a fresh one")
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--weight-decay", type=float, default=0.0, help="0: nothing pulls weights away from the SFT policy")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--micro-batch-tokens", type=int, default=16384,
                   help="padded tokens per forward/backward; ~3 GB of activations for the default model")
    p.add_argument("--pad-multiple", type=int, default=64,
                   help="pad sequence lengths to a multiple: few distinct shapes for the compiled attention")
    # evaluation / saving
    p.add_argument("--eval-every", type=int, default=25, help="greedy held-out accuracy every N steps (0: never)")
    p.add_argument("--eval-n", type=int, default=256, help="held-out (val split) problems per evaluation")
    p.add_argument("--save-every", type=int, default=25, help="checkpoint every N steps (0: only at the end)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# the pure parts: advantages and the loss


def group_advantages(rewards, group_size, scale="group", eps=1e-6):
    """rewards (N,) in consecutive groups of group_size -> advantages (N,).
    "group": (r - mean) / (std + eps); "none": r - mean. A constant group gives exactly 0."""
    r = torch.as_tensor(rewards, dtype=torch.float32).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (r.std(dim=1, keepdim=True, unbiased=False) + eps)  # population std: finite for any G >= 1
    elif scale != "none":
        raise ValueError(f"scale must be 'group' or 'none', got {scale!r}")
    return centred.view(-1)


def policy_loss(logp, old_logp, adv, mask, clip_low=0.2, clip_high=0.28, ref_logp=None, beta=0.0,
                loss_type="dapo"):
    """Clipped surrogate + beta * k3, aggregated over valid tokens. logp/old_logp/ref_logp/mask
    (B, T), adv (B,). Returns (loss, stats) with stats as detached scalar tensors."""
    valid = mask.bool()
    mask = mask.to(logp.dtype)
    # masked positions (padding, prompt) may hold anything: zero them so no inf/NaN can leak through
    log_ratio = torch.where(valid, logp - old_logp, 0.0)
    ratio = torch.exp(log_ratio)
    A = adv.to(logp.dtype)[:, None]
    per_token = -torch.minimum(ratio * A, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * A)
    if ref_logp is not None and beta:
        d = torch.where(valid, ref_logp - logp, 0.0)
        per_token = per_token + beta * (torch.exp(d) - d - 1)
    n_valid = mask.sum().clamp(min=1)
    if loss_type == "dapo":      # every valid token in the batch weighs the same
        loss = (per_token * mask).sum() / n_valid
    elif loss_type == "grpo":    # every sequence weighs the same, tokens within it share its weight
        seq_len = mask.sum(1)
        has = seq_len > 0
        seq_mean = (per_token * mask).sum(1) / seq_len.clamp(min=1)
        loss = (seq_mean * has).sum() / has.sum().clamp(min=1)
    elif loss_type == "dr_grpo":  # a constant normaliser: no length bias at all
        loss = (per_token * mask).sum() / (mask.shape[0] * mask.shape[1])
    else:
        raise ValueError(f"loss_type must be grpo, dapo or dr_grpo, got {loss_type!r}")
    with torch.no_grad():
        mean = lambda x: (x * mask).sum() / n_valid
        # the clip "bites" (kills the gradient) only on the side the advantage pushes towards
        stats = {"clip_low": mean(((ratio < 1 - clip_low) & (A < 0)).to(mask.dtype)),
                 "clip_high": mean(((ratio > 1 + clip_high) & (A > 0)).to(mask.dtype)),
                 "kl_old": mean(torch.exp(-log_ratio) + log_ratio - 1),   # k3 of old w.r.t. new, >= 0
                 "ratio": mean(ratio)}
        if ref_logp is not None:
            d = torch.where(valid, ref_logp - logp, 0.0)
            stats["kl_ref"] = mean(torch.exp(d) - d - 1)
    return loss, stats


def loss_weight(loss_type, mask, n_seqs, n_tokens, max_len):
    """Factor that turns policy_loss on one micro-batch into its share of the whole batch's loss,
    so accumulating micro-batches gives exactly the loss of the batch (checked in the tests)."""
    if loss_type == "dapo":
        return float(mask.sum()) / n_tokens
    if loss_type == "grpo":
        return float((mask.sum(1) > 0).sum()) / n_seqs
    return mask.shape[0] * mask.shape[1] / (n_seqs * max_len)   # dr_grpo: sum / (N * max_new_tokens)

# ----------------------------------------------------------------------------------------------
# token log-probs of (prompt, completion) batches: the one function both tests and loop use


def make_batch(prompts, completions, pad_multiple=1, max_seq_len=None):
    """Right-padded prompt+completion ids (B, T) and the completion mask (B, T-1), where column t
    scores token t+1; each row starts at position 0 as in `generate`, so positions match."""
    lens = [len(p) + len(c) for p, c in zip(prompts, completions)]
    T_in = -(-(max(lens) - 1) // pad_multiple) * pad_multiple      # model input length, padded
    if max_seq_len is not None:
        T_in = min(T_in, max_seq_len)
    idx = torch.zeros(len(prompts), T_in + 1, dtype=torch.long)
    mask = torch.zeros(len(prompts), T_in, dtype=torch.bool)
    for r, (p, c) in enumerate(zip(prompts, completions)):
        idx[r, :len(p) + len(c)] = torch.tensor(p + c)
        mask[r, len(p) - 1:len(p) + len(c) - 1] = True
    return idx, mask


def token_logprobs(model, idx, temperature=1.0, with_entropy=False):
    """log p(idx[:, t+1] | idx[:, :t+1]) under the tempered policy, (B, T-1) in fp32; with_entropy
    also returns the (detached) entropy of that distribution at each position."""
    logits = model(idx[:, :-1]).float() / temperature
    B, T, V = logits.shape
    logp = -F.cross_entropy(logits.view(-1, V), idx[:, 1:].reshape(-1), reduction="none").view(B, T)
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        lp = torch.log_softmax(logits.detach(), dim=-1)
        entropy = -(lp.exp() * lp).sum(-1)
    return logp, entropy


def microbatches(lengths, max_tokens, pad_multiple):
    """Index lists, longest sequences first, each fitting max_tokens once padded (at least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks, cur = [], []
    for i in order:
        T = -(-lengths[cur[0] if cur else i] // pad_multiple) * pad_multiple
        if cur and (len(cur) + 1) * T > max_tokens:
            chunks.append(cur)
            cur = []
        cur.append(i)
    return chunks + ([cur] if cur else [])


def optimize(model, opt, prompts, completions, adv, args, ref_model=None, sampler_logps=None, lr=None):
    """num_iterations passes over one batch; each pass accumulates the gradient of the whole
    batch's loss over micro-batches and takes one AdamW step. Returns averaged statistics."""
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    msl = model.config.max_seq_len
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    chunks = microbatches(lengths, args.micro_batch_tokens, args.pad_multiple)
    batches = [make_batch([prompts[i] for i in ch], [completions[i] for i in ch], args.pad_multiple, msl)
               for ch in chunks]
    n_seqs, n_tokens = len(prompts), sum(len(c) for c in completions)
    mu = args.num_iterations

    def fixed_logps(m):  # no-grad log-probs of every micro-batch, kept for all passes
        with torch.no_grad(), autocast():
            return [token_logprobs(m, idx.to(device), args.temperature)[0] for idx, _ in batches]
    olds = fixed_logps(model) if mu > 1 else None
    refs = fixed_logps(ref_model) if ref_model is not None else None
    if lr is not None:
        for g in opt.param_groups:
            g["lr"] = lr
    sums, entropy, gap, grad_norms = {}, 0.0, 0.0, []
    for it in range(mu):
        opt.zero_grad(set_to_none=True)
        for k, (ch, (idx, mask)) in enumerate(zip(chunks, batches)):
            idx, mask = idx.to(device), mask.to(device)
            with autocast():
                logp, ent = token_logprobs(model, idx, args.temperature, with_entropy=it == 0)
            old = olds[k] if mu > 1 else logp.detach()   # mu = 1: the same forward IS the old policy
            loss, stats = policy_loss(logp, old, adv[ch].to(device), mask, args.clip_low, args.clip_high,
                                      refs[k] if refs else None, args.beta, args.loss_type)
            (loss * loss_weight(args.loss_type, mask, n_seqs, n_tokens, args.max_new_tokens)).backward()
            n = mask.sum()
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + v * n
            if it == 0:
                entropy += (ent * mask).sum()
                if sampler_logps is not None:   # how far the sampler's numbers are from the trainer's
                    s = torch.zeros(logp.shape)
                    for r, i in enumerate(ch):
                        start = len(prompts[i]) - 1
                        s[r, start:start + len(completions[i])] = torch.tensor(sampler_logps[i])
                    gap += ((logp.detach() - s.to(device)).abs() * mask).sum()
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)))
        opt.step()
    opt.zero_grad(set_to_none=True)
    out = {k: float(v) / (n_tokens * mu) for k, v in sums.items()}
    out.update(entropy=float(entropy) / n_tokens, grad_norm=sum(grad_norms) / mu)
    if sampler_logps is not None:
        out["sampler_gap"] = float(gap) / n_tokens
    return out

# ----------------------------------------------------------------------------------------------
# rollouts, rewards, evaluation


def rollout(model, prompts, max_new_tokens, temperature, eos_id, seed, gen_batch):
    """Samples one completion per prompt (prompts already repeated G times), in chunks."""
    comps, logps = [], []
    for i in range(0, len(prompts), gen_batch):
        c, lp = generate(model, prompts[i:i + gen_batch], max_new_tokens, temperature=temperature,
                         eos_id=eos_id, seed=seed + i)
        comps += c
        logps += lp
    return comps, logps


def judge(enc, completion, gold, eos_id):
    """(correct, truncated, text): a completion that never stopped is wrong, whatever it says."""
    truncated = not completion or completion[-1] != eos_id
    # the model's vocabulary may be padded past the tokenizer's: such ids decode to nothing
    text = enc.decode([t for t in (completion if truncated else completion[:-1]) if t < enc.n_vocab])
    return (not truncated) and grade(text, gold), truncated, text


# ----------------------------------------------------------------------------------------------
# checkpoint state


def rng_state():
    v, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [v, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_tokenizer_for(meta):
    path = meta.get("tokenizer")
    if isinstance(path, str) and not os.path.isabs(path):
        path = os.path.join(ROOT, path)   # checkpoints store it relative to the repository
    return load_tokenizer(path if isinstance(path, str) else None)


def data_knobs(meta):
    """The generator settings the checkpoint was trained with (they shape the questions)."""
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {k: v for k, v in data.items() if k in DEFAULT_KNOBS}


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    args = get_args(argv)
    if args.group_size < 2:
        fail(f"--group-size must be >= 2 (advantages compare samples within a group), got {args.group_size}")
    if args.prompts_per_step < 1:
        fail(f"--prompts-per-step must be >= 1, got {args.prompts_per_step}")
    if args.num_iterations < 1 or args.steps < 0 or args.max_new_tokens < 1 or args.micro_batch_tokens < 1 \
            or args.pad_multiple < 1 or args.gen_batch < 1:
        fail("--num-iterations, --max-new-tokens, --micro-batch-tokens, --pad-multiple, --gen-batch must be >= 1 "
             "and --steps >= 0")
    if not args.temperature > 0:
        fail(f"--temperature must be > 0 for sampling, got {args.temperature}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {args.device} but CUDA is not available")

    stem = os.path.splitext(args.out)[0]
    metrics_path = args.metrics or stem + ".jsonl"
    source = args.out if args.resume else args.init
    if args.resume and not os.path.exists(args.out):
        fail(f"--resume: no checkpoint at {args.out}")
    try:
        model, meta = load_checkpoint(source, args.device)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if args.resume and meta.get("stage") != "rl":
        fail(f"--resume: {args.out} is a {meta.get('stage')!r} checkpoint, not an RL run")
    # train with --attn-impl, but save the checkpoint's own setting (later stages pick their path)
    saved_impl, model.config.attn_impl = model.config.attn_impl, args.attn_impl
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    enc = load_tokenizer_for(meta)
    eos = enc.eot_token
    if enc.n_vocab > model.config.vocab_size:
        fail(f"tokenizer has {enc.n_vocab} ids but the model only {model.config.vocab_size}")
    knobs = data_knobs(meta)
    ref_model = None
    if args.beta > 0:   # the reference is the initial policy, frozen
        ref_model = load_checkpoint(args.init, args.device, attn_impl=args.attn_impl)[0] if args.resume \
            else copy.deepcopy(model)
        ref_model.requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=args.weight_decay)
    start = 0
    if args.resume:
        opt.load_state_dict(meta["optimizer"])
        set_rng_state(meta["rng"])
        start = int(meta["step"])
        forward = {k: v for k, v in meta.items() if k not in TRAIN_STATE}
        keep = []   # drop metric rows past the checkpoint: the resumed run rewrites them
        if os.path.exists(metrics_path):
            keep = [l for l in open(metrics_path) if l.strip() and json.loads(l).get("step", 0) <= start]
        with open(metrics_path, "w") as f:
            f.writelines(keep)
    else:
        forward = {k: v for k, v in meta.items() if k not in TRAIN_STATE}
        forward["init_stage"] = meta.get("stage")
        os.makedirs(os.path.dirname(os.path.abspath(metrics_path)), exist_ok=True)
        open(metrics_path, "w").close()
    val = make_problems(args.eval_n, split="val", seed=0, **knobs) if args.eval_every > 0 else []

    def log(row):
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def save(step):
        model.config.attn_impl = saved_impl
        save_checkpoint(args.out, model, **forward, stage="rl", step=step, optimizer=opt.state_dict(),
                        rng=rng_state(), args=vars(args), init=args.init)
        model.config.attn_impl = args.attn_impl

    def evaluate(step):
        t0 = time.time()
        n = min(args.max_new_tokens, model.config.max_seq_len - max(len(encode_prompt(enc, p["question"])) for p in val))
        r = evaluate_checkpoint(model, enc, val, greedy_only=True, max_new_tokens=n, batch_size=args.gen_batch, progress=False)
        row = {"step": step, "eval_acc": r["greedy_acc"], "eval_wf_frac": r["wf_frac"], "eval_len": r["len_mean"],
               "eval_trunc": r["trunc_rate"]}
        row["eval_time"] = round(time.time() - t0, 2)
        log(row)
        tqdm.write(f"step {step}: greedy val accuracy {row['eval_acc']:.3f} (n={len(val)}), "
                   f"wf {row['eval_wf_frac']:.2f}, len {row['eval_len']:.0f}")

    print(f"rl: {source} ({model.config.describe()}, {model.num_params() / 1e6:.1f}M params) on {args.device}, "
          f"steps {start}->{args.steps}, {args.prompts_per_step}x{args.group_size} rollouts/step, metrics {metrics_path}")
    if val and start == 0:
        evaluate(0)
    G = args.group_size
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="rl", dynamic_ncols=True)
    for step in bar:
        t0 = time.time()
        # ---- rollouts: B problems, G samples each, the model's own attention and cache
        problems = make_problems(args.prompts_per_step, split="train", seed=RL_SEED_BASE + args.seed * 1_000_000 + step,
                                 **knobs)
        prompts = [encode_prompt(enc, p["question"]) for p in problems for _ in range(G)]
        golds = [p["answer"] for p in problems for _ in range(G)]
        n_new = min(args.max_new_tokens, model.config.max_seq_len - max(map(len, prompts)))
        if n_new < 1:
            fail(f"prompts of {max(map(len, prompts))} tokens leave no room in max_seq_len={model.config.max_seq_len}")
        comps, sampler_logps = rollout(model, prompts, n_new, args.temperature, eos,
                                       seed=(args.seed * 1_000_003 + step) * 65_536, gen_batch=args.gen_batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_roll = time.time() - t0
        # ---- rewards and advantages
        judged = [judge(enc, c, g, eos) for c, g in zip(comps, golds)]
        correct = torch.tensor([float(j[0]) for j in judged])
        truncated = torch.tensor([j[1] for j in judged])
        rewards = correct.clone()
        if args.format_reward:
            formatted = torch.tensor([extract_answer(j[2]) is not None for j in judged])
            rewards += args.format_reward * (formatted & ~truncated).float()
        adv = group_advantages(rewards, G, args.scale_rewards)
        zero_std = (rewards.view(-1, G).std(1) == 0)
        keep = torch.ones(len(comps), dtype=torch.bool)
        if args.mask_truncated:
            keep &= ~truncated
        if args.drop_zero_std_groups:
            keep &= ~zero_std.repeat_interleave(G)
        ids = keep.nonzero()[:, 0].tolist()
        # ---- policy update
        t1 = time.time()
        lr = args.lr * min(1.0, (step + 1) / max(args.warmup_steps, 1))
        stats = {}
        if ids:
            stats = optimize(model, opt, [prompts[i] for i in ids], [comps[i] for i in ids], adv[ids], args,
                             ref_model, [sampler_logps[i] for i in ids], lr)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_train = time.time() - t1
        # ---- metrics
        lens = [len(c) for c in comps]
        styles = [solution_style(j[2]) for j in judged]
        n_rollout = sum(lens)
        n_train = sum(len(prompts[i]) + len(comps[i]) for i in ids) * args.num_iterations
        row = {"step": step + 1, "reward": rewards.mean().item(), "accuracy": correct.mean().item(),
               "zero_std_frac": zero_std.float().mean().item(), "len_mean": n_rollout / len(comps),
               "len_max": max(lens), "trunc_frac": truncated.float().mean().item(),
               "wf_frac": sum(s == "wf" for s in styles) / len(styles),
               "acc_wf": (sum(float(correct[i]) for i, s in enumerate(styles) if s == "wf") / max(1, styles.count("wf"))),
               "acc_sa": (sum(float(correct[i]) for i, s in enumerate(styles) if s == "sa") / max(1, styles.count("sa"))),
               "trained_seqs": len(ids), "lr": lr, **{k: round(v, 6) for k, v in stats.items()},
               "rollout_tok_s": round(n_rollout / max(t_roll, 1e-9), 1),
               "train_tok_s": round(n_train / max(t_train, 1e-9), 1),
               "step_time": round(time.time() - t0, 3)}
        if args.device.startswith("cuda"):   # the peak so far: the "fits a 24 GB GPU" claim, measured
            row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        log(row)
        bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['len_mean']:.0f}", wf=f"{row['wf_frac']:.2f}",
                        kl=f"{stats.get('kl_old', 0):.1e}", gn=f"{stats.get('grad_norm', 0):.2f}")
        done = step + 1
        if val and (done % args.eval_every == 0 or done == args.steps):
            evaluate(done)
        if (args.save_every > 0 and done % args.save_every == 0) or done == args.steps:
            save(done)
    if start >= args.steps:
        print(f"rl: {args.out} is already at step {start} >= --steps {args.steps}; nothing to do")
    if os.path.getsize(metrics_path):
        rl_curves(stem + ".svg", [metrics_path])
        print(f"rl: wrote {args.out}, {metrics_path}, {stem}.svg")


if __name__ == "__main__":
    main()
