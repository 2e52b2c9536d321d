"""bench.py's smoke test (the CPU-sized run CI does), the CUDA-graph decoding against eager decoding, and the
GRPO-step section (rlstep): forced lengths, the split of its timings, sampler == trainer on long rollouts."""
import importlib.util
import json
import os
import types

import pytest
import torch

import bench
import engine
from data.mathgen import make_problems
from data.tokenizer import encode_prompt, load_tokenizer
from engine import generate
from model import GPT, GPTConfig
from rl import make_batch, token_logprobs

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def test_the_update_profile_times_each_attention_and_sorts_its_kernels(tmp_path):
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "bench",
                        "profile_update.py")
    spec = importlib.util.spec_from_file_location("profile_update", path)
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    profile.main(["--quick", "--reps", "1", "--json", str(tmp_path / "p.json")])
    rows = json.loads((tmp_path / "p.json").read_text())["results"]
    assert [r["attention"] for r in rows] == ["full", "sliding W=32"]
    for r in rows:
        assert r["tokens"] == r["rows"] * r["seq_len"] == 4 * 96
        assert r["matmul_ms"] > 0 and abs(r["attention_ms"] + r["matmul_ms"] + r["other_ms"] - r["ms"]) < 0.05
        assert [k["ms"] for k in r["top"]] == sorted((k["ms"] for k in r["top"]), reverse=True)
    assert rows[0]["attention_ms"] > 0   # the CPU's SDPA kernel is found by name


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- rlstep: GRPO steps on long traces

def likes_to_stop(eos):
    """A tiny random model whose end token is likely, so free sampling stops early in most rows."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=256, window=8))
    with torch.no_grad():
        u = torch.randn(32)
        model.tok_emb.weight += 0.02 * u                        # a shared direction in every hidden state...
        model.lm_head.weight[eos] = 0.9 * u / u.norm()          # ...that the end token reads
    return model


def test_banned_end_token_changes_only_the_draws_it_would_have_won():
    eos, N = 5, 40
    model = likes_to_stop(eos)
    prompts = [[1, 2, 3], [4, 6, 7, 8, 9, 10, 11, 12, 13, 14], [7] * 5, [9, 9]]
    free, _ = generate(model, prompts, N, temperature=1.0, eos_id=eos, seed=3)
    assert sum(len(c) < N for c in free) >= 2, "the test needs rows that stop early"
    forced, lps = generate(model, prompts, N, temperature=1.0, eos_id=eos, seed=3, ban_eos=True)
    for p, f, c, lp in zip(prompts, free, forced, lps):
        assert len(c) == N and eos not in c
        k = len(f) - 1 if f[-1] == eos else len(f)
        assert c[:k] == f[:k]          # the same noise: the same draws up to the end token...
        # ...and the log-probs are the model's own (eos not taken out), what the trainer scores
        logits = model(torch.tensor([p + c]))[0, len(p) - 1:-1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(lp), ref, atol=1e-5)
    greedy, _ = generate(model, prompts, N, temperature=0.0, eos_id=eos, ban_eos=True)
    for p, c in zip(prompts, greedy):   # against the obvious loop: the argmax over every token but eos
        seq = list(p)
        for _ in range(N):
            with torch.no_grad():
                logits = model(torch.tensor([seq]))[0, -1]
            logits[eos] = float("-inf")
            seq.append(int(logits.argmax()))
        assert c == seq[len(p):]
    with pytest.raises(ValueError):
        generate(model, prompts, N, ban_eos=True)            # nothing to ban


def test_rlstep_forces_every_length_and_splits_the_step(monkeypatch):
    """The section on SA and SWA at smoke size, on a clock that moves only inside the phases' work (3 s per
    generate call, 0.5 s per trainer forward, 0.25 s per judged rollout): each phase's seconds and tokens/s are
    those hand-computed, and every rollout is L tokens with no end token."""
    clock, calls, seen = [0.0], {"generate": 0, "token_logprobs": 0, "judge": 0}, []

    def costs(name, seconds, fn):
        def timed_fn(*args, **kw):
            calls[name] += 1
            clock[0] += seconds
            out = fn(*args, **kw)
            if name == "generate":
                seen.append((args[1], args[2], out[0]))     # prompts, L, completions
            return out
        return timed_fn
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(bench, "generate", costs("generate", 3.0, bench.generate))
    monkeypatch.setattr(bench, "token_logprobs", costs("token_logprobs", 0.5, bench.token_logprobs))
    monkeypatch.setattr(bench, "judge", costs("judge", 0.25, bench.judge))
    report = bench.Report(None, {})
    G, lengths = 3, (20, 70)
    bench.bench_rlstep(report, torch.device("cpu"), quick=True, lengths=lengths, windows=(None, 16), prompts=2,
                       group=G)
    rows = report.data["sections"]["rlstep"]
    assert [(r["attention"], r["new_tokens"]) for r in rows] == [
        ("full", 20), ("full", 70), ("sliding W=16", 20), ("sliding W=16", 70)]
    # per attention a warm-up step, then one per length: each one generate call of 6 rows and one micro-batch
    assert calls == {"generate": 6, "token_logprobs": 6, "judge": 6 * 2 * G}
    eot = load_tokenizer().eot_token
    for prompts, L, comps in seen:
        assert len(comps) == 2 * G and all(len(c) == L and eot not in c for c in comps)
    timed = [s for k, s in enumerate(seen) if k % 3]            # the steps after each warm-up
    for row, (prompts, L, _) in zip(rows, timed):
        assert "error" not in row and row["micro_batches"] == 1 and row["new_tokens"] == L
        assert row["rollout_s"] == pytest.approx(3.0) and row["update_s"] == pytest.approx(0.5)
        assert row["rest_s"] == pytest.approx(2 * G * 0.25)
        assert row["step_s"] == pytest.approx(3.0 + 0.5 + 2 * G * 0.25)
        assert row["rollout_tokens"] == 2 * G * L and row["prompt_tokens"] == sum(map(len, prompts))
        assert row["rollout_tok_s"] == pytest.approx(2 * G * L / 3.0)
        assert row["update_tok_s"] == pytest.approx((sum(map(len, prompts)) + 2 * G * L) / 0.5)
        assert row["completion_len_min"] == row["completion_len_max"] == L and row["end_tokens"] == 0
        assert row["sampler_gap_max"] < 1e-5     # fp32 on CPU: the sampler's log-probs are the trainer's
        assert row["peak_mib"] is None                        # CUDA only
    assert all(r["step_x_vs_full"] == pytest.approx(1.0) for r in rows[2:])


def test_rlstep_runs_from_the_command_line_and_refuses_bad_options(tmp_path, capsys):
    out = tmp_path / "rl.json"
    bench.main(["--quick", "--only", "rlstep", "--rl-lengths", "24", "--rl-windows", "full,8", "--json", str(out)])
    rows = json.loads(out.read_text())["sections"]["rlstep"]
    assert [r["attention"] for r in rows] == ["full", "sliding W=8"]
    for r in rows:   # real timers: the phases cover the step, tokens/s are tokens over seconds
        assert min(r["rollout_s"], r["update_s"], r["rest_s"]) > 0
        assert r["rollout_s"] + r["update_s"] + r["rest_s"] == pytest.approx(r["step_s"])
        assert r["rollout_tok_s"] * r["rollout_s"] == pytest.approx(r["rollouts"] * 24)
        assert r["update_tok_s"] * r["update_s"] == pytest.approx(r["prompt_tokens"] + r["rollouts"] * 24)
    for bad in (["--rl-lengths", "512,x"], ["--rl-windows", "full,0"], ["--rl-group", "1"]):
        with pytest.raises(SystemExit) as e:
            bench.main(["--quick", "--only", "rlstep", *bad])
        assert e.value.code == 1 and len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("window,flash", [(None, True), (None, False), (128, True)])
def test_long_rollouts_log_probs_are_the_trainers_on_cuda(monkeypatch, window, flash):
    """At L = 2048 (16 windows) the sampler's log-probs, decoded from the bf16 cache, are the trainer's
    (token_logprobs on rl.py's training path under bf16 autocast) within bf16 rounding: at most 0.1 as in the
    CUDA-graph test above, and on average far below the gap to the other attention's scores (what a wrong cache
    would give). flash: full layers decode with FlashAttention (rl.py's 256 rows) or SDPA."""
    monkeypatch.setattr(engine, "flash_decode_pays", lambda n_seqs, device: flash)
    enc, L = load_tokenizer(), 2048
    s = bench.rlstep_settings(prompts=2, group=4)
    problems = make_problems(2, split="train", seed=0)
    prompts = [encode_prompt(enc, p["question"]) for p in problems for _ in range(4)]
    models = []
    for w in (window, 128 if window is None else None):   # the model, and the control: the other attention
        torch.manual_seed(0)
        cfg = bench.default_config(vocab_size=enc.n_vocab, window=w, max_seq_len=L + 128)
        models.append(GPT(cfg, attn_impl=s.attn_impl).cuda())
    comps, sampler = bench.forced_rollouts(models[0], prompts, L, enc.eot_token, 1.0, 0, s.gen_batch)
    assert all(len(c) == L and enc.eot_token not in c for c in comps)
    idx, mask = make_batch(prompts, comps, s.pad_multiple, L + 128)
    got = torch.tensor([x for lp in sampler for x in lp], device="cuda")   # rows in order, as x[mask] reads
    gaps = []
    for model in models:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            logp, _ = token_logprobs(model, idx.cuda(), 1.0)
        gaps.append((logp[mask.cuda()] - got).abs())
    assert gaps[0].max() < 0.1
    assert gaps[0].mean() < gaps[1].mean() / 10
