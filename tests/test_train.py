"""pretrain.py, convert.py, sft.py: the loss goes down, resume is exact, conversion touches only the
attention settings, the SFT loss ignores the prompt, and bad input is one line and exit 1."""
import json
import sys

import pytest
import torch

import pretrain
from checkpoint import read_checkpoint, save_checkpoint
from conftest import run_main
from data.mathgen import make_problems
from data.tokenizer import encode_example, load_tokenizer
from model import GPT, GPTConfig
from sft import sft_rows


def run(script, *args):
    """`python script args`, run in this process (conftest.run_main)."""
    return run_main(script.removesuffix(".py"), args)


def metrics(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny pretrained base, trained by the CLI for 30 steps of the tiny preset."""
    path = str(tmp_path_factory.mktemp("base") / "base.pt")
    r = run("pretrain.py", "--preset", "tiny", "--steps", "30", "--eval-every", "30", "--out", path, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    return path


def test_tiny_pretraining_lowers_the_loss(base):
    rows = metrics(base.replace(".pt", ".jsonl"))
    assert rows[-1]["step"] == 30
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.5          # from ~ln(1024) = 6.9 to well below
    assert rows[-1]["val_loss"] < rows[0]["loss"] - 1.5
    ckpt = read_checkpoint(base)
    assert ckpt["meta"]["stage"] == "pretrain" and ckpt["meta"]["train_state"] is None


def train_args(out, *extra):
    ap = pretrain.ArgumentParser("")
    pretrain.add_train_args(ap)
    args = ap.parse_args(["--out", out, "--device", "cpu", "--steps", "6", "--save-every", "3", "--eval-every", "0",
                          *extra])
    for k, v in pretrain.PRESETS["smoke"]["pretrain"].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return pretrain.check_train_args(args)


def small_run(out, crash_at=None, resume=False):
    torch.manual_seed(0)
    enc = load_tokenizer()
    cfg = GPTConfig(vocab_size=1024, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=64, window=16)
    rows = pretrain.rows_of(pretrain.token_stream(enc, make_problems(6, seed=5)), 64)

    def get_batch(step):
        if step == crash_at:
            raise KeyboardInterrupt   # the run dies after its step-3 checkpoint
        return pretrain.batch_at(rows, step, 4, seed=0)
    model = GPT(cfg)
    pretrain.train(model, get_batch, [], train_args(out, *(["--resume"] if resume else [])), {"stage": "pretrain"})
    return model


def test_corpus_rows_are_the_examples_end_to_end():
    """The corpus tokenized in this process and in worker processes (chunks of 4 problems: 3 workers' jobs),
    against the loop written out: every example's ids (prompt, solution, end token) one after another, cut
    into rows of seq_len with y one token ahead of x."""
    enc = load_tokenizer()
    problems = pretrain.generate_problems(9, "train", 3, chunk=4)
    stream = []
    for r in problems:
        stream += encode_example(enc, r["question"], r["solution"])[0]
    n = (len(stream) - 1) // 50
    for x, y, m in (pretrain.rows_of(pretrain.token_stream(enc, problems), 50),
                    pretrain.corpus_rows(9, "train", 3, {}, 50, chunk=4)):
        assert x.shape == (n, 50) and x.dtype == torch.int64 and m.all()
        for i in range(n):
            assert x[i].tolist() == stream[i * 50:(i + 1) * 50]
            assert y[i].tolist() == stream[i * 50 + 1:(i + 1) * 50 + 1]


def test_resume_equals_the_uninterrupted_run(tmp_path):
    straight = small_run(str(tmp_path / "a.pt"))
    with pytest.raises(KeyboardInterrupt):
        small_run(str(tmp_path / "b.pt"), crash_at=4)
    assert read_checkpoint(str(tmp_path / "b.pt"))["meta"]["train_state"]["step"] == 3
    resumed = small_run(str(tmp_path / "b.pt"), resume=True)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    last = lambda f: metrics(str(tmp_path / f))[-1]
    assert last("a.jsonl")["step"] == last("b.jsonl")["step"] == 6
    assert last("a.jsonl")["loss"] == last("b.jsonl")["loss"]


def test_convert_changes_only_the_attention_settings(base, tmp_path):
    out = str(tmp_path / "swa.pt")
    r = run("convert.py", "--init", base, "--window", "32", "--layer-pattern", "SF", "--sinks", "2",
            "--out", out, "--n-val", "4", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["after"] == "SWA W=32 (SF, sinks 2)" and report["kv_bytes_after"] < report["kv_bytes_before"]
    a, b = read_checkpoint(base), read_checkpoint(out)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    changed = {k for k in a["config"] if a["config"][k] != b["config"][k]}
    assert changed == {"window", "layer_pattern", "n_sink"}
    assert b["meta"]["stage"] == "convert" and b["meta"]["history"][-1]["window"] == 32
    assert b["meta"]["data"]["window"] == 32   # the record follows: later stages write traces for W=32


def test_sft_loss_ignores_prompt_tokens():
    enc = load_tokenizer()
    problems = make_problems(3, seed=1)
    x, y, m = sft_rows(enc, problems, 1024)
    for i, r in enumerate(problems):   # the loss covers exactly the solution and its end token
        ids, _ = encode_example(enc, r["question"], r["solution"])
        n_solution = len(enc.encode_ordinary(r["solution"])) + 1
        assert int(m[i].sum()) == n_solution
        assert y[i][m[i]].tolist() == ids[-n_solution:]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=1024))
    with torch.no_grad():
        logits = model(x)
        loss = pretrain.masked_loss(logits, y, m)
        y_prompt, y_sol = y.clone(), y.clone()
        y_prompt[~m] = (y_prompt[~m] + 7) % 1000          # every prompt and padding target changed
        first_sol = m.int().argmax(1)
        y_sol[0, first_sol[0]] = (y_sol[0, first_sol[0]] + 7) % 1000
        assert pretrain.masked_loss(logits, y_prompt, m) == loss
        assert pretrain.masked_loss(logits, y_sol, m) != loss


def test_sft_cli_keeps_attention_and_finishes(base, tmp_path):
    swa = str(tmp_path / "swa.pt")
    assert run("convert.py", "--init", base, "--window", "32", "--out", swa, "--n-val", "0").returncode == 0
    out = str(tmp_path / "sft.pt")
    r = run("sft.py", "--preset", "smoke", "--init", swa, "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    final = json.loads(r.stdout.strip().splitlines()[-1])
    assert final["attention"] == "SWA W=32 (S, sinks 0)" and 0 <= final["val_greedy_acc"] <= 1
    assert read_checkpoint(out)["config"]["window"] == 32


def test_bad_inputs_are_one_line_and_nonzero(base, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    small = tmp_path / "small_vocab.pt"
    save_checkpoint(str(small), GPT(GPTConfig(vocab_size=100, n_layer=1, n_head=2, n_kv_head=1, n_embd=32)))
    cases = [
        ("sft.py", "--init", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o.pt")),
        ("sft.py", "--init", str(junk), "--out", str(tmp_path / "o.pt")),
        ("sft.py", "--init", str(small), "--out", str(tmp_path / "o.pt")),          # mismatched config
        ("sft.py", "--init", base, "--out", str(tmp_path / "o.pt"), "--lr", "-1"),
        ("sft.py", "--init", base, "--out", str(tmp_path / "o.pt"), "--bogus-flag"),
        ("pretrain.py", "--preset", "huge", "--out", str(tmp_path / "o.pt")),
        ("convert.py", "--init", base, "--window", "0", "--out", str(tmp_path / "o.pt")),
        ("convert.py", "--init", base, "--window", "8", "--layer-pattern", "SX", "--out", str(tmp_path / "o.pt")),
        ("convert.py", "--init", base, "--window", "8", "--sinks", "8", "--out", str(tmp_path / "o.pt")),
        ("convert.py", "--init", str(junk), "--window", "8", "--out", str(tmp_path / "o.pt")),
    ]
    for args in cases:
        r = run(*args)
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, r.stderr[-500:])
    assert not (tmp_path / "o.pt").exists()


def test_the_window_flows_from_pretraining_to_every_stage(tmp_path):
    """pretrain --window W: the base's data record holds W, convert slides over W without being told,
    SFT writes its window-friendly traces for W, and eval measures far dependencies against W."""
    base = str(tmp_path / "base.pt")
    r = run("pretrain.py", "--preset", "smoke", "--window", "40", "--window-friendly-frac", "0.7",
            "--out", base, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_checkpoint(base)["meta"]["data"]["window"] == 40
    swa = str(tmp_path / "swa.pt")
    assert run("convert.py", "--init", base, "--out", swa, "--n-val", "0").returncode == 0
    assert read_checkpoint(swa)["config"]["window"] == 40
    sft = str(tmp_path / "sft.pt")
    r = run("sft.py", "--init", base, "--out", sft, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = read_checkpoint(sft)["meta"]
    assert meta["preset"] == "smoke" and meta["data"]["window"] == 40 and meta["data"]["window_friendly_frac"] == 0.7
    assert [h["stage"] for h in meta["history"]] == ["pretrain", "sft"]
    out = tmp_path / "r.json"
    r = run("eval.py", "--ckpt", sft, "--n", "2", "--k", "0", "--max-new-tokens", "8", "--device", "cpu",
            "--no-progress", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["results"][0]["dep_window"] == 40 and res["settings"]["data_knobs"]["window_friendly_frac"] == 0.7


def test_corpus_share_applies_to_pretraining_only(tmp_path, monkeypatch):
    """--corpus-wf-frac sets the window-friendly share of the pretraining corpus; the data record keeps
    --window-friendly-frac (what SFT writes) and the history says what the corpus held."""
    seen = []
    real = pretrain._make_chunk   # the corpus's problems, made in this process (one chunk each for train and val)
    monkeypatch.setattr(pretrain, "_make_chunk", lambda job: seen.append(real(job)) or seen[-1])
    out = str(tmp_path / "base.pt")
    monkeypatch.setattr(sys, "argv", ["pretrain.py", "--preset", "smoke", "--n-train", "40", "--corpus-wf-frac", "1",
                                      "--window-friendly-frac", "0.1", "--out", out, "--device", "cpu"])
    pretrain.main()
    assert len(seen) == 2 and all(r["style"] == "wf" for probs in seen for r in probs)   # train and val
    meta = read_checkpoint(out)["meta"]
    assert meta["data"]["window_friendly_frac"] == 0.1 and meta["history"][0]["corpus_wf_frac"] == 1
