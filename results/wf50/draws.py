"""The table over base draws of the preset (corpus 50% window-friendly), from the eval.py JSON of each draw:
    python results/wf50/draws.py          # prints Markdown
Greedy accuracy on 1000 held-out test problems. RL is seed 0 (on wf50/h100/s0 also the mean ± sample standard
deviation over seeds 0-2). A draw is a pretraining seed run once: GPU pretraining is not bitwise reproducible, so
the same seed run again is another draw. "-": that stage was not evaluated (the device time ended first)."""
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from report import pct   # noqa: E402  the results table's own percent format

DRAWS = [   # (draw, GPU, folder under results/wf50/)
    ("s0", "H100", "h100/s0"), ("s1", "H100", "h100/s1"), ("s0, again", "H200", "draws/h200/s0"),
    ("s0, again", "H100", "ablate"), ("s2, again", "H100", "draws/h100_2/s2"),
    ("s2, third", "H100", "draws/h100_3/s2"), ("s2, fourth", "H100", "draws/h100_4/s2"),
]
LABELS = {   # eval.py's labels in the recipe's files (ablate.sh's own labels for the same models)
    "conv": ["SWA converted, no SFT"], "sa": ["SA + SFT", "sft_sa"], "swa": ["SWA + SFT", "sft_swa"],
    "sa_rl": ["SA + SFT + RL (seed {s})"], "swa_rl": ["SWA + SFT + RL (seed {s})", "rl_swa_s{s}"],
}


def results(folder):
    """label -> greedy accuracy, over every eval_*.json of one folder."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("eval_") and name.endswith(".json"):
            for r in json.load(open(os.path.join(folder, name)))["results"]:
                out[r["label"]] = r["greedy_acc"]
    return out


def acc(res, key, seed=0):
    hits = [res[label.format(s=seed)] for label in LABELS[key] if label.format(s=seed) in res]
    return hits[0] if hits else None


def cell(res, key):
    first = acc(res, key)
    if first is None:
        return "-"
    seeds = [a for a in (acc(res, key, s) for s in range(3)) if a is not None]
    if not key.endswith("_rl") or len(seeds) < 2:
        return pct(first)
    return f"{pct(first)} (seeds 0-2: {100 * statistics.mean(seeds):.1f} ± {100 * statistics.stdev(seeds):.1f}%)"


def main():
    print("| draw | GPU | SWA converted, no SFT | SA + SFT | SWA + SFT | SA + SFT + RL | SWA + SFT + RL | folder |")
    print("|---|---|---|---|---|---|---|---|")
    for draw, gpu, folder in DRAWS:
        res = results(os.path.join(HERE, folder))
        cells = [cell(res, key) for key in ("conv", "sa", "swa", "sa_rl", "swa_rl")]
        print(f"| {draw} | {gpu} | " + " | ".join(cells) + f" | `wf50/{folder}` |")


if __name__ == "__main__":
    main()
