"""What the tests share: the repository on sys.path; run_main, a script run in this process; snapshot (what
"nothing changed on disk" compares), one_line_error, smoke_checkpoint. Tests of over ~5 s are marked `slow`
(pytest.ini); `bash test.sh -m "not slow"` is the edit loop's subset."""
import hashlib
import importlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

# tests import the flat top-level scripts (model.py, eval.py, ...) and the data package
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import common  # noqa: E402
from checkpoint import save_checkpoint  # noqa: E402
from data.tokenizer import load_tokenizer  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402


def run_main(script, args):
    """`python <script>.py args` run in this process, as a subprocess.CompletedProcess (exit code, stdout,
    stderr): for the tests of what a run prints, its exit code and its files, where a new process would spend
    seconds importing torch. Tests of the process itself (signals, locks held by a live pid, what is released
    at exit) start real processes."""
    module = importlib.import_module(script)
    out, err = io.StringIO(), io.StringIO()
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [script, *map(str, args)]
    try:
        with redirect_stderr(err), redirect_stdout(out):
            module.main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
        common.release_outputs()     # as at the exit of a real process
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def snapshot(folder):
    """Every file and folder under `folder` with a hash of its bytes: 'nothing changed on disk'."""
    out = {}
    for d, dirs, names in os.walk(folder):
        for name in dirs + names:
            p = os.path.join(d, name)
            key = os.path.relpath(p, folder)
            if os.path.islink(p):
                out[key] = "-> " + os.readlink(p)
            elif os.path.isdir(p):
                out[key] = "dir"
            else:
                out[key] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def one_line_error(r):
    """A user error as the scripts report it: a non-zero exit and one line on stderr, starting "error: "."""
    lines = r.stderr.strip().splitlines()
    return r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ")


def smoke_checkpoint(path, vocab=None, max_seq_len=1024, tokenizer="data/tokenizer.tiktoken", stage="sft",
                     **unfinished):
    """A tiny hand-made checkpoint of the smoke preset (random weights, seed 0) saved at `path`, with the given
    flaws (another vocabulary, context or tokenizer; `unfinished`: a step and train_state)."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab or load_tokenizer().n_vocab, n_layer=1, n_head=2, n_kv_head=1, n_embd=32,
                    max_seq_len=max_seq_len)
    save_checkpoint(str(path), GPT(cfg), stage=stage, preset="smoke", tokenizer=tokenizer, data={"window": 128},
                    history=[{"stage": stage}], **unfinished)
    return str(path)
