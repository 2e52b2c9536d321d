"""
Stage 1b: supervised fine-tuning on question -> worked solution, prompt masked out of the loss.
The checkpoint keeps its own attention: an SA base stays SA, a converted SWA model stays SWA.

    python sft.py --init runs/default/base.pt --out runs/default/sft_sa.pt
    python sft.py --init runs/default/swa.pt  --out runs/default/sft_swa.pt   # same data and settings
    python sft.py --init runs/default/swa.pt  --out wf_only.pt --window-friendly-frac 1   # data for the window
    python sft.py --init runs/default/swa.pt  --out distilled.pt --data samples.jsonl     # a file of solutions
    python sft.py --init swa.pt --out sft.pt --data ../shared/data/gsm8k/train.jsonl     # GSM8K-format

Settings come from the presets table (the preset --init was made with) and the data record of
--init (the generator knobs, the window among them), never from the attention of --init, so SA
and SWA are fine-tuned identically unless you say otherwise. The loop is pretrain.py's train().

Padding, not packing: each row is one example, right-padded to a fixed length. Packed rows would
let full attention read the previous example, which generation never sees; the examples are of
similar length, so padding wastes little, and a fixed length keeps torch.compile to one graph.
"""
import json
import time

import torch

import dist
from checkpoint import check_resume, check_room, data_knobs, load, next_meta
from common import (FRACTION, POSITIVE_INT, ArgumentParser, add_preset_arg, apply_preset, fail, print_settings,
                    read_jsonl)
from data.gsm8k import load_gsm8k
from data.tokenizer import encode_example
from eval import evaluate
from pretrain import add_train_args, batch_at, check_train_args, evaluate_loss, generate_problems, train

DATA_SEED_OFFSET = 1000   # SFT problems come from a seed stream pretraining does not use


def sft_rows(enc, problems, max_len):
    """(x, y, mask) right-padded to one fixed length; mask is 1 where y is a solution or end token."""
    examples = [encode_example(enc, r["question"], r["solution"]) for r in problems]
    examples = [e for e in examples if len(e[0]) <= max_len + 1]
    if not examples:
        raise ValueError(f"max_seq_len={max_len} is too short for this task: no example (prompt and solution) fits")
    T = min(max_len, 64 * -(-max(len(ids) - 1 for ids, _ in examples) // 64))
    x = torch.zeros(len(examples), T, dtype=torch.long)
    y = torch.zeros_like(x)
    m = torch.zeros(len(examples), T, dtype=torch.bool)
    for i, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        y[i, :n] = torch.tensor(ids[1:])
        m[i, :n] = torch.tensor(mask[1:], dtype=torch.bool)
    return x, y, m


def read_solutions(path):
    """A JSONL file of {"question", "solution"} records (distill.py writes them), or GSM8K's
    {"question", "answer": "... #### N"} (data/gsm8k.py: the worked answer is the solution)."""
    rows = read_jsonl(path, "--data")
    if "solution" not in rows[0] and "answer" in rows[0]:
        try:
            return load_gsm8k(path)
        except ValueError as e:
            fail(f"--data: {str(e).splitlines()[0]}")
    bad = [n for n, r in enumerate(rows, 1) if not {"question", "solution"} <= set(r)]
    if bad:
        fail(f"--data: {path}: record {bad[0]}: expected a JSON object with question, solution")
    return rows


def greedy_accuracy(model, enc, problems):
    """Greedy accuracy through eval.py (its one rule for "correct", its generation settings)."""
    return evaluate(model, enc, problems, greedy_only=True, batch_size=256, progress=False)["greedy_acc"]


def main():
    dist.init()   # under torchrun: join the other ranks (dist.py); nothing on one process
    ap = ArgumentParser(__doc__, sections="sft")
    g = ap.add_argument_group("model and data")
    g.add_argument("--init", required=True, help="checkpoint to fine-tune (pretrain.py or convert.py output)")
    add_preset_arg(g)
    g.add_argument("--n-train", type=POSITIVE_INT, help="generated training problems")
    g.add_argument("--n-val", type=POSITIVE_INT, help="held-out problems for loss and greedy accuracy")
    g.add_argument("--window-friendly-frac", type=FRACTION,
                   help="share of window-friendly solutions (default: as --init was trained)")
    g.add_argument("--data", help="train on this JSONL of question/solution (or GSM8K question/answer) records instead of "
                        "generated ones")
    add_train_args(ap)
    args = ap.parse_args()
    model, enc, init_meta = load(args.init)
    args = check_train_args(apply_preset(args, "sft", init_meta), inputs=(args.init, args.data))
    print_settings("sft", args)
    torch.manual_seed(args.seed)
    knobs = data_knobs(init_meta)
    if args.window_friendly_frac is not None:
        knobs["window_friendly_frac"] = args.window_friendly_frac
    problems = read_solutions(args.data) if args.data else None
    meta = next_meta({**init_meta, "preset": args.preset, "data": knobs}, "sft", init=args.init,
                     data_file=args.data, n_train=len(problems) if args.data else args.n_train,
                     seed=args.seed + DATA_SEED_OFFSET, steps=args.steps, lr=args.lr)
    check_resume(args, meta, model.config)   # a finished run, or one of other settings, says so before the data
    if not args.data:
        problems = generate_problems(args.n_train, "train", args.seed + DATA_SEED_OFFSET, knobs)
    val_problems = generate_problems(args.n_val, "val", args.seed, knobs)
    check_room(args.init, model.config.max_seq_len, enc, val_problems)   # the greedy check generates
    try:
        rows = sft_rows(enc, problems, model.config.max_seq_len)
        val = sft_rows(enc, val_problems, model.config.max_seq_len)
    except ValueError as e:
        fail(f"{args.init}: {e}")
    val_batches = [tuple(t[i:i + args.batch_size] for t in val)
                   for i in range(0, val[0].shape[0], args.batch_size)]
    print(f"data: {rows[0].shape[0]} examples padded to {rows[0].shape[1]} tokens "
          f"({rows[2].float().mean():.0%} of positions in the loss); model: {model.config.describe()}")
    t0 = time.time()

    def final(last):   # the closing row: written before the checkpoint is marked finished
        return {**last, "stage": "sft_final", "step": args.steps, "wall_s": round(time.time() - t0, 1),
                "attention": model.config.describe(),
                "val_loss": round(evaluate_loss(model, val_batches, args.device), 5),
                "val_greedy_acc": greedy_accuracy(model, enc, val_problems), "n_val": len(val_problems),
                "out": args.out}
    batches = lambda s: batch_at(rows, s, args.batch_size, args.seed)
    print(json.dumps(train(model, batches, val_batches, args, meta, final)))


if __name__ == "__main__":
    main()
