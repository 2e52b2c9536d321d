"""Nothing lost (issue 14), the guarantees that need real processes: a run folder knows the settings that
made it (run.sh's: tests/test_run.py), one writer per output (a live pid holds the lock), no half-written save
left behind, a stage's outputs complete together. Each refusal is one line on stderr, a non-zero exit, and
nothing changed on disk. The table of one-line refusals (outputs that are inputs, values, unreadable inputs) is
tests/test_errors.py, in-process and fast."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import pretrain
import sft
from conftest import one_line_error, run_main, smoke_checkpoint, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    """A tiny hand-made checkpoint of the smoke preset (random weights)."""
    return smoke_checkpoint(tmp_path_factory.mktemp("ckpt") / "a.pt")


@pytest.fixture
def folder(ckpt_file, tmp_path):
    """A folder holding a.pt (the checkpoint), link.pt (a symlink to it) and m.jsonl (a metrics file)."""
    shutil.copy(ckpt_file, tmp_path / "a.pt")
    os.symlink("a.pt", tmp_path / "link.pt")
    (tmp_path / "m.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    return tmp_path


# 1. an output that is one of the run's inputs, and every other one-line refusal: tests/test_errors.py (in-process)

# 2. a checkpoint made with other settings is never continued nor taken as done (stage level)

def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path, monkeypatch):
    """pretrain.py's main() in this process: its exit code, what it prints and the files are what is checked;
    the refusals and "nothing to do" come before the corpus is made (on the default preset, ~30 s)."""
    out = str(tmp_path / "base.pt")
    common = ("--preset", "smoke", "--device", "cpu", "--out", out)
    assert run_main("pretrain", common).returncode == 0
    before = snapshot(tmp_path)

    def no_corpus(*args):
        raise AssertionError("the corpus was made")
    monkeypatch.setattr(pretrain, "generate_problems", no_corpus)
    r = run_main("pretrain", [*common, "--window", "64", "--resume"])   # the finished W=128 run is not a W=64 one
    assert one_line_error(r) and "data.window" in r.stderr, r.stderr[-2000:]
    r = run_main("pretrain", [*common, "--seed", "5", "--resume"])
    assert one_line_error(r) and "seed" in r.stderr, r.stderr[-2000:]
    assert snapshot(tmp_path) == before
    r = run_main("pretrain", [*common, "--resume"])                     # the same settings: done, nothing to do
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert snapshot(tmp_path) == before


def test_sft_says_nothing_to_do_or_refuses_before_its_data(tmp_path, monkeypatch):
    """As pretraining: a finished SFT run with --resume is done, one of another seed is refused, and neither
    makes the SFT data first (what a rerun of run.sh after a cut asks of every finished stage)."""
    init, out = str(tmp_path / "base.pt"), str(tmp_path / "sft.pt")
    smoke_checkpoint(init, stage="pretrain")
    common = ("--init", init, "--preset", "smoke", "--device", "cpu", "--out", out)
    assert run_main("sft", common).returncode == 0
    before = snapshot(tmp_path)

    def no_data(*args):
        raise AssertionError("the SFT data was made")
    monkeypatch.setattr(sft, "generate_problems", no_data)
    r = run_main("sft", [*common, "--seed", "5", "--resume"])
    assert one_line_error(r) and "seed" in r.stderr, r.stderr[-2000:]
    r = run_main("sft", [*common, "--resume"])
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr[-2000:]
    assert snapshot(tmp_path) == before


# 2 and 5 through run.sh (one smoke run made with --force over a folder of another run): tests/test_run.py

# 3. one writer per output

@pytest.mark.slow
def test_an_output_in_use_is_refused_and_a_stale_lock_taken_over(folder):
    out = str(folder / "swa.pt")
    convert = ("convert.py", "--init", str(folder / "a.pt"), "--out", out, "--n-val", "0", "--device", "cpu")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with open(out + ".lock", "w") as f:
            f.write(str(writer.pid))
        before = snapshot(folder)
        r = run(*convert)
        assert one_line_error(r) and f"is in use by pid {writer.pid}" in r.stderr, r.stderr[-2000:]
        assert snapshot(folder) == before
    finally:
        writer.kill()
        writer.wait()
    r = run(*convert)                                        # its writer is dead: the lock is stale
    assert r.returncode == 0, r.stderr[-2000:]
    assert os.path.exists(out) and not os.path.exists(out + ".lock")   # released on exit


def test_the_lock_is_released_when_the_run_fails(folder):
    out = str(folder / "swa.pt")
    r = run("convert.py", "--init", str(folder / "a.pt"), "--out", out, "--n-val", "0", "--device", "cpu",
            "--layer-pattern", "X")
    assert one_line_error(r)
    assert not os.path.exists(out + ".lock")


def test_two_writers_of_one_output(folder):
    """Two real processes: the second is refused while the first holds the output."""
    out = str(folder / "x.svg")
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from common import claim_outputs; "
            "claim_outputs([sys.argv[2]]); print('held', flush=True); time.sleep(120)")
    first = subprocess.Popen([sys.executable, "-c", code, ROOT, out], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        r = run("plot.py", out, str(folder / "m.jsonl"))
        assert one_line_error(r) and f"in use by pid {first.pid}" in r.stderr
    finally:
        first.kill()
        first.wait()


# 4. the temporary file of a save that was killed is removed by the next run on that output

def test_stale_temporary_files_are_removed(folder):
    out = str(folder / "swa.pt")
    stale, live = f"{out}.tmp{dead_pid()}", f"{out}.tmp{os.getpid()}"   # a killed save; a save in progress
    for p in (stale, live):
        open(p, "wb").write(b"half a checkpoint")
    r = run("convert.py", "--init", str(folder / "a.pt"), "--out", out, "--n-val", "0", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not os.path.exists(stale) and os.path.exists(live)
