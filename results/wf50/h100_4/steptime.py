"""The RL step times of this session's device calls (calls.sh 1, 4, 5 and 7), one Markdown row per run:
    python results/wf50/h100_4/steptime.py
Each run is `rl.py --steps 10` alone on the GPU; medians over steps 2-10 (step 1 records the graphs and warms up).
rollouts: the generated tokens over rollout_tok_s (rl.py's own clock around them); update and the rest: the step
less its rollouts (the update, grading and logging)."""
import glob
import json
import os
import statistics

ROLLOUTS = 256   # per step: the preset's 32 prompts x 8
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "steptime")
RUNS = [   # (call, file pattern, what ran)
    (1, "st_flash", "SWA, flash"), (1, "st_einsum", "SWA, einsum (flash off)"), (1, "st_flash[23]", "SWA, flash"),
    (1, "st_einsum[23]", "SWA, einsum"), (1, "st_sa", "SA"),
    (4, "mb_swa32*", "SWA, micro-batches of 32k tokens"), (4, "mb_swa64*", "SWA, 64k"),
    (4, "mb_sa32*", "SA, 32k"), (4, "mb_sa64*", "SA, 64k"),
    (5, "st_einsum4", "SWA, einsum"), (5, "st_flash4", "SWA, flash"), (5, "st_einsum5", "SWA, einsum"),
    (7, "cap_swa_old*", "SWA, torch.cuda.graph()"), (7, "cap_swa_new*", "SWA, capture_begin/end"),
    (7, "cap_sa_old*", "SA, torch.cuda.graph()"), (7, "cap_sa_new*", "SA, capture_begin/end"),
]


def row(path):
    steps = [r for r in map(json.loads, open(path)) if "step_time" in r][1:]
    step = [r["step_time"] for r in steps]
    roll = [r["len_mean"] * ROLLOUTS / r["rollout_tok_s"] for r in steps]
    rest = [s - t for s, t in zip(step, roll)]
    med = lambda xs: f"{statistics.median(xs):.3f}"
    return med(step), med(roll), med(rest), f"{max(step):.3f}", f"{steps[-1]['peak_mem_gb']:.2f}"


def table(runs, here):
    print("| call | run | step (s) | rollouts (s) | update and the rest (s) | slowest step (s) | peak GB |")
    print("|---|---|---|---|---|---|---|")
    for call, pattern, what in runs:
        for path in sorted(glob.glob(os.path.join(here, pattern + ".jsonl"))):
            name = os.path.basename(path)[:-len(".jsonl")]
            print(f"| {call} | {what} (`{name}`) | " + " | ".join(row(path)) + " |")


if __name__ == "__main__":
    table(RUNS, HERE)
