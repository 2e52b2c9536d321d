"""
Stage 2 of SWARR: adapt a (sliding-window) SFT checkpoint with on-policy GRPO on its own traces.

    python rl.py --init runs/default/sft_swa.pt --out runs/default/rl_swa.pt            # one GPU
    python rl.py --init runs/default/sft_swa.pt --out runs/default/rl_swa.pt --resume   # continue it
    python rl.py --init runs/tiny/sft_swa.pt --out runs/tiny/rl.pt --steps 3            # CPU smoke
    python rl.py --init sft.pt --out rl.pt --data ../shared/data/gsm8k/train.jsonl      # GSM8K-format prompts

One step of `run`'s loop is the whole algorithm, top to bottom:
  1. rollouts: B training prompts x G samples from the policy itself, with the checkpoint's own
     attention (`generate`, so SWA models decode through their ring-buffer cache);
  2. rewards: 1 if the sample is correct by the project's one rule (`eval.judge`: it stopped with
     the end token and its answer equals the gold one), else 0;
  3. group advantages: A_i = (r_i - mean of its group) / (std of its group + eps);
  4. per-token loss and backward, in token-sized micro-batches;
  5. clip the gradient's norm and take one AdamW step; then log one JSON line (reward, style mix,
     lengths, speeds), held-out greedy evaluations, and at the end an SVG of the curves.
Settings come from the presets table (the preset --init was made with); problems from the data
record of --init (the run's generator knobs), from a seed stream no other stage uses.

The loss is GRPO's (DeepSeekMath) clipped objective, with N the completion tokens of the batch:

    L = -(1/N) sum_i sum_t min(rho_it A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) A_i),
    rho_it = pi(o_it | q_i, o_i<t) / pi_old(o_it | q_i, o_i<t)

One optimizer step per batch (the default) is exactly on-policy: pi_old is the policy itself, so
rho = 1, the clip never bites, and the gradient of L is that of -(1/N) sum_i sum_t A_i log pi(o_it),
which is the loss the loop writes. Other choices, on purpose:
- N counts tokens over the whole batch (DAPO's token mean): every token weighs the same.
- No KL penalty, so no reference model is kept; no top-k/top-p at sampling: the trainer scores the
  same tempered distribution it samples from.
- The log-probs come from the trainer's forward pass, not the sampler's: on a GPU the sampler decodes
  token by token from a bf16 cache and the two differ by rounding. The gap is logged (`sampler_gap`);
  tests check that they agree on CPU in fp32 (full and sliding models, completions past the window).
- Truncated completions (no end token within --max-new-tokens) get reward 0 and stay in the loss.
- Learning rate: linear warmup, then constant (RL runs are stopped, not scheduled to an end).
- Sliding layers train on the `tiled` path (the same attention as `flex`, tested equal): RL batches
  come in ever-new shapes, for each of which compiled flex recompiles (H100: 4-8k training tokens/s
  against 160-290k with tiled, which on a GPU in bf16 is FlashAttention's sliding-window kernel).
The variants (several passes per batch with the ratio and its clip, a k3 KL term to the initial
policy, per-sequence or Dr. GRPO aggregation, no std scaling, a format bonus) are the flags of their
own group; `policy_loss` computes their loss, tested against hand-computed values.
"""
import copy
import os
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import dist
from checkpoint import (check_room, data_knobs, load, next_meta, resume, rng_state, save_checkpoint,
                        start_metrics)
from common import (COUNT, FINITE, FRACTION, NONNEG, POSITIVE, POSITIVE_INT, ArgumentParser, add_preset_arg,
                    apply_preset, claim_outputs, fail, pick_device, print_settings, release_outputs)
from data.gsm8k import load_gsm8k
from data.mathgen import make_problems, solution_style
from data.tokenizer import encode_prompt
from engine import generate
from eval import evaluate, extract_answer, judge, style_metrics
from plot import rl_curves
from pretrain import add_memory_args, apply_memory_args
from safety import stop_at_step_boundaries, stop_if_asked

RL_SEED_BASE = 7_000_000_000   # problem seeds of RL prompts: far from pretrain/SFT's seed * 1_000_003 + k


def get_args(argv=None):
    p = ArgumentParser(__doc__, sections="rl")
    g = p.add_argument_group("run")
    g.add_argument("--init", required=True, help="checkpoint to start from (an SFT checkpoint)")
    g.add_argument("--out", default="runs/rl.pt", help="checkpoint, written every --save-every steps and at the end")
    g.add_argument("--metrics", default=None, help="JSON-lines metrics (default: next to --out, .jsonl)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved at --out (none there: start fresh; finished: do nothing)")
    add_preset_arg(g)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    g.add_argument("--attn-impl", default="tiled", choices=["tiled", "dense", "flex", "auto"],
                   help="path for sliding layers (all compute the same attention): tiled trains ~30x faster "
                        "than flex here, whose static-shape compile recompiles for every new micro-batch shape")
    g.add_argument("--seed", type=int, default=0, help="seeds the prompts and the sampling of every step")
    g.add_argument("--data", help="draw the prompts from this GSM8K-format JSONL ({question, answer: '... #### N'}) "
                                  "instead of generated problems; held-out evaluations are then off (use eval.py)")
    g = p.add_argument_group("rollouts")
    g.add_argument("--steps", type=POSITIVE_INT, help="total optimizer steps (including resumed ones)")
    g.add_argument("--prompts-per-step", type=POSITIVE_INT, help="B: problems per step")
    g.add_argument("--group-size", type=int, help="G: samples per problem; at accuracy 0.5 only 1%% of "
                                                 "groups of 8 have no reward variance (0.5^8 x 2)")
    g.add_argument("--max-new-tokens", type=POSITIVE_INT, help="longest completion; longer ones are cut off and wrong")
    g.add_argument("--temperature", type=POSITIVE, default=1.0, help="sample from the policy itself")
    g.add_argument("--gen-batch", type=POSITIVE_INT, default=256, help="rows per generate call (KV cache is small)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=POSITIVE, help="AdamW learning rate after warmup")
    g.add_argument("--warmup-steps", type=COUNT, default=5)
    g.add_argument("--weight-decay", type=NONNEG, default=0.0, help="0: nothing pulls weights away from the SFT policy")
    g.add_argument("--grad-clip", type=POSITIVE, default=1.0)
    g.add_argument("--micro-batch-tokens", type=POSITIVE_INT, default=32768,
                   help="padded tokens per forward/backward; the default model peaks at ~7.5 GB (H100)")
    g.add_argument("--pad-multiple", type=POSITIVE_INT, default=64,
                   help="pad sequence lengths to a multiple: few distinct shapes for the compiled attention")
    g = p.add_argument_group("evaluation and saving")
    g.add_argument("--eval-every", type=COUNT, help="greedy held-out accuracy every N steps (0: never)")
    g.add_argument("--eval-n", type=POSITIVE_INT, help="held-out (val split) problems per evaluation")
    g.add_argument("--save-every", type=COUNT, default=25, help="checkpoint every N steps (0: only at the end)")
    g = p.add_argument_group("GRPO variants (the defaults are the on-policy path of the docstring)")
    g.add_argument("--num-iterations", type=POSITIVE_INT, default=1,
                   help="mu: passes over each batch, one step each (1 = on-policy: the ratio is 1)")
    g.add_argument("--clip-low", type=FRACTION, default=0.2, help="PPO's epsilon below 1 (bites only with mu > 1)")
    g.add_argument("--clip-high", type=NONNEG, default=0.28, help="DAPO's clip-higher: room for rare tokens to grow")
    g.add_argument("--beta", type=NONNEG, default=0.0, help="k3 KL to the initial policy; 0 keeps no reference model")
    g.add_argument("--loss-type", default="dapo", choices=["grpo", "dapo", "dr_grpo"],
                   help="dapo: every token weighs the same; grpo: every sequence; "
                        "dr_grpo: sum / (N x max_new_tokens)")
    g.add_argument("--scale-rewards", default="group", choices=["group", "none"],
                   help="group: divide by the group's std (textbook GRPO); none: Dr. GRPO")
    g.add_argument("--format-reward", type=FINITE, default=0.0,
                   help="bonus for stopping with an extractable answer (off: correctness is the goal)")
    add_memory_args(p, micro_batch=False)   # --micro-batch-tokens above splits the batch
    return p.parse_args(argv)


def check_args(args):
    for name, low in (("group_size", 2), ("prompts_per_step", 1), ("num_iterations", 1), ("steps", 1),
                      ("max_new_tokens", 1), ("micro_batch_tokens", 1), ("pad_multiple", 1), ("gen_batch", 1),
                      ("eval_n", 1), ("eval_every", 0), ("save_every", 0)):
        if getattr(args, name) < low:
            why = " (advantages compare samples within a group)" if name == "group_size" else ""
            fail(f"--{name.replace('_', '-')} must be >= {low}{why}, got {getattr(args, name)}")
    if not args.temperature > 0:
        fail(f"--temperature must be > 0 for sampling, got {args.temperature}")
    if not args.lr > 0:
        fail(f"--lr must be positive, got {args.lr}")
    args.device = pick_device(args.device)
    if args.prompts_per_step % dist.world():   # DISTRIBUTED: each rank takes whole groups, as many as the others
        fail(f"--prompts-per-step {args.prompts_per_step} cannot be split evenly over {dist.world()} processes")
    args.metrics = args.metrics or os.path.splitext(args.out)[0] + ".jsonl"
    if dist.is_main():   # DISTRIBUTED: rank 0 alone writes
        claim_outputs([args.out, args.metrics, os.path.splitext(args.out)[0] + ".svg"], [args.init, args.data])
    return args


def read_problems(path):
    """GSM8K-format problems of --data, one line and exit 1 if it cannot be read."""
    try:
        rows = load_gsm8k(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        fail(f"--data: cannot read {path} ({str(e).splitlines()[0]})")
    if not rows:
        fail(f"--data: no problems in {path}")
    return rows


def step_problems(args, knobs, step, data=None):
    """The B training problems of a step (generated, or drawn from --data): a pure function of (seed, step),
    like its samples."""
    step_seed = RL_SEED_BASE + args.seed * 1_000_000 + step
    if data:
        return random.Random(step_seed).sample(data, min(args.prompts_per_step, len(data)))
    return make_problems(args.prompts_per_step, split="train", seed=step_seed, **knobs)


def rollout(model, prompts, max_new_tokens, temperature, eos_id, seed, gen_batch):
    """Samples one completion per prompt (prompts already repeated G times), in chunks."""
    comps, logps = [], []
    for i in range(0, len(prompts), gen_batch):
        c, lp = generate(model, prompts[i:i + gen_batch], max_new_tokens, temperature=temperature,
                         eos_id=eos_id, seed=seed + i)
        comps += c
        logps += lp
    return comps, logps


def group_advantages(rewards, group_size, scale="group", eps=1e-6):
    """rewards (N,) in consecutive groups of group_size -> advantages (N,).
    "group": (r - mean) / (std + eps); "none": r - mean. A constant group gives exactly 0."""
    r = torch.as_tensor(rewards, dtype=torch.float32).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        # population std: finite for any G >= 1
        centred = centred / (r.std(dim=1, keepdim=True, unbiased=False) + eps)
    elif scale != "none":
        raise ValueError(f"scale must be 'group' or 'none', got {scale!r}")
    return centred.view(-1)

# ----------------------------------------------------------------------------------------------
# batches of (prompt, completion) and their token log-probs: what the tests and the loop share


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


def make_batch(prompts, completions, pad_multiple=1, max_seq_len=None):
    """Right-padded prompt+completion ids (B, T) and the completion mask (B, T-1), where column t
    scores token t+1; each row starts at position 0 as in `generate`, so positions match."""
    lens = [len(p) + len(c) for p, c in zip(prompts, completions)]
    T_in = -(-(max(lens) - 1) // pad_multiple) * pad_multiple      # model input length, padded
    if max_seq_len is not None:
        T_in = min(T_in, max_seq_len)
    idx = torch.tensor([p + c + [0] * (T_in + 1 - n) for p, c, n in zip(prompts, completions, lens)])
    start = torch.tensor([len(p) - 1 for p in prompts])[:, None]
    col = torch.arange(T_in)
    mask = (col >= start) & (col < torch.tensor(lens)[:, None] - 1)
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

# ----------------------------------------------------------------------------------------------
# the variants' loss (--num-iterations > 1, --beta, --loss-type) and the ratio's statistics


def ratio_stats(logp, old_logp, adv, mask, clip_low=0.2, clip_high=0.28):
    """Token means of what the ratio did: the share of tokens the clip stopped, on the side their
    advantage pushes towards (where it kills the gradient), k3 of old w.r.t. new (>= 0), the ratio."""
    with torch.no_grad():
        mask = mask.to(logp.dtype)
        log_ratio = torch.where(mask.bool(), logp - old_logp, 0.0)
        ratio = torch.exp(log_ratio)
        A = adv.to(logp.dtype)[:, None]
        mean = lambda x: (x * mask).sum() / mask.sum().clamp(min=1)
        return {"clip_low": mean(((ratio < 1 - clip_low) & (A < 0)).to(mask.dtype)),
                "clip_high": mean(((ratio > 1 + clip_high) & (A > 0)).to(mask.dtype)),
                "kl_old": mean(torch.exp(-log_ratio) + log_ratio - 1),
                "ratio": mean(ratio)}


def policy_loss(logp, old_logp, adv, mask, clip_low=0.2, clip_high=0.28, ref_logp=None, beta=0.0,
                loss_type="dapo"):
    """The clipped surrogate + beta * k3, aggregated over valid tokens. logp/old_logp/ref_logp/mask
    (B, T), adv (B,). Returns (loss, stats) with stats as detached scalar tensors."""
    valid = mask.bool()
    mask = mask.to(logp.dtype)
    # masked positions (padding, prompt) may hold anything: zero them so no inf/NaN can leak through
    ratio = torch.exp(torch.where(valid, logp - old_logp, 0.0))
    A = adv.to(logp.dtype)[:, None]
    per_token = -torch.minimum(ratio * A, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * A)
    stats = ratio_stats(logp, old_logp, adv, mask, clip_low, clip_high)
    if ref_logp is not None:
        d = torch.where(valid, ref_logp - logp, 0.0)
        k3 = torch.exp(d) - d - 1
        stats["kl_ref"] = ((k3 * mask).sum() / mask.sum().clamp(min=1)).detach()
        if beta:
            per_token = per_token + beta * k3
    if loss_type == "dapo":      # every valid token in the batch weighs the same
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    elif loss_type == "grpo":    # every sequence weighs the same, tokens within it share its weight
        seq_len = mask.sum(1)
        has = seq_len > 0
        seq_mean = (per_token * mask).sum(1) / seq_len.clamp(min=1)
        loss = (seq_mean * has).sum() / has.sum().clamp(min=1)
    elif loss_type == "dr_grpo":  # a constant normaliser: no length bias at all
        loss = (per_token * mask).sum() / (mask.shape[0] * mask.shape[1])
    else:
        raise ValueError(f"loss_type must be grpo, dapo or dr_grpo, got {loss_type!r}")
    return loss, stats


def loss_weight(loss_type, mask, n_seqs, n_tokens, max_len):
    """Factor that turns policy_loss on one micro-batch into its share of the whole batch's loss,
    so accumulating micro-batches gives exactly the loss of the batch (checked in the tests)."""
    if loss_type == "dapo":
        return float(mask.sum()) / n_tokens
    if loss_type == "grpo":
        return float((mask.sum(1) > 0).sum()) / n_seqs
    return mask.shape[0] * mask.shape[1] / (n_seqs * max_len)   # dr_grpo: sum / (N * max_new_tokens)


def fixed_logprobs(model, batches, temperature, autocast):
    """No-grad log-probs of every micro-batch under `model`, kept for all passes of a step (variants:
    the old policy of --num-iterations > 1, the reference of --beta)."""
    device = next(model.parameters()).device
    with torch.no_grad(), autocast():
        return [token_logprobs(model, idx.to(device), temperature)[0] for _, idx, _ in batches]


def sample_metrics(judged, rewards, G):
    """What the samples of one step say: reward, accuracy, style mix and the accuracy of each style."""
    correct = [j[0] for j in judged]
    return {"reward": rewards.mean().item(), "accuracy": sum(correct) / len(correct),
            "zero_std_frac": (rewards.view(-1, G).std(1) == 0).float().mean().item(),
            "trunc_frac": sum(not j[1] for j in judged) / len(judged),
            **style_metrics([solution_style(j[2]) for j in judged], correct)}

# ----------------------------------------------------------------------------------------------


def main(argv=None):
    try:
        run(argv)
    finally:
        release_outputs()   # called in-process (tests): the outputs are free once it returns or raises


def run(argv=None):
    dist.init()   # under torchrun: join the other ranks (dist.py); nothing on one process
    args = get_args(argv)
    model, enc, init_meta = load(args.init, pick_device(args.device), attn_impl=args.attn_impl)
    args = check_args(apply_preset(args, "rl", init_meta))
    print_settings("rl", args)
    knobs = data_knobs(init_meta)
    meta = next_meta(init_meta, "rl", init=args.init, seed=args.seed, lr=args.lr,
                     prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                     **({"data_file": args.data} if args.data else {}))   # the default record stays as it was
    eos, G, msl = enc.eot_token, args.group_size, model.config.max_seq_len
    device, cuda = torch.device(args.device), args.device.startswith("cuda")
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    torch.manual_seed(args.seed)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        # SDPA's cuDNN backend builds a plan for every new shape, and RL brings new ones at every step (prompt
        # lengths, the growing cache, micro-batches): an H100 ran SA steps in 1.4 s with it, 1.0 s without
        torch.backends.cuda.enable_cudnn_sdp(False)
    model = apply_memory_args(model, args)
    variant = args.num_iterations > 1 or args.beta > 0 or args.loss_type != "dapo"
    # variant: the initial policy, frozen, as the reference of the KL term
    ref_model = copy.deepcopy(model).requires_grad_(False).eval() if args.beta > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=args.weight_decay)
    start = resume(args, meta, model, opt)
    svg = os.path.splitext(args.out)[0] + ".svg"
    data = read_problems(args.data) if args.data else None
    val = make_problems(args.eval_n, split="val", seed=0, **knobs) if args.eval_every and not data else []
    check_room(args.init, msl, enc, val + step_problems(args, knobs, start, data))
    log = start_metrics(args.metrics, start)
    stop_at_step_boundaries()   # SIGTERM or Ctrl-C: the step under way ends, then a save and exit (safety.py)

    def held_out(step):   # greedy accuracy on val problems, through eval.evaluate
        t0 = time.time()
        n = min(args.max_new_tokens, msl - max(len(encode_prompt(enc, p["question"])) for p in val))
        r = evaluate(model, enc, val, greedy_only=True, max_new_tokens=n, batch_size=args.gen_batch,
                     ref_window=knobs["window"], progress=False)
        log({"step": step, "eval_acc": r["greedy_acc"], "eval_wf_frac": r["wf_frac"], "eval_len": r["len_mean"],
             "eval_trunc": r["trunc_rate"], "eval_dep_far": r["dep_far"],
             "eval_time": round(time.time() - t0, 2)})
        tqdm.write(f"step {step}: greedy val accuracy {r['greedy_acc']:.3f} (n={len(val)}), "
                   f"wf {r['wf_frac']:.2f}, len {r['len_mean']:.0f}")

    def save(step):
        done = step == args.steps
        train_state = None if done else {"step": step, "optimizer": opt.state_dict(), "rng": rng_state()}
        save_checkpoint(args.out, model, **meta, step=step, train_state=train_state)

    print(f"rl: {args.init} ({model.config.describe()}, {model.num_params() / 1e6:.1f}M params) on {args.device}, "
          f"steps {start}->{args.steps}, {args.prompts_per_step}x{G} rollouts/step, metrics {args.metrics}")
    if val and start == 0:
        held_out(0)
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="rl", dynamic_ncols=True)
    for step in bar:
        t0 = time.time()
        # 1. rollouts: B problems, G samples each, from the policy with its own attention and cache
        problems = step_problems(args, knobs, step, data)
        check_room(args.init, msl, enc, problems)
        n_new = min(args.max_new_tokens, msl - max(len(encode_prompt(enc, p["question"])) for p in problems))
        mine = dist.share(len(problems))   # DISTRIBUTED: this rank's problems, whole groups (all on one process)
        problems = problems[mine]
        prompts = [encode_prompt(enc, p["question"]) for p in problems for _ in range(G)]
        # a generate chunk is seeded by its first row's place in the step's rollouts, on any number of ranks
        comps, sampler_logps = rollout(model, prompts, n_new, args.temperature, eos, gen_batch=args.gen_batch,
                                       seed=(args.seed * 1_000_003 + step) * 65_536 + mine.start * G)
        if cuda:
            torch.cuda.synchronize()
        t_roll, t1 = time.time() - t0, time.time()

        # 2. rewards: 1 if correct by the one rule (eval.judge), else 0
        judged = [judge(enc, c, p["answer"]) for c, p in zip(comps, (p for p in problems for _ in range(G)))]
        rewards = torch.tensor([float(j[0]) for j in judged])
        if args.format_reward:   # variant: a bonus for stopping with an extractable answer
            rewards += args.format_reward * torch.tensor([j[1] and extract_answer(j[2]) is not None for j in judged])

        # 3. group advantages: A_i = (r_i - mean(r of its group)) / (std(r of its group) + eps)
        adv = group_advantages(rewards, G, args.scale_rewards).to(device)

        # 4. per-token loss and backward, micro-batch by micro-batch: L = -(1/N) sum_i sum_t A_i log pi(o_it)
        lr = args.lr * min(1.0, (step + 1) / max(args.warmup_steps, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        n_tokens = dist.sum(sum(map(len, comps)))   # N, over the global batch (DISTRIBUTED: all ranks')
        n_seqs = dist.sum(len(comps))
        batches = [(rows, *make_batch([prompts[i] for i in rows], [comps[i] for i in rows], args.pad_multiple, msl))
                   for rows in microbatches([len(p) + len(c) for p, c in zip(prompts, comps)],
                                            args.micro_batch_tokens, args.pad_multiple)]
        olds = fixed_logprobs(model, batches, args.temperature, autocast) if args.num_iterations > 1 else None
        refs = fixed_logprobs(ref_model, batches, args.temperature, autocast) if ref_model else None
        sums, entropy, gap, grad_norms = {}, 0.0, 0.0, []
        for it in range(args.num_iterations):   # one pass, one step: on-policy (variant: more passes)
            opt.zero_grad(set_to_none=True)
            for k, (rows, idx, mask) in enumerate(batches):
                idx, mask = idx.to(device), mask.to(device).float()
                with autocast():
                    logp, ent = token_logprobs(model, idx, args.temperature, with_entropy=it == 0)
                old = olds[k] if olds else logp.detach()   # pi_old: on-policy the policy itself (ratio 1)
                if not variant:
                    per_token = -adv[rows, None] * logp              # -A_i log pi(o_it)
                    loss = (per_token * mask).sum() / mask.sum()     # the mean over this micro-batch's tokens,
                    weight = float(mask.sum()) / n_tokens            # times its share of the batch's N tokens
                    stats = ratio_stats(logp, old, adv[rows], mask, args.clip_low, args.clip_high)
                else:   # the variants: the clipped ratio, the KL term, other aggregations
                    loss, stats = policy_loss(logp, old, adv[rows], mask, args.clip_low, args.clip_high,
                                              refs[k] if refs else None, args.beta, args.loss_type)
                    weight = loss_weight(args.loss_type, mask, n_seqs, n_tokens, args.max_new_tokens)
                (loss * weight).backward()
                for key, v in stats.items():
                    sums[key] = sums.get(key, 0.0) + v * mask.sum()
                if it == 0:   # the policy's entropy, and how far the sampler's log-probs are from the trainer's
                    entropy += (ent * mask).sum()
                    s = torch.zeros(logp.shape)
                    s[mask.bool().cpu()] = torch.tensor([x for i in rows for x in sampler_logps[i]])   # rows in order
                    gap += ((logp.detach() - s.to(device)).abs() * mask).sum()

            # 5. clip the gradient's norm, one AdamW step
            dist.sum_gradients(model)   # DISTRIBUTED: each rank's gradient is its share of the global loss's
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)))
            opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        t_train = time.time() - t1

        # log, evaluate, save (DISTRIBUTED: what all ranks sampled and summed, for the row rank 0 writes)
        judged, rewards, lens = dist.concat(judged), dist.concat(rewards), dist.concat([len(c) for c in comps])
        sums, entropy, gap = {k: dist.sum(v) for k, v in sums.items()}, dist.sum(entropy), dist.sum(gap)
        stats = {**{k: float(v) / (n_tokens * args.num_iterations) for k, v in sums.items()},
                 "entropy": float(entropy) / n_tokens, "grad_norm": sum(grad_norms) / args.num_iterations,
                 "sampler_gap": float(gap) / n_tokens}
        row = {"step": step + 1, **sample_metrics(judged, rewards, G), "len_mean": sum(lens) / len(lens),
               "len_max": max(lens), "trained_seqs": n_seqs, "lr": lr,
               **{k: round(v, 6) for k, v in stats.items()},
               "rollout_tok_s": round(sum(lens) / max(t_roll, 1e-9), 1),
               "train_tok_s": round((n_tokens + dist.sum(sum(map(len, prompts)))) * args.num_iterations
                                    / max(t_train, 1e-9), 1),
               "step_time": round(time.time() - t0, 3)}
        if cuda:   # the peak so far: the "fits a 24 GB GPU" claim, measured
            row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        log(row)
        bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['len_mean']:.0f}", wf=f"{row['wf_frac']:.2f}",
                        gn=f"{stats['grad_norm']:.2f}")
        done = step + 1
        if val and (done % args.eval_every == 0 or done == args.steps):
            held_out(done)
        if done == args.steps and dist.is_main():   # the curves before the run is marked finished: a kill
            rl_curves(svg, [args.metrics])                  # between redoes both (DISTRIBUTED: rank 0 writes)
        if (args.save_every and done % args.save_every == 0) or done == args.steps:
            save(done)
        if done < args.steps:
            stop_if_asked(lambda: save(done), args.out, done, dist.largest)
    # a signal after the last step: the run is finished and saved, only the line and the exit status are left
    stop_if_asked(None, args.out, args.steps, dist.largest)
    print(f"rl: wrote {args.out}, {args.metrics}, {svg}")


if __name__ == "__main__":
    main()
