"""
Stage 1b: supervised fine-tuning on question -> worked solution, prompt masked out of the loss.
The checkpoint keeps its own attention: an SA base stays SA, a converted SWA model stays SWA.

    python sft.py --init runs/default/base.pt --out runs/default/sft_sa.pt
    python sft.py --init runs/default/swa.pt  --out runs/default/sft_swa.pt   # same data and settings

Defaults (data, steps, hyperparameters, seed) do not depend on the checkpoint, so SA and SWA are
fine-tuned identically unless you say otherwise. The loop is pretrain.py's train().

Padding, not packing: each row is one example, right-padded to a fixed length. Packed rows would
let full attention read the previous example, which generation never sees; the examples are of
similar length (~500 tokens, p99 ~800), so padding wastes little, and a fixed length keeps
torch.compile to one graph.
"""
import json
import time

import torch

from cli import ArgumentParser
from data.mathgen import DEFAULT_KNOBS
from data.tokenizer import encode_example, load_tokenizer
from eval import evaluate
from pretrain import add_train_args, batch_at, evaluate_loss, generate_problems, load_model, resolve_args, train

PRESETS = {   # the same for SA and SWA (presets as in pretrain.py)
    "smoke": dict(steps=2, batch_size=2, lr=1e-3, warmup=1, n_train=10, n_val=4, eval_every=0),
    "tiny": dict(steps=20, batch_size=8, lr=1e-3, warmup=5, n_train=400, n_val=16, eval_every=0),
    "default": dict(steps=200, batch_size=64, lr=5e-4, warmup=20, n_train=15000, n_val=256, eval_every=100),
}
DATA_SEED_OFFSET = 1000   # SFT problems come from a seed stream pretraining does not use


def sft_rows(enc, problems, max_len):
    """(x, y, mask) right-padded to one fixed length; mask is 1 where y is a solution or end token."""
    examples = [encode_example(enc, r["question"], r["solution"]) for r in problems]
    examples = [e for e in examples if len(e[0]) <= max_len + 1]
    if not examples:
        raise ValueError(f"no example fits in {max_len} tokens")
    T = min(max_len, 64 * -(-max(len(ids) - 1 for ids, _ in examples) // 64))
    x = torch.zeros(len(examples), T, dtype=torch.long)
    y = torch.zeros_like(x)
    m = torch.zeros(len(examples), T, dtype=torch.bool)
    for i, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n], y[i, :n], m[i, :n] = torch.tensor(ids[:-1]), torch.tensor(ids[1:]), torch.tensor(mask[1:], dtype=torch.bool)
    return x, y, m


def greedy_accuracy(model, enc, problems):
    """Greedy accuracy through eval.py (its grader, its generation settings)."""
    return evaluate(model, enc, problems, greedy_only=True, batch_size=256, progress=False)["greedy_acc"]


def main():
    ap = ArgumentParser(__doc__)
    g = ap.add_argument_group("model and data")
    g.add_argument("--init", required=True, help="checkpoint to fine-tune (pretrain.py or convert.py output)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="default" if torch.cuda.is_available() else "tiny")
    g.add_argument("--n-train", type=int, help="generated training problems")
    g.add_argument("--n-val", type=int, help="held-out problems for loss and greedy accuracy")
    g.add_argument("--window-friendly-frac", type=float, help="share of window-friendly solutions (default: as --init was trained)")
    add_train_args(ap)
    args = ap.parse_args()
    args = resolve_args(args, PRESETS[args.preset])
    torch.manual_seed(args.seed)
    enc = load_tokenizer()
    model, init_meta = load_model(args.init, enc)
    # the problems --init was trained on (pretrain.py's data knobs), unless told otherwise
    knobs = {k: v for k, v in init_meta.get("data", {}).items() if k in DEFAULT_KNOBS}
    if args.window_friendly_frac is not None:
        knobs["window_friendly_frac"] = args.window_friendly_frac
    rows = sft_rows(enc, generate_problems(args.n_train, "train", args.seed + DATA_SEED_OFFSET, knobs), model.config.max_seq_len)
    val_problems = generate_problems(args.n_val, "val", args.seed, knobs)
    val = sft_rows(enc, val_problems, model.config.max_seq_len)
    val_batches = [tuple(t[i:i + args.batch_size] for t in val) for i in range(0, val[0].shape[0], args.batch_size)]
    print(f"data: {rows[0].shape[0]} examples padded to {rows[0].shape[1]} tokens "
          f"({rows[2].float().mean():.0%} of positions in the loss); model: {model.config.describe()}")
    meta = {**{k: v for k, v in init_meta.items() if k not in ("train_state", "step")},
            "stage": "sft", "init": args.init,
            "sft_data": {"generator": "mathgen", **knobs, "n_train": args.n_train, "seed": args.seed + DATA_SEED_OFFSET}}
    t0 = time.time()
    last = train(model, lambda s: batch_at(rows, s, args.batch_size, args.seed), val_batches, args, meta)
    result = {**last, "wall_s": round(time.time() - t0, 1), "attention": model.config.describe(),
              "val_loss": round(evaluate_loss(model, val_batches, args.device), 5),
              "val_greedy_acc": greedy_accuracy(model, enc, val_problems), "n_val": len(val_problems), "out": args.out}
    with open(args.metrics, "a") as f:
        f.write(json.dumps({**result, "stage": "sft_final"}) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
