"""
Grade and evaluate math answers.

Two halves:
1. The grader, imported from grader.py: extract_answer(text) finds the final answer in a model's
   text, grade(text, gold) decides whether it equals the reference. It is the RL reward and the
   judge of every reported number, so it is strict, fast, and never executes model text.
2. The evaluation CLI: generate on held-out problems with one or more checkpoints and print one
   markdown table (pass@1, pass@k, maj@k, lengths, dependency distances, speed, KV-cache size).

Run:
    python eval.py --ckpt out/sa_sft.pt out/swa_sft.pt out/swa_rl.pt --n 1000 --k 8 --json results.json
    python eval.py --ckpt out/swa_rl.pt --data ../shared/data/gsm8k/test.jsonl --n 200
    python eval.py --ckpt out/swa_rl.pt --n 100 --traces traces.jsonl   # also what the model wrote
    python eval.py --grader-speed ../shared/data/gsm8k/test.jsonl   # time the grader on GSM8K
    python eval.py --help
"""

import json
import os
import sys
import time
from fractions import Fraction

import numpy as np
import torch
from tqdm import tqdm

import dist
from checkpoint import check_room, data_knobs, load
from common import (COUNT, NONNEG, POSITIVE, POSITIVE_INT, ArgumentParser, apply_preset, claim_outputs, fail,
                    pick_device, print_settings, read_jsonl, write_atomic)
from data.deps import dependency_distances, far_fraction
from data.gsm8k import load_gsm8k
from data.mathgen import make_problems, solution_style
from data.tokenizer import encode_prompt
from engine import generate, kv_cache_bytes
from grader import (GRADE_TIMEOUT, answer_key, extract_answer, grade, is_equiv,  # noqa: F401 (re-exported)
                    normalize_answer, to_number)
from report import markdown_table, pct


def judge(enc, completion, gold, timeout=None):
    """(correct, stopped, text) of one completion (token ids, the end token included if produced).

    The one rule for "correct", used by RL rewards, evaluation and SFT's held-out check alike: the
    completion stopped with the end token and its final answer equals `gold`. A trace cut off by the
    length limit is wrong whatever its last number happens to be."""
    stopped = bool(completion) and completion[-1] == enc.eot_token
    text = enc.decode(completion[:-1] if stopped else completion)
    return stopped and grade(text, gold, timeout), stopped, text


# -----------------------------------------------------------------------------
# evaluation of a model: generation, grading, trace analysis

def _percentile(xs, q):
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if xs else 0.0


def _mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def _generate_all(model, prompts, max_new_tokens, temperature, top_k, eos_id, batch_size, seed, desc,
                  progress):
    """Completions for every prompt, in batches (seed + batch index each); -> (completions, seconds).
    DISTRIBUTED: the batches are dealt to the ranks, each made exactly as on one process, then gathered."""
    done = {}   # batch index -> its completions
    bar = tqdm(total=len(prompts), desc=desc, unit="seq", disable=not progress, leave=False)
    t0 = time.perf_counter()
    for b, i in enumerate(range(0, len(prompts), batch_size)):
        if b % dist.world() != dist.rank():   # DISTRIBUTED: another rank's batch
            continue
        chunk = prompts[i:i + batch_size]
        completions, _ = generate(model, chunk, max_new_tokens, temperature=temperature, top_k=top_k,
                                  eos_id=eos_id, seed=seed + b)
        done[b] = completions
        bar.update(len(chunk))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    bar.close()
    parts = dist.gather((done, time.perf_counter() - t0))   # DISTRIBUTED: every rank's batches, the slowest time
    done = {b: c for part, _ in parts for b, c in part.items()}
    return [c for b in sorted(done) for c in done[b]], max(seconds for _, seconds in parts)


def style_metrics(styles, correct):
    """Share of window-friendly traces and the accuracy of each style (solution_style of each trace): the
    mechanism, per model (and per RL step: rl.py). A style no trace took has no accuracy (None), not 0."""
    acc = lambda s: _mean([c for c, t in zip(correct, styles) if t == s]) if s in styles else None
    return {"wf_frac": _mean([s == "wf" for s in styles]), "acc_wf": acc("wf"), "acc_sa": acc("sa")}


def _far(prompts, completions, judged, enc, window):
    """Dependency distances of the model's own traces, and the share beyond `window`."""
    dists = []
    for p, c, (_, stopped, _) in zip(prompts, completions, judged):
        dists.extend(dependency_distances(p + (c[:-1] if stopped else c), enc))
    return dists, (far_fraction(dists, window) if dists and window else None)


def _majority(answers, correct):
    """maj@k for one problem: is the most common extracted answer (ties: the earliest) correct?"""
    counts, first = {}, {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        try:
            key = answer_key(a)
        except Exception:
            key = a
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return False
    best = max(counts, key=lambda key: (counts[key], -first[key]))
    return correct[first[best]]


def evaluate(model, enc, problems, k=8, temperature=1.0, max_new_tokens=None, batch_size=64, seed=0,
             greedy_only=False, top_k=None, ref_window=None, timeout=None, progress=True, traces=False):
    """Metrics of `model` on `problems` ([{"question", "answer", ...}]) as a JSON-ready dict.

    Greedy pass: accuracy, extraction rate, completion lengths, truncation, dependency distances of
    the model's own traces (beyond its window, or `ref_window` for full attention), style mix and
    the accuracy of each style, decoding speed, KV-cache bytes. Unless greedy_only or k == 0, also k
    samples per problem at `temperature`: sampled pass@1, pass@k, maj@k, style mix, far dependencies.
    traces: also the greedy traces themselves, under "traces" (one dict per problem).
    Same seed, same batch size -> same numbers (timings aside)."""
    cfg, eos = model.config, enc.eot_token
    prompts = [encode_prompt(enc, p["question"]) for p in problems]
    golds = [str(p["answer"]) for p in problems]
    longest = max(len(p) for p in prompts)
    if max_new_tokens is None:
        max_new_tokens = cfg.max_seq_len - longest
    if max_new_tokens < 1 or longest + max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) does not fit "
                         f"max_seq_len={cfg.max_seq_len}")
    was_training = model.training
    model.eval()

    # greedy pass: the model's own traces
    completions, seconds = _generate_all(model, prompts, max_new_tokens, 0.0, None, eos, batch_size, seed,
                                         "greedy", progress)
    judged = [judge(enc, c, g, timeout) for c, g in zip(completions, golds)]
    correct = [j[0] for j in judged]
    texts = [j[2] for j in judged]
    answers = [extract_answer(t) for t in texts]
    lengths = [len(c) for c in completions]
    window = cfg.window if cfg.window is not None else ref_window  # full attention: compare at ref_window
    dists, far = _far(prompts, completions, judged, enc, window)
    style_of = [solution_style(t) for t in texts]
    styles = style_metrics(style_of, correct)
    mean_total = _mean([len(p) + len(c) for p, c in zip(prompts, completions)])
    res = {
        "n": len(problems),
        "attention": cfg.describe(),
        "greedy_acc": _mean(correct),
        "extracted": _mean([a is not None for a in answers]),
        "len_mean": _mean(lengths),
        "len_p90": _percentile(lengths, 90),
        "trunc_rate": _mean([not j[1] for j in judged]),
        "dep_window": window,
        "dep_n": len(dists),
        "dep_mean": _mean(dists) if dists else None,  # None: no step reused an earlier number
        "dep_p90": _percentile(dists, 90) if dists else None,
        "dep_far": far,
        "wf_frac": styles["wf_frac"], "greedy_acc_wf": styles["acc_wf"], "greedy_acc_sa": styles["acc_sa"],
        "tok_per_s": sum(lengths) / max(seconds, 1e-9),
        "kv_bytes_per_seq": kv_cache_bytes(cfg, max(1, round(mean_total))),
        "max_new_tokens": max_new_tokens,
        "k": 0, "temperature": None, "pass1_sampled": None, "pass_at_k": None, "maj_at_k": None,
    }

    if traces:
        rows = zip(problems, golds, correct, judged, style_of)
        res["traces"] = [{"problem": i, "question": p["question"], "gold": g, "correct": c, "stopped": j[1],
                          "style": style, "text": j[2]} for i, (p, g, c, j, style) in enumerate(rows)]

    # sampled pass: k completions per problem
    if k > 0 and not greedy_only:
        repeated = [p for p in prompts for _ in range(k)]
        samples, _ = _generate_all(model, repeated, max_new_tokens, temperature, top_k, eos, batch_size,
                                   seed + 1_000_003, f"sample k={k}", progress)
        s_judged = [judge(enc, c, golds[i // k], timeout) for i, c in enumerate(samples)]
        s_correct = [j[0] for j in s_judged]
        s_styles = [solution_style(j[2]) for j in s_judged]
        # a completion cut off by the length limit has no final answer, so it does not vote
        s_answers = [extract_answer(text) if stopped else None for _, stopped, text in s_judged]
        groups = [range(i * k, (i + 1) * k) for i in range(len(problems))]
        res.update(k=k, temperature=temperature,
                   pass1_sampled=_mean([_mean([s_correct[j] for j in g]) for g in groups]),
                   pass_at_k=_mean([any(s_correct[j] for j in g) for g in groups]),
                   maj_at_k=_mean([_majority([s_answers[j] for j in g], [s_correct[j] for j in g])
                                   for g in groups]),
                   sample_extracted=_mean([a is not None for a in s_answers]),
                   sample_len_mean=_mean([len(c) for c in samples]),
                   sample_dep_far=_far(repeated, samples, s_judged, enc, window)[1],
                   **{f"sample_{key}": v for key, v in style_metrics(s_styles, s_correct).items()})
    model.train(was_training)
    return res


# -----------------------------------------------------------------------------
# CLI

def grader_speed(path):
    """Grade every reference solution of a GSM8K-format file against its own answer and answer+1."""
    rows = read_jsonl(path, "--grader-speed", need=("answer",))
    pairs = []
    for n, row in enumerate(rows, 1):
        gold = str(row["answer"]).split("####")[-1].strip().replace(",", "")
        try:
            wrong = str(Fraction(gold) + 1)
        except (ValueError, ZeroDivisionError):
            fail(f"--grader-speed: {path}:{n}: the answer does not end in '#### N'")
        pairs.append((row["answer"], gold, True))
        pairs.append((row["answer"], wrong, False))
    t0 = time.perf_counter()
    right = sum(grade(text, gold) is expected for text, gold, expected in pairs)
    dt = time.perf_counter() - t0
    print(f"graded {len(pairs)} pairs ({len(rows)} solutions x {{own answer, answer+1}}) in {dt:.3f} s "
          f"({1e6 * dt / len(pairs):.0f} us each); {right}/{len(pairs)} as expected")
    return right == len(pairs)


def main(argv=None):
    dist.init()   # under torchrun: join the other ranks (dist.py); nothing on one process
    ap = ArgumentParser(__doc__, sections="eval")
    # what to evaluate
    ap.add_argument("--ckpt", nargs="+", metavar="PATH", help="one or more checkpoints (one table row each)")
    ap.add_argument("--label", action="append", help="row name, repeated once per --ckpt (default: file name)")
    ap.add_argument("--preset", help="presets-table row for --n, --k, ... (default: the first checkpoint's)")
    # data
    ap.add_argument("--data", default="mathgen", help="'mathgen' (generated problems) or a GSM8K-format .jsonl")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"], help="mathgen split")
    ap.add_argument("--n", type=POSITIVE_INT, help="number of problems")
    ap.add_argument("--seed", type=int, default=0, help="problem seed (mathgen) and sampling seed")
    # sampling
    ap.add_argument("--k", type=COUNT, help="samples per problem for pass@1/pass@k/maj@k (0: greedy only)")
    ap.add_argument("--temperature", type=NONNEG, default=1.0, help="sampling temperature of the k samples")
    ap.add_argument("--top-k", type=POSITIVE_INT, default=None, help="top-k filter for the k samples")
    ap.add_argument("--max-new-tokens", type=POSITIVE_INT, default=None, help="default: max_seq_len - longest prompt")
    ap.add_argument("--batch-size", type=POSITIVE_INT, help="sequences per generate() call")
    # grading and analysis
    ap.add_argument("--grade-timeout", type=POSITIVE, default=GRADE_TIMEOUT, help="seconds of sympy per answer")
    # system and output
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--json", metavar="PATH", help="write settings and metrics as JSON")
    ap.add_argument("--md", metavar="PATH", help="write the markdown table")
    ap.add_argument("--traces", metavar="PATH", help="write every greedy trace as JSON lines (label, problem, "
                                                    "question, gold, correct, stopped, style, text)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    # tools
    ap.add_argument("--grader-speed", metavar="JSONL", help="time the grader on a GSM8K-format file and exit")
    args = ap.parse_args(argv)

    if args.grader_speed:
        sys.exit(0 if grader_speed(args.grader_speed) else 1)
    if not args.ckpt:
        fail("--ckpt is required (one or more checkpoint paths)")
    if args.label and len(args.label) != len(args.ckpt):
        fail(f"got {len(args.label)} --label for {len(args.ckpt)} checkpoints")
    if args.data != "mathgen" and not os.path.isfile(args.data):
        fail(f"--data: file not found: {args.data} (use 'mathgen' or a GSM8K-format .jsonl)")

    device = pick_device(args.device)
    if dist.is_main():   # DISTRIBUTED: rank 0 alone writes
        claim_outputs([args.json, args.md, args.traces],
                      [*args.ckpt, args.data if args.data != "mathgen" else None])
    models = [(path, *load(path)) for path in args.ckpt]   # every checkpoint checked before any generation
    args = apply_preset(args, "eval", models[0][3])
    for name, value, low in (("--n", args.n, 1), ("--k", args.k, 0), ("--batch-size", args.batch_size, 1),
                             ("--max-new-tokens", args.max_new_tokens, 1)):
        if value is not None and value < low:
            fail(f"{name} must be >= {low}, got {value}")
    print_settings("eval", args)
    if args.temperature < 0:
        fail(f"--temperature must be >= 0, got {args.temperature}")

    # the problems, and the window of the far-dependency column of full-attention rows: the run's
    knobs = data_knobs(models[0][3])
    if args.data == "mathgen":
        problems = make_problems(args.n, split=args.split, seed=args.seed, **knobs)
    else:
        try:
            problems = load_gsm8k(args.data)[:args.n]
        except (ValueError, UnicodeDecodeError) as e:
            fail(str(e).splitlines()[0])
        if not problems:
            fail(f"--data: no problems in {args.data}")

    for path, model, enc, _ in models:   # every model fits the task, before any generation
        check_room(path, model.config.max_seq_len, enc, problems, args.max_new_tokens or 1)
    rows, traces = [], []
    for i, (path, model, enc, meta) in enumerate(models):
        label = args.label[i] if args.label else os.path.splitext(os.path.basename(path))[0]
        model.to(device)
        try:
            res = evaluate(model, enc, problems, k=args.k, temperature=args.temperature,
                           max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                           top_k=args.top_k, ref_window=knobs["window"], timeout=args.grade_timeout,
                           progress=not args.no_progress, traces=bool(args.traces))
        except ValueError as e:
            fail(f"{path}: {str(e).splitlines()[0]}")
        model.to("cpu")
        traces += [{"label": label, **t} for t in res.pop("traces", [])]
        rows.append({"label": label, "ckpt": path, "stage": meta.get("stage"), **res})
        print(f"{label}: greedy {pct(res['greedy_acc'])}, pass@k {pct(res['pass_at_k'])}, "
              f"{res['tok_per_s']:.0f} tok/s", file=sys.stderr)

    table = markdown_table(rows)
    print(table)
    settings = {k: v for k, v in vars(args).items() if k not in ("grader_speed", "no_progress")}
    settings.update(device=device, data_knobs=knobs)
    if not dist.is_main():   # DISTRIBUTED: rank 0 alone writes
        return
    if args.traces:
        write_atomic(args.traces, "".join(json.dumps(t) + "\n" for t in traces))
    if args.md:
        write_atomic(args.md, table + "\n")
    if args.json:   # last: scripts take it as the mark of a finished evaluation
        write_atomic(args.json, json.dumps({"settings": settings, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
