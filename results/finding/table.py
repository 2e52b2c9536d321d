"""The finding over draws: every results/finding/seed<S>/results.json (as `bash run.sh --seed S` wrote it) ->
the README's table, the mean and spread over draws, and how many draws met each target.

    python results/finding/table.py [results/finding]

Targets (greedy accuracy on the held-out test problems): SA + SFT >= 90%; the converted model and SWA + SFT
each at least 40 points below SA + SFT; after RL the gap at most 0.2x the gap after SFT; the SWA model's
far-dependency fraction (greedy) at least halved by RL. With several RL seeds in a draw, its cells list each
seed, then their mean ± sd; every seed's pair must meet the RL targets; the mean over draws takes the draw's
mean."""
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from report import pct   # noqa: E402  the results table's own percent format


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return pct(xs[0])
    return f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs):.1f}%"


def mean(xs):
    return statistics.mean(xs) if xs else None


def rl_cell(xs):
    """One RL seed: its accuracy; several: each, then their mean ± sd (the spread RL itself adds)."""
    if len(xs) < 2:
        return " / ".join(map(pct, xs)) or "-"
    return " / ".join(map(pct, xs)) + f" ({mean_sd(xs)})"


def draw(path):
    """One draw's numbers, by row label; RL rows per seed."""
    rows = {r["label"]: r for r in json.load(open(path))["results"]}
    seeds = sorted((label.split("seed ")[1].rstrip(")") for label in rows if label.startswith("SA + SFT + RL")),
                   key=int)
    rl = [(rows[f"SA + SFT + RL (seed {s})"], rows[f"SWA + SFT + RL (seed {s})"]) for s in seeds]
    return rows, rl


def targets(rows, rl):
    sa, swa, conv = (rows[k]["greedy_acc"] for k in ("SA + SFT", "SWA + SFT", "SWA converted, no SFT"))
    gap = sa - swa
    far = rows["SWA + SFT"]["dep_far"]
    return {
        "SA + SFT >= 90%": sa >= 0.9,
        "converted >= 40 below": sa - conv >= 0.4,
        "SWA + SFT >= 40 below": gap >= 0.4,
        "RL gap <= 0.2x SFT gap": all(a["greedy_acc"] - b["greedy_acc"] <= 0.2 * gap for a, b in rl),
        "far deps halved": all(b["dep_far"] is not None and far is not None and b["dep_far"] <= far / 2
                               for _, b in rl),
    }


def main(root):
    paths = sorted(glob.glob(os.path.join(root, "seed*", "results.json")))
    if not paths:
        sys.exit(f"error: no {root}/seed*/results.json")
    cols = ["base greedy", "converted: wf samples right", "SWA converted", "SA + SFT", "SWA + SFT", "SA + RL",
            "SWA + RL", "SWA far deps SFT -> RL"]
    print("| draw | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    every, met = {c: [] for c in cols}, {}
    for path in paths:
        rows, rl = draw(path)
        base, conv = rows["SA base, no SFT"], rows["SWA converted, no SFT"]
        vals = [base["greedy_acc"], conv["sample_acc_wf"], conv["greedy_acc"], rows["SA + SFT"]["greedy_acc"],
                rows["SWA + SFT"]["greedy_acc"]]
        sa_rl, swa_rl = [a["greedy_acc"] for a, _ in rl], [b["greedy_acc"] for _, b in rl]
        far = f"{pct(rows['SWA + SFT']['dep_far'])} -> " + " / ".join(pct(b["dep_far"]) for _, b in rl)
        cells = [pct(v) for v in vals] + [rl_cell(sa_rl), rl_cell(swa_rl), far]
        print(f"| {os.path.basename(os.path.dirname(path))} | " + " | ".join(cells) + " |")
        # over draws, a draw with several RL seeds counts once, by its mean
        for c, v in zip(cols, vals + [mean(sa_rl), mean(swa_rl)]):
            every[c].append(v)
        for name, ok in targets(rows, rl).items():
            met[name] = met.get(name, 0) + ok
    n = len(paths)
    print(f"| mean ± sd ({n} draws) | " + " | ".join(mean_sd(every[c]) for c in cols[:-1]) + " | |")
    print(f"\nTargets met, of {n} draws: " + "; ".join(f"{k}: {v}" for k, v in met.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/finding")
