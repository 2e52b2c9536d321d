"""Round 4 of the CPU-preset search (issue 13). Round 3 (W=64, one event, "sa" traces with prose) gave
SA + SFT 35% / SWA + SFT 3% at ~12M pretraining tokens and 76% / 5% at twice that, and GRPO (lr 1e-4,
20 steps) took SWA from 3% to 57% (SA 35% -> 45%): the finding on a 0.65M model. What is left is SA + SFT
>= 60% inside the CPU's time (~13 minutes of pretraining at ~18k tokens/s on 2 cores, ~14M tokens).
Here: no detours (round 3: 39% vs 35%), and sa_prose="plan" (the plan, then the computations: 202
instead of 288 tokens, every trace still with an operand beyond W), which fits rows of 256 tokens.
Run on the device as ONE call, nothing else beside it:
    python results/cpu_search/round4.py > runs/c4.json
    python results/cpu_search/search.py runs/c4.json runs/s4 --jobs 16 --minutes 8
    tar czf $OUT/s4.tgz runs/s4/summary.jsonl runs/s4/*/*.json runs/s4/*/*.jsonl"""
import copy
import functools
import json
import sys

import round1
from round1 import ADDSUB, BASE

BASE = copy.deepcopy(BASE)
BASE["model"].update(n_layer=2, max_seq_len=256)
BASE["data"].update(window=64, n_events=[1, 1], kinds=ADDSUB, sa_prose="plan", max_value=20, detour_rate=0.0)
BASE["pretrain"].update(batch_size=32, steps=1700, warmup=30, eval_every=250, n_train=30000)
BASE["rl"]["max_new_tokens"] = 192
RL = [dict(lr=1e-4)]

cand = functools.partial(round1.cand, BASE)

C = {
    "prose_r512_850": cand(data__sa_prose=True, model__max_seq_len=512, pretrain__steps=850, rl__max_new_tokens=448),
    "plan_r512_850": cand(model__max_seq_len=512, pretrain__steps=850),
    "plan_r256_1700": cand(),
    "plan_r256_b64_850": cand(pretrain__batch_size=64, pretrain__steps=850),
    "plan_r256_1200": cand(pretrain__steps=1200),
    "plan_r256_1700_lr3": cand(pretrain__lr=3e-3),
}
if "--smoke" in sys.argv:
    C, RL = round1.smoke(C)
print(json.dumps({k: {"preset": v, "rl": RL} for k, v in C.items()}, indent=1))
