"""The RL step time, one Markdown row per run:
    python results/wf50/steptime/steptime.py
Each run is `rl.py --steps 10 --eval-every 0 --save-every 0` alone on one H100 (gpu.txt), on SFT models of a
1500-step base of the default preset (traces ~400 tokens, as the preset's), alternating the code of 060c5f7 ("new":
full layers decode with FlashAttention's varlen kernel) with the code before it (d2b994d, "old"). Medians over
steps 2-10 (step 1 records the graphs and warms up). rollouts: the generated tokens over rollout_tok_s (rl.py's own
clock around them); update and the rest: the step less its rollouts (the update, grading and logging).
The commands: call 2 of results/wf50/h100_5/calls.sh, at commit ab9762d (`git show ab9762d:results/wf50/h100_5/calls.sh`)."""
import glob
import json
import os
import statistics

ROLLOUTS = 256   # per step: the preset's 32 prompts x 8
HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = [("new_sa_*", "SA, new"), ("old_sa_*", "SA, old"), ("new_swa_*", "SWA, new"), ("old_swa_*", "SWA, old")]


def row(path):
    steps = [r for r in map(json.loads, open(path)) if "step_time" in r][1:]
    step = [r["step_time"] for r in steps]
    roll = [r["len_mean"] * ROLLOUTS / r["rollout_tok_s"] for r in steps]
    rest = [s - t for s, t in zip(step, roll)]
    med = lambda xs: f"{statistics.median(xs):.3f}"
    return med(step), med(roll), med(rest), f"{max(step):.3f}", f"{steps[-1]['peak_mem_gb']:.2f}"


def main():
    print("| run | step (s) | rollouts (s) | update and the rest (s) | slowest step (s) | peak GB |")
    print("|---|---|---|---|---|---|")
    for pattern, what in RUNS:
        for path in sorted(glob.glob(os.path.join(HERE, pattern + ".jsonl"))):
            name = os.path.basename(path)[:-len(".jsonl")]
            print(f"| {what} (`{name}`) | " + " | ".join(row(path)) + " |")


if __name__ == "__main__":
    main()
