"""
A rollout of the full-attention model (random weights of the default model, 256 prompts, 704 new tokens, no eos:
`generate` as rl.py calls it) with its decoding attention computed by each way of decode_split.py, swapped in for
SDPA where a decoding step calls it (issue 12). Runs alternate (ABCABC...); one JSON line per run, then the median.
    python results/wf50/steptime/decode_ab.py > decode_ab.jsonl
With `rl` first, it runs rl.py with the rest of the arguments, decoding the way named by $WAY:
    WAY="split 128" python results/wf50/steptime/decode_ab.py rl --init sft_sa.pt --steps 10 --out st.pt
"""
import json
import os
import runpy
import statistics
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
import bench  # noqa: E402
import model as M  # noqa: E402

dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cuda.enable_cudnn_sdp(False)   # as rl.py
sdpa = F.scaled_dot_product_attention


def matmul(q, k, v, mask):
    B, HKV, G, D = q.shape
    L = k.shape[2]
    bias = mask.view(B, 1, L).expand(B, HKV, L).reshape(B * HKV, 1, L)
    s = torch.baddbmm(bias, q.reshape(B * HKV, G, D), k.view(B * HKV, L, D).transpose(1, 2), alpha=D ** -0.5)
    p = torch.softmax(s, -1, dtype=torch.float32).to(v.dtype)
    return torch.bmm(p, v.view(B * HKV, L, D)).view(B, HKV, G, D)


def split(C):
    def attend(q, k, v, mask):
        B, HKV, G, D = q.shape
        L = k.shape[2]
        n = L // C
        if L % C or n == 1:
            return sdpa(q, k, v, attn_mask=mask)
        mask_c = mask.view(B, 1, n, 1, C).expand(B, HKV, n, G, C).reshape(B, HKV * n, G, C)
        mask_c = mask_c.clamp(min=torch.finfo(mask.dtype).min)   # the model's mask holds -inf
        qc = q[:, :, None].expand(B, HKV, n, G, D).reshape(B, HKV * n, G, D)
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            qc, k.view(B, HKV * n, C, D), v.view(B, HKV * n, C, D), mask_c, True)[:2]
        w = torch.softmax(lse[:, :, :G].view(B, HKV, n, G), 2)
        return torch.einsum("bhcgd,bhcg->bhgd", out.view(B, HKV, n, G, D).float(), w).to(v.dtype)
    return attend


WAYS = {"sdpa": None, "matmul": matmul, "split 128": split(128), "split 64": split(64)}


def use(way):
    def patched(q, k, v, attn_mask=None, **kw):
        if attn_mask is not None and q.shape[2] == 3:   # a decoding step: the G = 3 queries of a key head
            return way(q, k, v, attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)
    F.scaled_dot_product_attention = sdpa if way is None else patched


if sys.argv[1:2] == ["rl"]:
    use(WAYS[os.environ["WAY"]])
    sys.argv = ["rl.py"] + sys.argv[2:]
    runpy.run_path(os.path.join(ROOT, "rl.py"), run_name="__main__")
    sys.exit()
g = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, 1000, (int(torch.randint(60, 100, (), generator=g)),), generator=g).tolist()
           for _ in range(256)]
torch.manual_seed(0)
model = M.GPT(bench.default_config(window=None)).to(dev).eval()
outs, times = {}, {name: [] for name in WAYS}
for name, way in WAYS.items():   # warm-up; the tokens of each way, to compare
    use(way)
    outs[name] = M.generate(model, prompts, 704, temperature=0.0, seed=0)[0]
for rep in range(3):
    for name, way in WAYS.items():
        use(way)
        t = bench.timed(lambda: M.generate(model, prompts, 704, temperature=1.0, seed=0), dev)
        times[name].append(t)
        print(json.dumps({"way": name, "rep": rep, "seconds": round(t, 4)}), flush=True)
for name in WAYS:
    same = sum(a == b for a, b in zip(outs[name], outs["sdpa"]))
    print(json.dumps({"way": name, "median_s": round(statistics.median(times[name]), 4),
                      "greedy_rows_as_sdpa": same}), flush=True)
