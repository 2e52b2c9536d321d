"""Round 2 of the CPU-preset search (issue 13), for the next GPU session: shorter "sa" traces
(sa_prose=False: 177 instead of 350 tokens with the prompt, 45% of operands still beyond W=32),
max_seq_len 384 (the longest wf trace is 356 tokens), larger batches (round 1: batch 32 learned
far more per token than batch 8), smaller amounts (max_value), and step counts that fit ~10 minutes
of 2 CPU cores (t_b32_500 took 639 s on the local 2 cores).
Run on the device as ONE call, nothing else beside it, and bring the results back as one file:
    python results/cpu_search/round2.py > runs/c2.json
    python results/cpu_search/search.py runs/c2.json runs/s2 --jobs 12 --minutes 8
    tar czf $OUT/s2.tgz runs/s2/summary.jsonl runs/s2/*/*.json runs/s2/*/*.jsonl"""
import copy
import functools
import json

import round1
from round1 import ADDSUB, BASE, RL

BASE = copy.deepcopy(BASE)
BASE["model"]["max_seq_len"] = 384
BASE["data"].update(kinds=ADDSUB, sa_prose=False)
BASE["pretrain"].update(batch_size=32, steps=500, warmup=30, eval_every=100, n_train=30000)
BASE["rl"]["max_new_tokens"] = 320


cand = functools.partial(round1.cand, BASE)


C = {
    "t_b32_500": cand(),
    "t_b64_250": cand(pretrain__batch_size=64, pretrain__steps=250),
    "t_L2_b32_1000": cand(model__n_layer=2, pretrain__steps=1000),
    "t_b32_1000": cand(pretrain__steps=1000),   # 2x the CPU budget: how far is it?
    # amounts <= 20 (max_value): the local CPU run of t_b32_500 had 14% of its step lines' arithmetic right
    "s20_b32_500": cand(data__max_value=20),
    "s20_L2_b32_1000": cand(data__max_value=20, model__n_layer=2, pretrain__steps=1000),
    "s20_b64_250_lr8": cand(data__max_value=20, pretrain__batch_size=64, pretrain__steps=250, pretrain__lr=8e-3),
    "s20_b32_1000": cand(data__max_value=20, pretrain__steps=1000),
    "s30_b32_500": cand(data__max_value=30),
}
print(json.dumps({k: {"preset": v, "rl": RL} for k, v in C.items()}, indent=1))
