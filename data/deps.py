"""
Dependency distance: how far back a step has to look for the numbers it uses.

For each operand of each step `a op b = c` (or a chain `a op b op c = d`) in the solution part of
a trace (after <|answer|> when present), the distance in tokens from the operand's first token
back to the first token of the most recent earlier occurrence of the same whole number (not a
piece of a longer number) anywhere earlier in the trace, prompt included. Operands that never
occur earlier (e.g. the 2 in "twice as many") are omitted. A distance d > W means that, under a
sliding window of W keys, the position predicting the operand's first digit (one before it)
cannot see the earlier occurrence.

Used by eval.py on the model's own traces, and by the data report of this file's CLI:

    python -m data.deps                       # 2000 train problems per style, seed 0, ~5 s
    python -m data.deps --n 500 --window 64   # the generator's knobs as in data/mathgen.py

Depends on: data.mathgen and data.tokenizer (the report's problems and their tokens), common (its CLI).
"""
import re

import numpy as np

from common import POSITIVE_INT, ArgumentParser
from data.mathgen import DEFAULT_KNOBS, SPLITS, STYLE_MARKERS, add_knob_args, knobs_of, make_problems
from data.tokenizer import encode_example, encode_prompt, load_tokenizer

# a whole number (decimals included): not preceded by a digit or "d.", not followed by a digit or ".d"
NUM = re.compile(rb"(?<!\d)(?<!\d\.)\d+(?:\.\d+)?(?!\d|\.\d)")
# an arithmetic chain `n op n [op n ...] = n`; x, × and ÷ are accepted for model-written text
STEP = re.compile(rb"(\d+(?:\.\d+)?(?:\s*(?:[-+*/x]|\xc3\x97|\xc3\xb7)\s*\d+(?:\.\d+)?)+)\s*=\s*\d")


def dependency_distances(tokens, enc):
    """list[int]: one distance per operand that occurs earlier in the trace (see module docstring)."""
    return [d for _, d in operand_positions(tokens, enc)]


def operand_positions(tokens, enc, every_number=False):
    """[(index of the operand's first token, distance)] for the operands of dependency_distances; with
    every_number, for every number of the solution that occurs earlier but a step's result (the copies
    a trace makes too, such as a window-friendly list restating the question)."""
    pieces = [enc.decode_single_token_bytes(t) for t in tokens]
    starts, pos = [], 0  # byte offset where each token starts
    for p in pieces:
        starts.append(pos); pos += len(p)
    text = b"".join(pieces)
    tok_at = [0] * (len(text) + 1)  # byte offset -> index of the token containing it
    for i, (s, p) in enumerate(zip(starts, pieces)):
        for j in range(s, s + len(p)): tok_at[j] = i
    answer = enc.encode_single_token("<|answer|>") if "<|answer|>" in enc.special_tokens_set else None
    sol_start = starts[tokens.index(answer)] if answer in tokens else 0
    nums = [(m.start(), m.group()) for m in NUM.finditer(text)]
    last_seen, out = {}, []
    # walk the numbers left to right, remembering where each value was last seen; an operand's
    # distance is taken before it updates last_seen, so "most recent earlier occurrence" holds
    operand_at = set()
    for m in STEP.finditer(text, sol_start):
        for n in NUM.finditer(m.group(1)):
            operand_at.add(m.start(1) + n.start())
    for start, val in nums:
        if every_number:   # a number after "=" is what a step computes, not a copy
            wanted = start >= sol_start and not text[max(0, start - 3):start].rstrip().endswith(b"=")
        else:
            wanted = start in operand_at
        if wanted and val in last_seen:
            out.append((tok_at[start], tok_at[start] - tok_at[last_seen[val]]))
        last_seen[val] = start
    return out


def far_fraction(distances, window):
    """Fraction of distances beyond the window (d > window); 0.0 for an empty list."""
    return sum(d > window for d in distances) / len(distances) if distances else 0.0


# ----------------------------------------------------------------------------- the data report

def _stats(xs):
    if not xs:
        return "n=0"
    a = np.asarray(xs)
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return f"mean {a.mean():6.1f}  p10 {p10:5.0f}  p50 {p50:5.0f}  p90 {p90:5.0f}  max {a.max():5d}"


def report(n=2000, seed=0, split="train", **knobs):
    """Print length and dependency-distance statistics, per style, in tokens of the default tokenizer."""
    enc = load_tokenizer()
    kn = {**DEFAULT_KNOBS, **knobs}
    W = kn["window"]
    shown = {k: v for k, v in kn.items() if k != "window_friendly_frac"}
    print(f"{n} problems per style, split={split}, seed={seed}, window={W}, knobs={shown}")
    for style, frac in (("sa", 0.0), ("wf", 1.0)):
        recs = make_problems(n, split=split, seed=seed, **{**knobs, "window_friendly_frac": frac})
        q_len, s_len, tot, dists, far_per = [], [], [], [], []
        for r in recs:
            ids, mask = encode_example(enc, r["question"], r["solution"])
            q_len.append(len(encode_prompt(enc, r["question"])))
            s_len.append(sum(mask))
            tot.append(len(ids))
            d = dependency_distances(ids, enc)
            dists += d
            far_per.append(far_fraction(d, W))
        print(f"\n[{style}]  {STYLE_MARKERS[style]!r}")
        print(f"  prompt tokens     {_stats(q_len)}")
        print(f"  solution tokens   {_stats(s_len)}")
        print(f"  total tokens      {_stats(tot)}")
        print(f"  step lines        {_stats([r['n_steps'] for r in recs])}")
        print(f"  operand distance  {_stats(dists)}")
        print(f"  operands beyond window (> {W} tokens back): {far_fraction(dists, W):.1%} "
              f"of {len(dists)}; traces with any: {sum(f > 0 for f in far_per) / len(recs):.1%}")


def main():
    ap = ArgumentParser(__doc__)
    ap.add_argument("--split", default="train", choices=SPLITS)
    ap.add_argument("--n", type=POSITIVE_INT, default=2000, help="problems per style")
    ap.add_argument("--seed", type=int, default=0)
    add_knob_args(ap)
    args = ap.parse_args()
    report(n=args.n, seed=args.seed, split=args.split, **knobs_of(args, "deps"))


if __name__ == "__main__":
    main()
