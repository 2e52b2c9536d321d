"""Round 2 of the CPU-preset search (issue 13), for the next GPU session: shorter "sa" traces
(sa_prose=False: 177 instead of 350 tokens with the prompt, 45% of operands still beyond W=32),
max_seq_len 384 (the longest wf trace is 356 tokens), larger batches (round 1: batch 32 learned
far more per token than batch 8), and step counts that fit ~10 minutes of 2 CPU cores.
    python results/cpu_search/round2.py > candidates.json"""
import copy
import json

from round1 import ADDSUB, BASE, RL

BASE = copy.deepcopy(BASE)
BASE["model"]["max_seq_len"] = 384
BASE["data"].update(kinds=ADDSUB, sa_prose=False)
BASE["pretrain"].update(batch_size=32, steps=500, warmup=30, eval_every=100, n_train=30000)
BASE["rl"]["max_new_tokens"] = 320


def cand(**over):
    row = copy.deepcopy(BASE)
    for key, v in over.items():
        sec, k = key.split("__")
        row[sec][k] = v
    return row


C = {
    "t_b32_500": cand(),
    "t_b32_500_lr8": cand(pretrain__lr=8e-3),
    "t_b64_250": cand(pretrain__batch_size=64, pretrain__steps=250),
    "t_L2_b32_1000": cand(model__n_layer=2, pretrain__steps=1000),
    "t_L3_b32_700": cand(model__n_layer=3, pretrain__steps=700),
    "t_d96_b32_700": cand(model__n_embd=96, pretrain__steps=700),
    "t_nodet_b32_500": cand(data__detour_rate=0.0),
    "t_b32_1000": cand(pretrain__steps=1000),   # 2x the CPU budget: how far is it?
    "t_b32_2000": cand(pretrain__steps=2000),   # 4x
    "t_wf3_b32_500": cand(data__window_friendly_frac=0.3),
}
print(json.dumps({k: {"preset": v, "rl": RL} for k, v in C.items()}, indent=1))
