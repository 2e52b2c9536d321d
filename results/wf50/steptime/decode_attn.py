"""
One decoding step's attention of one layer, two ways (issue 12: full attention decodes at ~0.88 ms a step against
sliding's ~0.56 ms, and that difference is attention over the longer cache), one JSON line per cache length:
  sdpa   what model.py does: the G query heads of a key head as G queries, SDPA with an additive (B, 1, 1, L)
         mask over a (B, Hkv, L, D) cache (cuDNN off, as in rl.py: the memory-efficient kernel)
  flash  FlashAttention-2's variable-length kernel over a (B, L, Hkv, D) cache: each row is a segment of L slots of
         which it uses its first pos + 1 (seqused_k), its G queries a segment of G rows, no mask at all
Batch 256, 6 query heads on 2 key heads of 64, bf16; each timed as 50 calls in one CUDA graph (GPU time, no launch
cost); rows see between L/2 and L slots; max_abs_diff: flash against sdpa.
    python results/wf50/steptime/decode_attn.py > decode_attn.jsonl
"""
import json

import torch
import torch.nn.functional as F

B, H, HKV, D, REPS = 256, 6, 2, 64, 50
G = H // HKV
torch.backends.cuda.enable_cudnn_sdp(False)
dev = torch.device("cuda")


def graph_time(fn):
    """Seconds per call of fn, from REPS calls recorded in one CUDA graph (median of 5 replays)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(REPS):
            fn()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / REPS)
    return sorted(times)[2]


if __name__ == "__main__":   # decode_split.py imports graph_time
    g = torch.Generator(dev).manual_seed(0)
    for L in (128, 256, 512, 704, 1024):
        q = torch.randn(B, HKV, G, D, device=dev, dtype=torch.bfloat16, generator=g)
        k_bl = torch.randn(B, L, HKV, D, device=dev, dtype=torch.bfloat16, generator=g)   # flash's layout
        v_bl = torch.randn(B, L, HKV, D, device=dev, dtype=torch.bfloat16, generator=g)
        k_hl, v_hl = k_bl.transpose(1, 2).contiguous(), v_bl.transpose(1, 2).contiguous()   # model.py's layout
        pos = torch.randint(L // 2, L, (B,), device=dev, generator=g)
        mask = torch.zeros(B, 1, 1, L, device=dev, dtype=torch.bfloat16)
        mask.masked_fill_((torch.arange(L, device=dev) > pos[:, None])[:, None, None], float("-inf"))
        cu_q = torch.arange(B + 1, device=dev, dtype=torch.int32) * G
        cu_k = torch.arange(B + 1, device=dev, dtype=torch.int32) * L
        used = (pos + 1).int()

        def sdpa():
            return F.scaled_dot_product_attention(q, k_hl, v_hl, attn_mask=mask)

        def flash():
            qf = q.transpose(1, 2).reshape(B * G, HKV, D)   # row b's G queries of each key head: a segment of G
            out = torch.ops.aten._flash_attention_forward(
                qf, k_bl.view(B * L, HKV, D), v_bl.view(B * L, HKV, D), cu_q, cu_k, G, L, 0.0, False, False,
                seqused_k=used)[0]
            return out.view(B, G, HKV, D).transpose(1, 2)

        diff = (sdpa().float() - flash().float()).abs().max().item()
        print(json.dumps({"cache_slots": L, "sdpa_us": round(graph_time(sdpa) * 1e6, 2),
                          "flash_us": round(graph_time(flash) * 1e6, 2), "max_abs_diff": diff}), flush=True)
