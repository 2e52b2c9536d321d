"""Nothing cryptic (issue 14): every user error of every script is one line on stderr and a non-zero exit,
with nothing changed on disk. One table of (command, expected text), run in-process through each script's
main() (a subprocess per case would take minutes: each imports torch), in a folder of tiny files.
The slow guarantees (kills, resumes, run.sh, two real processes) are in test_safety.py."""
import json
import os
import pickle
import subprocess
import warnings

import pytest
import torch

import sft
from conftest import run_main, smoke_checkpoint, snapshot
from data.tokenizer import load_tokenizer

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0   # chmod does not stop root: no read-only case then


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every input a case needs, made once; each case runs in a copy of it (`folder`)."""
    d = tmp_path_factory.mktemp("inputs")
    smoke_checkpoint(d / "a.pt")
    smoke_checkpoint(d / "half.pt", step=3, train_state={"step": 3})        # a run stopped mid-way
    smoke_checkpoint(d / "short.pt", max_seq_len=32)                        # too short for the task
    smoke_checkpoint(d / "notok.pt", tokenizer=str(d / "gone.tiktoken"))    # its tokenizer is missing
    smoke_checkpoint(d / "badtok.pt", tokenizer=str(d / "a.pt"))            # its tokenizer is no tokenizer
    smoke_checkpoint(d / "bigvocab.pt", vocab=load_tokenizer().n_vocab + 10)  # ids the tokenizer cannot decode
    (d / "junk.pt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    (d / "m.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    (d / "s.jsonl").write_text(json.dumps({"question": "q", "solution": "s"}) + "\n")
    (d / "gsm.jsonl").write_text(json.dumps({"question": "q", "answer": "2 + 2 = 4\n#### 4"}) + "\n")
    (d / "empty.jsonl").write_text("")
    (d / "bin.jsonl").write_bytes(bytes(range(128, 256)))
    (d / "bad.jsonl").write_text("{not json\n")
    (d / "noanswer.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    (d / "nohash.jsonl").write_text(json.dumps({"question": "q", "answer": "four"}) + "\n")
    (d / "nostep.jsonl").write_text(json.dumps({"reward": 0.5}) + "\n")
    (d / "sub").mkdir()
    (d / "sub" / "keep").write_text("a folder that is no output path")
    (d / "ro").mkdir()
    os.symlink("a.pt", d / "link.pt")
    return d


@pytest.fixture
def folder(files, tmp_path, monkeypatch):
    for name in os.listdir(files):
        src = files / name
        if src.is_symlink():
            os.symlink(os.readlink(src), tmp_path / name)
        elif src.is_dir():
            os.system(f"cp -r '{src}' '{tmp_path / name}'")
        else:
            (tmp_path / name).write_bytes(src.read_bytes())
    os.chmod(tmp_path / "ro", 0o555)
    monkeypatch.chdir(tmp_path)              # relative paths: an output made by mistake lands here, in view
    yield tmp_path
    os.chmod(tmp_path / "ro", 0o755)


def call(script, args):
    """Run `python <script> args` in this process (conftest.run_main): (exit code, stderr)."""
    r = run_main(script, args)
    return r.returncode, r.stderr


SMOKE = ("--preset", "smoke", "--device", "cpu")
CPU = ("--device", "cpu")

# (script, arguments, text the one line must hold)
CASES = [
    # data loss: an output that is one of the run's inputs (or another output), compared resolved
    ("convert", ["--init", "a.pt", "--out", "a.pt", "--n-val", "0", *CPU], "input of this run"),
    ("convert", ["--init", "a.pt", "--out", "link.pt", "--n-val", "0", *CPU], "input of this run"),
    ("convert", ["--init", "./a.pt", "--out", "a.pt", "--n-val", "0", *CPU], "input of this run"),
    ("sft", ["--init", "a.pt", "--out", "a.pt", *CPU], "input of this run"),
    ("sft", ["--init", "a.pt", "--out", "b.pt", "--metrics", "a.pt", *CPU], "input of this run"),
    ("sft", ["--init", "a.pt", "--out", "s.pt", "--data", "s.jsonl", *CPU], "input of this run"),  # metrics = --data
    ("rl", ["--init", "a.pt", "--out", "a.pt", *CPU], "input of this run"),
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--metrics", "link.pt", *CPU], "input of this run"),
    ("pretrain", ["--out", "b.pt", "--metrics", "b.pt", *SMOKE], "same file"),
    ("eval", ["--ckpt", "a.pt", "--json", "a.pt", *CPU], "input of this run"),
    ("eval", ["--ckpt", "a.pt", "--md", "link.pt", *CPU], "input of this run"),
    ("eval", ["--ckpt", "a.pt", "--json", "r.json", "--md", "r.json", *CPU], "same file"),
    ("plot", ["m.jsonl", "m.jsonl"], "input of this run"),
    ("distill", ["--ckpt", "a.pt", "--out", "a.pt", *CPU], "input of this run"),
    # --resume on an --out that is no run of this stage and settings
    ("pretrain", ["--out", "junk.pt", "--resume", *SMOKE], "not a readable checkpoint"),
    ("pretrain", ["--out", "a.pt", "--resume", *SMOKE], "not a pretrain run"),
    ("sft", ["--init", "a.pt", "--out", "junk.pt", "--resume", *CPU], "not a readable checkpoint"),
    # an unfinished run as the input of the next stage
    ("convert", ["--init", "half.pt", "--out", "b.pt", "--n-val", "0", *CPU], "half.pt is an unfinished sft run (step 3)"),
    ("sft", ["--init", "half.pt", "--out", "b.pt", *CPU], "finish it with --resume first"),
    ("rl", ["--init", "half.pt", "--out", "b.pt", *CPU], "half.pt is an unfinished sft run"),
    # values: refused where typed
    ("pretrain", ["--out", "b.pt", "--lr", "nan", *SMOKE], "must be finite"),
    ("pretrain", ["--out", "b.pt", "--lr", "inf", *SMOKE], "must be finite"),
    ("pretrain", ["--out", "b.pt", "--n-train", "0", *SMOKE], "--n-train: must be >= 1"),
    ("pretrain", ["--out", "b.pt", "--n-val", "-1", *SMOKE], "--n-val: must be >= 1"),
    ("pretrain", ["--out", "b.pt", "--n-embd", "0", *SMOKE], "--n-embd: must be >= 1"),
    ("pretrain", ["--out", "b.pt", "--n-layer", "0", *SMOKE], "--n-layer: must be >= 1"),
    ("pretrain", ["--out", "b.pt", "--grad-clip", "nan", *SMOKE], "--grad-clip: must be finite"),
    ("pretrain", ["--out", "b.pt", "--warmup", "-1", *SMOKE], "--warmup: must be >= 0"),
    ("pretrain", ["--out", "b.pt", "--save-every", "-1", *SMOKE], "--save-every: must be >= 0"),
    ("pretrain", ["--out", "b.pt", "--eval-every", "-5", *SMOKE], "--eval-every: must be >= 0"),
    ("pretrain", ["--out", "b.pt", "--data-knobs", "[1, 2]", *SMOKE], "must be a JSON object"),
    ("pretrain", ["--out", "b.pt", "--data-knobs", '{"n_events": [5, 2]}', *SMOKE], "n_events must be"),
    ("pretrain", ["--out", "b.pt", "--data-knobs", '{"n_people": 0}', *SMOKE], "n_people must be"),
    ("pretrain", ["--out", "b.pt", "--preset", "huge", "--device", "cpu"], "invalid choice"),
    ("pretrain", ["--out", "b.pt", "--preset", "smoke", "--device", "bogus"], "--device must be"),
    ("sft", ["--init", "a.pt", "--out", "b.pt", "--n-val", "-1", *CPU], "--n-val: must be >= 1"),
    ("sft", ["--init", "a.pt", "--out", "b.pt", "--lr", "-1", *CPU], "--lr: must be > 0"),
    ("sft", ["--init", "a.pt", "--out", "b.pt", "--bogus-flag", *CPU], "unrecognized arguments"),
    ("eval", ["--ckpt", "a.pt", "--top-k", "-1", *CPU], "--top-k: must be >= 1"),
    ("eval", ["--ckpt", "a.pt", "--temperature", "nan", *CPU], "--temperature: must be finite"),
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--temperature", "nan", *CPU], "--temperature: must be finite"),
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--clip-low", "-0.1", *CPU], "--clip-low: must be >= 0"),
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--beta", "-1", *CPU], "--beta: must be >= 0"),
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--warmup-steps", "-1", *CPU], "--warmup-steps: must be >= 0"),
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--group-size", "1", *CPU], "--group-size must be >= 2"),
    ("convert", ["--init", "a.pt", "--out", "b.pt", "--window", "0", *CPU], "--window: must be >= 1"),
    ("convert", ["--init", "a.pt", "--out", "b.pt", "--layer-pattern", "SX", *CPU], "layer_pattern"),
    ("distill", ["--ckpt", "a.pt", "--out", "x.jsonl", "--n", "0", *CPU], "--n: must be >= 1"),
    ("convert", ["--init", "a.pt", "--out", "b.pt", "--device", "cuda"], "CUDA is not available"),
    ("bench", ["--quick", "--device", "cuda"], "CUDA is not available"),
    # outputs that cannot be written: found before any work
    ("pretrain", ["--out", "sub", *SMOKE], "is a directory"),
    ("pretrain", ["--out", "m.jsonl/x.pt", *SMOKE], "cannot write"),
    ("convert", ["--init", "a.pt", "--out", "sub", *CPU], "is a directory"),
    ("pretrain", ["--out", "ro/b.pt", *SMOKE], "cannot write"),
    ("plot", ["ro/o.svg", "m.jsonl"], "cannot write"),
    # checkpoints: missing, unreadable, a model too short for the task, a tokenizer that does not fit
    ("sft", ["--init", "missing.pt", "--out", "b.pt", *CPU], "not found"),
    ("sft", ["--init", "junk.pt", "--out", "b.pt", *CPU], "not a readable checkpoint"),
    ("sft", ["--init", "short.pt", "--out", "b.pt", *CPU], "max_seq_len=32 is too short"),
    ("convert", ["--init", "short.pt", "--out", "b.pt", *CPU], "max_seq_len=32 is too short"),
    ("rl", ["--init", "short.pt", "--out", "b.pt", *CPU], "max_seq_len=32 is too short"),
    ("eval", ["--ckpt", "a.pt", "short.pt", *CPU], "max_seq_len=32 is too short"),
    ("rl", ["--init", "notok.pt", "--out", "b.pt", *CPU], "cannot read its tokenizer"),
    ("sft", ["--init", "notok.pt", "--out", "b.pt", *CPU], "cannot read its tokenizer"),
    ("eval", ["--ckpt", "badtok.pt", *CPU], "is not a tokenizer file"),
    ("eval", ["--ckpt", "bigvocab.pt", *CPU], "has vocab_size"),
    ("distill", ["--ckpt", "bigvocab.pt", "--out", "x.jsonl", *CPU], "has vocab_size"),
    # JSON-lines inputs: missing, empty, binary, malformed, without the keys
    ("sft", ["--init", "a.pt", "--out", "b.pt", "--data", "empty.jsonl", *CPU], "no records"),
    ("sft", ["--init", "a.pt", "--out", "b.pt", "--data", "m.jsonl", *CPU], "question, solution"),
    ("eval", ["--grader-speed", "missing.jsonl"], "file not found"),
    ("eval", ["--grader-speed", "empty.jsonl"], "no records"),
    ("eval", ["--grader-speed", "bin.jsonl"], "not a text file"),
    ("eval", ["--grader-speed", "bad.jsonl"], "not JSON"),
    ("eval", ["--grader-speed", "noanswer.jsonl"], "with answer"),
    ("eval", ["--grader-speed", "nohash.jsonl"], "does not end in '#### N'"),
    ("eval", ["--ckpt", "a.pt", "--data", "bad.jsonl", *CPU], "malformed GSM8K line"),
    ("eval", ["--ckpt", "a.pt", "--data", "bin.jsonl", *CPU], "can't decode"),
    # the small CLIs
    ("plot", ["o.svg", "missing.jsonl"], "file not found"),
    ("plot", ["o.svg", "empty.jsonl"], "no records"),
    ("plot", ["o.svg", "bin.jsonl"], "not a text file"),
    ("plot", ["o.svg", "bad.jsonl"], "not JSON"),
    ("plot", ["o.svg", "nostep.jsonl"], "with step"),
    ("plot", ["o.svg"], "required"),
    ("plot", ["--foo", "m.jsonl"], "unknown option --foo"),
    ("plot", ["o.svg", "--foo"], "unknown option --foo"),
    ("plot", ["sub", "m.jsonl"], "is a directory"),
    ("plot", ["new/o.svg", "missing.jsonl"], "file not found"),        # and the folder made for it is gone
    ("bench", ["--json", "sub", "--quick"], "is a directory"),
    ("bench", ["--only", "foo", "--quick"], "unknown section"),
    ("bench", ["--device", "bogus"], "--device must be"),
    ("data.mathgen", ["--n", "0", "--out", "p.jsonl"], "--n: must be >= 1"),
    ("data.mathgen", ["--n", "2", "--n_events", "5", "2"], "n_events must be"),
    ("data.mathgen", ["--n", "2", "--distractors", "3", "1"], "distractors must be"),
    ("data.mathgen", ["--n", "2", "--n_people", "0"], "n_people must be"),
    ("data.mathgen", ["--n", "2", "--n_people", "12", "--n_events", "20", "20"], "almost no problem that fits"),
    ("pretrain", ["--out", "b.pt", "--data-knobs", '{"n_people": 12, "n_events": [20, 20]}', *SMOKE],
     "almost no problem that fits"),
    ("data.mathgen", ["--n", "2", "--window", "0"], "--window: must be >= 1"),
    ("data.mathgen", ["--n", "2", "--window_friendly_frac", "2"], "must be <= 1"),
    ("data.mathgen", ["--n", "2", "--detour_rate", "nan"], "must be finite"),
    ("data.mathgen", ["--n", "2", "--out", "sub"], "is a directory"),
    ("data.mathgen", ["--n", "2", "--out", "ro/p.jsonl"], "cannot write"),
    ("data.mathgen", ["--bogus"], "unrecognized arguments"),
    ("data.tokenizer", ["--vocab", "10", "--out", "t.tiktoken"], "--vocab: must be >= 259"),
    ("data.tokenizer", ["--check", "--out", "missing.tiktoken"], "cannot read"),
    ("data.tokenizer", ["--check", "--out", "a.pt"], "not a tokenizer file"),
    ("data.tokenizer", ["--out", "sub"], "is a directory"),
    ("data.gsm8k", ["missing.jsonl"], "cannot read"),
    ("data.gsm8k", ["empty.jsonl"], "no problems"),
    ("data.gsm8k", ["bin.jsonl"], "not a text file"),
    ("data.gsm8k", ["bad.jsonl"], "malformed GSM8K line"),
    ("data.gsm8k", ["nohash.jsonl"], "does not end in '#### N'"),
    ("data.gsm8k", ["sub"], "cannot read"),
]


@pytest.mark.parametrize("script, args, message", CASES, ids=[" ".join([s, *a]) for s, a, _ in CASES])
def test_a_user_error_is_one_line(folder, script, args, message):
    if ROOT_USER and any(a.startswith("ro/") for a in args):
        pytest.skip("running as root: a read-only folder does not stop root")
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    before = snapshot(folder)
    code, err = call(script, args)
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and lines[0].startswith("error: "), (code, err[-2000:])
    assert message in lines[0], lines[0]
    assert snapshot(folder) == before


def test_a_finished_run_is_not_extended_by_resume(folder):
    """--resume on a finished run whose --steps differ is refused ("nothing to do" only for the same run)."""
    args = ["--init", "a.pt", "--out", "r.pt", "--steps", "1", "--prompts-per-step", "1", "--group-size", "2",
            "--max-new-tokens", "4", *CPU]
    assert call("rl", args)[0] == 0
    before = snapshot(folder)
    code, err = call("rl", [*args[:5], "2", *args[6:], "--resume"])
    assert code == 1 and "finished at step 1, not 2" in err and len(err.strip().splitlines()) == 1
    assert call("rl", [*args, "--resume"])[0] == 0            # the same run: done, nothing to do
    assert snapshot(folder) == before


def test_sft_killed_before_its_final_row_writes_it_on_resume(folder, monkeypatch):
    """The final evaluation row and the finished checkpoint come together: a kill between them resumes
    at the last step (no training again) and writes the row, once."""
    args = ["--init", "a.pt", "--out", "f.pt", "--resume", *CPU]

    def killed(*a, **kw):
        raise KeyboardInterrupt
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(sft, "greedy_accuracy", killed)
        call("sft", args)
    state = torch.load("f.pt", weights_only=True)["meta"]["train_state"]
    assert state["step"] == 2                                    # trained, not finished
    code, err = call("sft", args)
    assert code == 0, err[-2000:]
    rows = [json.loads(line) for line in open("f.jsonl")]
    assert [r["stage"] for r in rows] == ["sft", "sft", "sft_final"]
    assert torch.load("f.pt", weights_only=True)["meta"]["train_state"] is None


# ----------------------------------------------------------------------------------------------
# the last rough edges (issue 36): each one line and exit 1, with nothing changed on disk

EDGES = [
    # a folder that is no checkpoint nor a Hugging Face model folder: what was expected, not config.json's errno
    ("sft", ["--init", "sub", "--out", "b.pt", *CPU], "sub is a folder without config.json: expected a swarr"),
    ("eval", ["--ckpt", "sub", *CPU], "expected a swarr checkpoint (.pt) or a Hugging Face model folder"),
    # RL with no steps printed "wrote out.pt, out.jsonl, out.svg" and made only an empty out.jsonl
    ("rl", ["--init", "a.pt", "--out", "b.pt", "--steps", "0", *CPU], "--steps: must be >= 1"),
    # a raw pickle: torch's two-line protocol warning came before the one line
    ("eval", ["--ckpt", "raw.pt", *CPU], "raw.pt is not a readable checkpoint"),
]


@pytest.mark.parametrize("script, args, message", EDGES, ids=[" ".join([s, *a]) for s, a, _ in EDGES])
def test_a_rough_edge_is_one_line(folder, script, args, message):
    with open("raw.pt", "wb") as f:
        pickle.dump({"model": [1.0, 2.0]}, f, protocol=4)   # a pickle, not torch's zip format
    before = snapshot(folder)
    with warnings.catch_warnings(record=True) as caught:    # a warning prints its own lines first
        warnings.simplefilter("always")
        code, err = call(script, args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), (code, err[-2000:])
    assert message in lines[0], lines[0]
    assert [str(w.message) for w in caught] == []
    assert snapshot(folder) == before


@pytest.mark.parametrize("args, message", [
    pytest.param(["--preset", "bogus"], "error: unknown preset 'bogus'; known: smoke, tiny, cpu, default",
                 marks=pytest.mark.slow),                                                         # was a KeyError
    (["--preset"], "error: --preset needs a value (see bash run.sh --help)"),                     # was bash's $2
])
def test_run_sh_option_errors_are_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(["bash", "run.sh", "--out", str(out), *args], cwd=root, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [message], r.stderr[-2000:]
    assert not out.exists()
