"""The RL step times of this session's device calls (calls.sh 1 and 2), one Markdown row per run:
    python results/wf50/h100_5/steptime.py
Each run is `rl.py --steps 10` alone on the GPU, on the SFT models of a 1500-step base (calls.sh's models); medians
over steps 2-10 (step 1 records the graphs and warms up). rollouts: the generated tokens over rollout_tok_s (rl.py's
own clock around them); update and the rest: the step less its rollouts (the update, grading and logging)."""
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = [   # (call, file pattern, what ran)
    (1, "call1/sa_sdpa_*", "SA, SDPA with a mask (the code then)"), (1, "call1/sa_matmul_*", "SA, two matmuls"),
    (1, "call1/sa_split128_*", "SA, split into chunks of 128 slots"), (1, "call1/sa_split64_*", "SA, chunks of 64"),
    (2, "call2/new_sa_*", "SA, FlashAttention varlen (new)"), (2, "call2/old_sa_*", "SA, SDPA with a mask (old)"),
    (2, "call2/new_swa_*", "SWA, new"), (2, "call2/old_swa_*", "SWA, old"),
]



if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("steptime4", os.path.join(HERE, "..", "h100_4", "steptime.py"))
    steptime4 = importlib.util.module_from_spec(spec)   # the last session's table: the same columns
    spec.loader.exec_module(steptime4)
    steptime4.table(RUNS, HERE)
