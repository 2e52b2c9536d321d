"""
One decoding step's attention of one full layer (issue 12: the SA model's RL step is ~0.15 s slower than SWA's,
and the difference is its full layers' decoding attention over the growing cache), several ways, one JSON line per
cache length and way (bf16, batch 256, 6 query heads on 2 key heads of 64; the G = 3 query heads of a key head are
G queries; rows see between L - 128 and L slots, as decode's cache of 128-slot steps gives):
  sdpa        what model.py does now: SDPA with an additive (B, 1, 1, L) mask (memory-efficient kernel)
  cudnn       the same call with only cuDNN's kernel allowed
  matmul      scores by one batched matmul, the mask added, softmax in fp32, one more matmul
  split C     flash-decoding in PyTorch: the cache cut into chunks of C slots that are attended as extra heads
              (one memory-efficient call, which also returns each chunk's log-sum-exp), then merged by those
  flash       FlashAttention-2's variable-length kernel over a (B, L, Hkv, D) cache with per-row lengths
Each timed as 50 calls in one CUDA graph (GPU time, no launch cost); max_abs_diff against sdpa.
    python results/wf50/steptime/decode_split.py > decode_split.jsonl
"""
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from decode_attn import graph_time   # REPS calls in one CUDA graph, median of 5 replays

B, H, HKV, D = 256, 6, 2, 64
G = H // HKV
torch.backends.cuda.enable_cudnn_sdp(False)   # as rl.py
dev = torch.device("cuda")
NEG = torch.finfo(torch.bfloat16).min   # finite: a chunk no row can see gives weight 0, not NaN


g = torch.Generator(dev).manual_seed(0)
for L in (128, 256, 384, 512, 640, 768):
    q = torch.randn(B, HKV, G, D, device=dev, dtype=torch.bfloat16, generator=g)
    k = torch.randn(B, HKV, L, D, device=dev, dtype=torch.bfloat16, generator=g)
    v = torch.randn(B, HKV, L, D, device=dev, dtype=torch.bfloat16, generator=g)
    k_bl, v_bl = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()   # flash's layout
    pos = torch.randint(max(0, L - 128), L, (B,), device=dev, generator=g)
    seen = torch.arange(L, device=dev) <= pos[:, None]                              # (B, L)
    mask = torch.zeros(B, 1, 1, L, device=dev, dtype=torch.bfloat16).masked_fill_(~seen[:, None, None], NEG)
    cu_q = torch.arange(B + 1, device=dev, dtype=torch.int32) * G
    cu_k = torch.arange(B + 1, device=dev, dtype=torch.int32) * L
    used = (pos + 1).int()
    ways = {}

    ways["sdpa"] = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ways["cudnn"] = cudnn

    def matmul():
        s = torch.baddbmm(mask.view(B, 1, L).expand(B, HKV, L).reshape(B * HKV, 1, L),
                          q.view(B * HKV, G, D), k.view(B * HKV, L, D).transpose(1, 2), alpha=D ** -0.5)
        p = torch.softmax(s, -1, dtype=torch.float32).to(v.dtype)
        return torch.bmm(p, v.view(B * HKV, L, D)).view(B, HKV, G, D)
    ways["matmul"] = matmul

    for C in (64, 128, 256):
        if L % C or L == C:
            continue
        n = L // C
        mask_c = mask.view(B, 1, n, 1, C).expand(B, HKV, n, G, C).reshape(B, HKV * n, G, C)   # made once a step

        def split(n=n, C=C, mask_c=mask_c):
            qc = q[:, :, None].expand(B, HKV, n, G, D).reshape(B, HKV * n, G, D)
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                qc, k.view(B, HKV * n, C, D), v.view(B, HKV * n, C, D), mask_c, True)[:2]
            w = torch.softmax(lse[:, :, :G].view(B, HKV, n, G), 2)                     # each chunk's share
            return torch.einsum("bhcgd,bhcg->bhgd", out.view(B, HKV, n, G, D).float(), w).to(v.dtype)
        ways[f"split {C}"] = split

    def flash():
        qf = q.transpose(1, 2).reshape(B * G, HKV, D)
        out = torch.ops.aten._flash_attention_forward(
            qf, k_bl.view(B * L, HKV, D), v_bl.view(B * L, HKV, D), cu_q, cu_k, G, L, 0.0, False, False,
            seqused_k=used)[0]
        return out.view(B, G, HKV, D).transpose(1, 2)
    ways["flash"] = flash

    ref = ways["sdpa"]().float()
    for name, fn in ways.items():
        try:
            diff = (fn().float() - ref).abs().max().item()
            us = graph_time(fn) * 1e6
        except Exception as e:   # a kernel this build lacks: say so and go on
            print(json.dumps({"cache_slots": L, "way": name, "error": str(e)[:200]}), flush=True)
            continue
        gbs = 2 * k.numel() * k.element_size() / (us * 1e-6) / 1e9
        print(json.dumps({"cache_slots": L, "way": name, "us": round(us, 2), "GB_per_s": round(gbs),
                          "max_abs_diff": round(diff, 5)}), flush=True)
