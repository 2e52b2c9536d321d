"""The ablation table from what results/ablate.sh wrote in its output folder (eval_*.json):
    python results/ablate_table.py results/cpu_ablate      # prints Markdown
Each row: the SWA variant after SFT → after its GRPO run; the baseline is the recipe's own SWA model."""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report import pct   # noqa: E402  the results table's own percent format

NAMES = {"sink4": "4 sink tokens", "wf0": "wf share of the SFT data 0", "wf005": "wf share of the SFT data 0.05"}


def results(path):
    """label -> result dict of one eval.py JSON file."""
    return {r["label"]: r for r in json.load(open(path))["results"]}


def row(name, sft, rl):
    arrow = lambda key: f"{pct(sft[key])} → {pct(rl[key])}"
    return (f"| {name} | {pct(sft['greedy_acc'])} → **{pct(rl['greedy_acc'])}** | {arrow('pass1_sampled')} | "
            f"{arrow('sample_wf_frac')} | {arrow('dep_far')} | {arrow('sample_acc_wf')} |")


def main(out):
    print("| variant | greedy | sampled pass@1 | wf share (sampled) | far deps (greedy) | wf samples right |")
    print("|---|---|---|---|---|---|")
    base = results(os.path.join(out, "eval_swa.json"))
    window = base["sft_swa"]["attention"]
    rl = next(v for k, v in base.items() if k.startswith("rl_swa_s"))   # the run's RL seed
    print(row(f"baseline, {window} (SA + SFT {pct(base['sft_sa']['greedy_acc'])})", base["sft_swa"], rl))
    for path in sorted(glob.glob(os.path.join(out, "eval_*.json"))):
        v = os.path.basename(path)[5:-5]
        if v == "swa" or v.startswith("sa_"):
            continue
        r = results(path)
        name = NAMES.get(v, f"layer pattern {v.upper()}")
        if v[0] == "w" and v[1:].isdigit():
            sa = results(os.path.join(out, f"eval_sa_{v}.json"))[f"sft_sa_{v}"]
            name = f"window {v[1:]} (its own base; SA + SFT {pct(sa['greedy_acc'])})"
        print(row(name, r[f"sft_{v}"], r[f"rl_{v}"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python results/ablate_table.py FOLDER (what results/ablate.sh wrote)")
    main(sys.argv[1])
