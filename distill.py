"""
Control experiment: the off-policy alternative to RL. Sample solutions from a checkpoint (the SA
model) on training problems and keep the correct ones, as SFT data for another model (the SWA one).

    python distill.py --ckpt runs/default/sft_sa.pt --n 4000 --out runs/default/sa_samples.jsonl
    python sft.py --init runs/default/sft_swa.pt --data runs/default/sa_samples.jsonl --out distilled.pt

"Correct" is the project's one rule (eval.judge). The problems come from the checkpoint's data
record, from a seed stream that pretraining, SFT and RL do not use; one sample per problem at
temperature 1, the same distribution RL samples from.
"""
import json
import sys

import torch

from checkpoint import data_knobs, load
from common import (POSITIVE, POSITIVE_INT, ArgumentParser, claim_outputs, fail, pick_device, print_settings,
                    write_atomic)
from data.mathgen import make_problems, solution_style
from data.tokenizer import encode_prompt
from eval import judge
from rl import rollout

DISTILL_SEED_BASE = 9_000_000_000   # far from pretrain/SFT (seed * 1_000_003 + k) and RL (7e9 + ...)


def main():
    ap = ArgumentParser(__doc__)
    ap.add_argument("--ckpt", required=True, help="the model whose samples become the data")
    ap.add_argument("--n", type=POSITIVE_INT, default=4000, help="training problems to sample (one sample each)")
    ap.add_argument("--out", required=True, help="JSONL of question/solution/answer/style records")
    ap.add_argument("--temperature", type=POSITIVE, default=1.0)
    ap.add_argument("--batch-size", type=POSITIVE_INT, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.n < 1 or args.batch_size < 1 or not args.temperature > 0:
        fail("--n and --batch-size must be >= 1 and --temperature > 0")
    claim_outputs([args.out], [args.ckpt])
    model, enc, meta = load(args.ckpt, pick_device(args.device))
    print_settings("distill", args, file=sys.stderr)   # stdout is the report
    problems = make_problems(args.n, split="train", seed=DISTILL_SEED_BASE + args.seed, **data_knobs(meta))
    prompts = [encode_prompt(enc, p["question"]) for p in problems]
    n_new = model.config.max_seq_len - max(map(len, prompts))
    # RL's own sampler: chunks of --batch-size, chunk i seeded seed * 1_000_003 + i
    comps, _ = rollout(model, prompts, n_new, args.temperature, enc.eot_token,
                       seed=args.seed * 1_000_003, gen_batch=args.batch_size)
    keep = []
    for p, c in zip(problems, comps):
        correct, _, text = judge(enc, c, p["answer"])
        if correct:
            keep.append({"question": p["question"], "solution": text, "answer": p["answer"],
                         "style": solution_style(text)})
    write_atomic(args.out, "".join(json.dumps(r) + "\n" for r in keep))   # a full disk: one line, no temp file
    wf = sum(r["style"] == "wf" for r in keep)
    print(json.dumps({"ckpt": args.ckpt, "n": args.n, "correct": len(keep), "wf_frac": wf / max(1, len(keep)),
                      "out": args.out}))


if __name__ == "__main__":
    with torch.no_grad():
        main()
