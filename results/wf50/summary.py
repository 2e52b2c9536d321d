"""The tables from what results/wf50/recipe.sh wrote (its eval_*.json, RL metrics):
    python results/wf50/summary.py results/wf50/h100      # prints Markdown
Per base: greedy accuracy of SA + SFT, SWA + SFT and each RL seed, the post-SFT gap and the share of it
left after RL; base s0 also gets the mechanism columns, the controls and the RL step time."""
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from report import pct   # noqa: E402  the results table's own percent format


def rows(d):
    """label -> result dict, from every eval_*.json of one base folder."""
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "eval_*.json"))):
        for r in json.load(open(f))["results"]:
            out[r["label"]] = r
    return out


def mean_sd(xs):
    return f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs):.1f}%" if len(xs) > 1 else pct(xs[0])


def step_times(path):
    """Median step time of an RL metrics file, its first step (compilation, graph capture) left out."""
    ts = [r["step_time"] for r in map(json.loads, open(path)) if "step_time" in r][1:]
    return statistics.median(ts) if ts else None


def main(root):
    cols = ("greedy", "sampled pass@1", "pass@2", "maj@2", "len", "far deps greedy / sampled",
            "wf share greedy / sampled", "sampled acc: wf / sa style", "KV MB / seq")
    print("| base | SA + SFT | SWA + SFT | SA + RL | SWA + RL | gap after SFT | gap after RL | share left |")
    print("|---|---|---|---|---|---|---|---|")
    detail = []
    for d in sorted(glob.glob(os.path.join(root, "s[0-9]"))):
        r = rows(d)
        if "SA + SFT" not in r:
            continue
        sa, swa = ([x["greedy_acc"] for k, x in r.items() if k.startswith(f"{m} + SFT + RL")]
                   for m in ("SA", "SWA"))
        g0 = r["SA + SFT"]["greedy_acc"] - r["SWA + SFT"]["greedy_acc"]
        g1 = statistics.mean(sa) - statistics.mean(swa) if sa and swa else None
        left = "-" if g1 is None or g0 <= 0 else f"{g1 / g0:.0%}"
        print(f"| {os.path.basename(d)} | {pct(r['SA + SFT']['greedy_acc'])} "
              f"| {pct(r['SWA + SFT']['greedy_acc'])} "
              f"| {mean_sd(sa) if sa else '-'} | {mean_sd(swa) if swa else '-'} | {100 * g0:.1f} | "
              f"{'-' if g1 is None else f'{100 * g1:.1f}'} | {left} |")
        detail.append((d, r))
    for d, r in detail[:1]:
        print(f"\n{os.path.basename(d)}, every model:\n")
        print("| model | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        order = lambda label: ("control" in label, "RL" in label, label[-3:], label.startswith("SWA"))
        for label, x in sorted(r.items(), key=lambda kv: order(kv[0])):
            print(f"| {label} | **{pct(x['greedy_acc'])}** | {pct(x['pass1_sampled'])} | {pct(x['pass_at_k'])} | "
                  f"{pct(x['maj_at_k'])} | {x['len_mean']:.0f} | "
                  f"{pct(x['dep_far'])} / {pct(x['sample_dep_far'])} | "
                  f"{pct(x['wf_frac'])} / {pct(x['sample_wf_frac'])} | {pct(x['sample_acc_wf'])} / "
                  f"{pct(x['sample_acc_sa'])} | {x['kv_bytes_per_seq'] / 1e6:.2f} |")
    for m in ("swa", "sa"):
        p = os.path.join(root, f"steptime_{m}.jsonl")
        if os.path.exists(p):
            print(f"\nRL step time, {m.upper()} alone on the GPU (median of steps 2-6): {step_times(p):.3f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/wf50")
