"""eval.py end to end on a tiny random checkpoint (CPU, its main() in this process), and its user errors."""

import json

import pytest
import torch

from checkpoint import save_checkpoint
from conftest import run_main
from data.mathgen import make_problems
from data.tokenizer import encode_prompt, load_tokenizer
from engine import generate
from eval import evaluate, grade
from model import GPT, GPTConfig


def tiny_model(window=16):
    enc = load_tokenizer()
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=256,
                    window=window)
    return GPT(cfg), enc


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(str(path), tiny_model()[0], stage="test")
    return str(path)


def run_eval(*args):
    """`python eval.py args`, run in this process (conftest.run_main)."""
    return run_main("eval", args)


def test_cli_end_to_end(tiny_ckpt, tmp_path):
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    r = run_eval("--ckpt", tiny_ckpt, tiny_ckpt, "--label", "a", "--label", "b", "--n", 4, "--k", 2,
                 "--max-new-tokens", 12, "--batch-size", 3, "--device", "cpu", "--no-progress",
                 "--json", out_json, "--md", out_md)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out_json.read_text())["results"]
    assert [row["label"] for row in rows] == ["a", "b"]
    for row in rows:
        assert row["attention"] == "SWA W=16 (S, sinks 0)" and row["n"] == 4 and row["k"] == 2
        for key in ("greedy_acc", "pass1_sampled", "pass_at_k", "maj_at_k", "extracted", "trunc_rate",
                    "wf_frac"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["dep_far"] is None or 0.0 <= row["dep_far"] <= 1.0  # None: no reused numbers
        assert 0 < row["len_mean"] <= 12 and row["len_p90"] <= 12 and row["tok_per_s"] > 0
        assert row["kv_bytes_per_seq"] > 0 and row["dep_window"] == 16
    # the same checkpoint with the same seed gives the same numbers (timing aside)
    same = lambda row: {k: v for k, v in row.items() if k not in ("label", "tok_per_s")}
    assert same(rows[0]) == same(rows[1])
    table = out_md.read_text()
    assert table.count("\n") == 4 and "| a |" in table and "| b |" in table and table in r.stdout + "\n"


def test_traces_are_the_greedy_completions(tiny_ckpt, tmp_path):
    """--traces: one line per problem and checkpoint, holding what greedy decoding wrote (generate, the same
    batches) and the verdict behind the JSON's greedy accuracy."""
    out_json, out_traces = tmp_path / "r.json", tmp_path / "t.jsonl"
    r = run_eval("--ckpt", tiny_ckpt, tiny_ckpt, "--label", "a", "--label", "b", "--n", 4, "--k", 0,
                 "--max-new-tokens", 12, "--batch-size", 3, "--device", "cpu", "--no-progress",
                 "--json", out_json, "--traces", out_traces)
    assert r.returncode == 0, r.stderr
    traces = [json.loads(line) for line in out_traces.read_text().splitlines()]
    rows = json.loads(out_json.read_text())["results"]
    assert [(t["label"], t["problem"]) for t in traces] == [(x, i) for x in "ab" for i in range(4)]
    assert all("traces" not in row for row in rows)
    model, enc = tiny_model()
    prompts = [encode_prompt(enc, t["question"]) for t in traces[:4]]
    completions = generate(model, prompts[:3], 12, temperature=0.0, eos_id=enc.eot_token, seed=0)[0] + \
        generate(model, prompts[3:], 12, temperature=0.0, eos_id=enc.eot_token, seed=1)[0]
    for t in traces:
        c = completions[t["problem"]]
        stopped = bool(c) and c[-1] == enc.eot_token
        assert t["text"] == enc.decode(c[:-1] if stopped else c) and t["stopped"] == stopped
        assert t["correct"] == (stopped and grade(t["text"], t["gold"]))
    for row in rows:
        assert row["greedy_acc"] == sum(t["correct"] for t in traces if t["label"] == row["label"]) / 4


def test_evaluate_greedy_only_and_full_attention_reference_window():
    model, enc = tiny_model(window=None)
    problems = make_problems(3, split="test", seed=1)
    res = evaluate(model, enc, problems, k=0, max_new_tokens=8, progress=False, ref_window=32)
    assert res["attention"] == "full" and res["dep_window"] == 32
    assert res["pass_at_k"] is None and res["maj_at_k"] is None and res["n"] == 3
    again = evaluate(model, enc, problems, greedy_only=True, max_new_tokens=8, progress=False, ref_window=32)
    assert {k: v for k, v in res.items() if k != "tok_per_s"} == {k: v for k, v in again.items() if k != "tok_per_s"}


def assert_one_line_error(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_checkpoint(tmp_path):
    r = run_eval("--ckpt", tmp_path / "nope.pt", "--n", 2)
    assert_one_line_error(r)
    assert "nope.pt" in r.stderr


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert_one_line_error(run_eval("--ckpt", bad, "--n", 2))


def test_bad_flags(tiny_ckpt, tmp_path):
    assert_one_line_error(run_eval("--ckpt", tiny_ckpt, "--n", 0))
    assert_one_line_error(run_eval("--ckpt", tiny_ckpt, "--label", "a", "--label", "b"))
    assert_one_line_error(run_eval("--ckpt", tiny_ckpt, "--data", tmp_path / "missing.jsonl"))
    assert_one_line_error(run_eval("--ckpt", tiny_ckpt, "--max-new-tokens", 10000, "--n", 1))
    assert_one_line_error(run_eval("--bogus"))


def test_metrics_with_a_scripted_generator(monkeypatch):
    """generate() replaced by a script: greedy writes the reference solutions; samples are right,
    wrong, wrong (the same wrong answer), so pass@1 = 1/3, pass@3 = 1, maj@3 = 0."""
    enc = load_tokenizer()
    cfg = GPTConfig(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=2048,
                    window=64)
    problems = make_problems(4, split="test", seed=3)
    by_prompt = {tuple(encode_prompt(enc, p["question"])): p for p in problems}

    def fake_generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, eos_id=None, seed=None):
        out = []
        for row, prompt in enumerate(prompts):
            p = by_prompt[tuple(prompt)]
            text = p["solution"] if temperature == 0 or row % 3 == 0 else "so it is\n#### 0"
            out.append((enc.encode_ordinary(text) + [eos_id])[:max_new_tokens])
        return out, [[0.0] * len(c) for c in out]
    monkeypatch.setattr("eval.generate", fake_generate)
    res = evaluate(GPT(cfg), enc, problems, k=3, batch_size=3, max_new_tokens=1500, progress=False)
    assert res["greedy_acc"] == 1.0 and res["extracted"] == 1.0 and res["trunc_rate"] == 0.0
    assert abs(res["pass1_sampled"] - 1 / 3) < 1e-9 and res["pass_at_k"] == 1.0 and res["maj_at_k"] == 0.0
    assert res["wf_frac"] == sum(p["style"] == "wf" for p in problems) / 4
    assert res["dep_n"] > 0 and res["dep_mean"] > 0 and res["dep_window"] == 64
    sol_lens = [len(enc.encode_ordinary(p["solution"])) + 1 for p in problems]
    assert res["len_mean"] == sum(sol_lens) / 4


def test_a_cut_off_trace_is_wrong_whatever_its_last_number(monkeypatch):
    """The one rule for "correct": a completion that never produced the end token is wrong, even
    when the last number it wrote is the gold answer (eval once graded it by that number)."""
    enc = load_tokenizer()
    cfg = GPTConfig(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=2048)
    problems = make_problems(3, split="test", seed=4)
    gold = {tuple(encode_prompt(enc, p["question"])): p["answer"] for p in problems}

    def cut_off(model, prompts, max_new_tokens, temperature=1.0, top_k=None, eos_id=None, seed=None):
        out = [enc.encode_ordinary(f"so far {gold[tuple(p)]}")[:max_new_tokens] for p in prompts]   # no end token
        return out, [[0.0] * len(c) for c in out]
    monkeypatch.setattr("eval.generate", cut_off)
    res = evaluate(GPT(cfg), enc, problems, k=2, batch_size=3, max_new_tokens=1500, progress=False)
    assert res["extracted"] == 1.0 and res["trunc_rate"] == 1.0
    assert res["greedy_acc"] == 0.0 and res["pass1_sampled"] == 0.0 and res["maj_at_k"] == 0.0
