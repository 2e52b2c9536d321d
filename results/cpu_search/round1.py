"""Round 1 of the CPU-preset search (issue 13): writes candidates.json for search.py.
    python results/cpu_search/round1.py > candidates.json        [--smoke: seconds-long rows]"""
import copy
import json
import sys

ADDSUB = ["has", "more", "fewer", "give", "lose", "each", "total", "pair", "diff"]
BASE = dict(
    model=dict(n_layer=4, n_head=4, n_kv_head=2, n_embd=128, max_seq_len=576),
    data=dict(window=32, n_people=2, n_events=[1, 2], distractors=[0, 0]),
    pretrain=dict(steps=1000, batch_size=8, lr=4e-3, warmup=50, n_train=12000, n_val=64, eval_every=250),
    sft=dict(steps=100, batch_size=8, lr=1e-3, warmup=10, n_train=1000, n_val=64, eval_every=0),
    rl=dict(steps=20, prompts_per_step=8, group_size=4, max_new_tokens=512, lr=1e-4, eval_every=10, eval_n=32),
    eval=dict(n=300, k=2, max_new_tokens=None, batch_size=300),
)


def cand(base=BASE, **over):
    """A copy of `base` with section__key=value overrides."""
    row = copy.deepcopy(base)
    for key, v in over.items():
        sec, k = key.split("__")
        row[sec][k] = v
    return row


RL = [dict(lr=1e-4), dict(lr=3e-4, steps=40)]
C = {
    "all_1k": cand(),
    "as_1k": cand(data__kinds=ADDSUB),
    "as_1k_lr8": cand(data__kinds=ADDSUB, pretrain__lr=8e-3),
    "as_2k": cand(data__kinds=ADDSUB, pretrain__steps=2000),
    "as_4k": cand(data__kinds=ADDSUB, pretrain__steps=4000),
    "as_L2_2k": cand(data__kinds=ADDSUB, model__n_layer=2, pretrain__steps=2000),
    "as_d96_1k5": cand(data__kinds=ADDSUB, model__n_embd=96, pretrain__steps=1500),
    "as_b16_500": cand(data__kinds=ADDSUB, pretrain__batch_size=16, pretrain__steps=500),
    "as_e1_1k": cand(data__kinds=ADDSUB, data__n_events=[1, 1]),
    "as_nodet_1k": cand(data__kinds=ADDSUB, data__detour_rate=0.0),
    "all_4k": cand(pretrain__steps=4000),
    "as_wf3_1k": cand(data__kinds=ADDSUB, data__window_friendly_frac=0.3),
}


def smoke(cands):
    """Two of the candidates, seconds-long (--smoke: a check of the search's plumbing), and their RL list."""
    cands = dict(list(cands.items())[:2])
    for row in cands.values():
        row["pretrain"].update(steps=3, n_train=50, n_val=4, eval_every=0)
        row["sft"].update(steps=2, n_train=20, n_val=4)
        row["rl"].update(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=32, eval_every=0)
    return cands, [dict(lr=1e-4, steps=1)]


if __name__ == "__main__" and "--smoke" in sys.argv:
    C, RL = smoke(C)
if __name__ == "__main__":
    print(json.dumps({k: {"preset": v, "rl": RL} for k, v in C.items()}, indent=1))
