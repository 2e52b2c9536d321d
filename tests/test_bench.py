"""bench.py's smoke test (the CPU-sized run CI does), and the CUDA-graph decoding against eager decoding."""
import json

import pytest
import torch

import bench
import engine
import model as M
from engine import generate
from model import GPT, GPTConfig

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def test_quick_bench_runs_every_section(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--quick", "--json", str(out)])
    data = json.loads(out.read_text())
    sections = data["sections"]
    assert data["meta"]["device"] and data["meta"]["quick"]
    assert set(sections) >= {"attention", "decode", "generate", "training"}

    attn = sections["attention"]
    for path in ("SA causal (SDPA)", "SWA dense", "SWA tiled", "SWA flex (model path)",
                 "SWA flex (raw call)"):
        rows = [r for r in attn if r["path"] == path]
        assert rows and all(r["fwd_ms"] > 0 and r["fwd_tflops"] > 0 for r in rows), path
    # flex: no CPU backward
    assert all(r["fwd_bwd_ms"] > 0 for r in attn if not r["path"].startswith("SWA flex"))

    decode = [r for r in sections["decode"] if "error" not in r]
    assert len(decode) == len(sections["decode"]) and all(r["tokens_per_s"] > 0 for r in decode)
    for batch in {r["batch"] for r in decode}:
        rows = [r for r in decode if r["batch"] == batch]
        sliding = {r["context"]: r["kv_cache_mib"] for r in rows if r["attention"] != "full"}
        full = {r["context"]: r["kv_cache_mib"] for r in rows if r["attention"] == "full"}
        assert len(set(sliding.values())) == 1                  # the ring buffer: flat in the context
        if len(full) > 1:
            assert full[max(full)] > 2 * full[min(full)]         # full layers grow with it

    ours = [r for r in sections["generate"] if r["impl"].startswith("swarr")]
    assert ours and all(r["tokens_per_s"] > 0 for r in ours)
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in sections["training"])  # no MFU on CPU


def test_bench_refuses_unknown_sections():
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--only", "decode,nonsense"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("window,sinks,flash", [(None, 0, True), (None, 0, False), (8, 0, True), (8, 2, True)])
def test_cuda_graph_decoding_equals_eager_decoding(monkeypatch, window, sinks, flash):
    """The graphed decode step runs the same kernels as the eager one: identical tokens and
    log-probabilities, eos handling included; and they are the training forward's (bf16 tolerance).
    flash: full layers decode with FlashAttention (as for RL's 256 rows), else with SDPA (3 rows here)."""
    monkeypatch.setattr(engine, "flash_decode_pays", lambda n_seqs, device: flash)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=256,
                    window=window, n_sink=sinks)
    model = GPT(cfg).cuda()
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7], list(range(1, 21))]   # 20 > W
    runs = []
    for graph in (True, False):
        runs.append(generate(model, prompts, 60, temperature=0.8, seed=5, cuda_graph=graph))
        free = generate(model, prompts, 60, temperature=0.0, cuda_graph=graph)
        eos = free[0][0][10]
        runs.append(generate(model, prompts, 60, temperature=0.0, eos_id=eos, cuda_graph=graph))
    for graphed, eager in ((runs[0], runs[2]), (runs[1], runs[3])):
        assert graphed[0] == eager[0]                                  # the same tokens
        for a, b in zip(graphed[1], eager[1]):
            assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)
    assert len(runs[1][0][0]) <= 11
    model.attn_impl = "dense"                                          # no flex compile per length
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for (outs, lps), temperature in ((runs[0], 0.8), (runs[1], 1.0)):   # sampled; greedy, rows stopping
            for p, out, lp in zip(prompts, outs, lps):
                logits = model(torch.tensor([p + out], device="cuda"))[0, len(p) - 1:-1].float() / temperature
                ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out, device="cuda")[:, None])[:, 0]
                assert (torch.tensor(lp, device="cuda") - ref).abs().max() < 0.1
