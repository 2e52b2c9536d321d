"""The RL step times of this session's device calls (calls.sh 1 and 2), one Markdown row per run:
    python results/wf50/h100_5/steptime.py
Each run is `rl.py --steps 10` alone on the GPU, on the SFT models of a 1500-step base (calls.sh's models); medians
over steps 2-10 (step 1 records the graphs and warms up). rollouts: the generated tokens over rollout_tok_s (rl.py's
own clock around them); update and the rest: the step less its rollouts (the update, grading and logging)."""
import glob
import json
import os
import statistics

ROLLOUTS = 256   # per step: the preset's 32 prompts x 8
HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = [   # (call, file pattern, what ran)
    (1, "call1/sa_sdpa_*", "SA, SDPA with a mask (the code then)"), (1, "call1/sa_matmul_*", "SA, two matmuls"),
    (1, "call1/sa_split128_*", "SA, split into chunks of 128 slots"), (1, "call1/sa_split64_*", "SA, chunks of 64"),
    (2, "call2/new_sa_*", "SA, FlashAttention varlen (new)"), (2, "call2/old_sa_*", "SA, SDPA with a mask (old)"),
    (2, "call2/new_swa_*", "SWA, new"), (2, "call2/old_swa_*", "SWA, old"),
]


def row(path):
    steps = [r for r in map(json.loads, open(path)) if "step_time" in r][1:]
    step = [r["step_time"] for r in steps]
    roll = [r["len_mean"] * ROLLOUTS / r["rollout_tok_s"] for r in steps]
    rest = [s - t for s, t in zip(step, roll)]
    med = lambda xs: f"{statistics.median(xs):.3f}"
    return med(step), med(roll), med(rest), f"{max(step):.3f}", f"{steps[-1]['peak_mem_gb']:.2f}"


print("| call | run | step (s) | rollouts (s) | update and the rest (s) | slowest step (s) | peak GB |")
print("|---|---|---|---|---|---|---|")
for call, pattern, what in RUNS:
    for path in sorted(glob.glob(os.path.join(HERE, pattern + ".jsonl"))):
        name = os.path.basename(path)[:-len(".jsonl")]
        print(f"| {call} | {what} (`{name}`) | " + " | ".join(row(path)) + " |")
