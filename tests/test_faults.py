"""Faults a long run meets (issue 36), at smoke size on the CPU: a full disk, a scheduler's SIGTERM, a second
signal during the save that follows, Ctrl-C. Each ends in one line and a non-zero exit, leaves every file
whole (no temporary file, the previous checkpoint loadable), and --resume then continues exactly: the same
weights and metrics as a run nothing interrupted.

What is real and what is simulated:
- signals are real, sent by the kernel to real processes; their moment is chosen by a hook (a
  sitecustomize.py on PYTHONPATH, written by `hooks` below) that sends them from inside the k-th optimizer
  step, or when a chosen file is opened, so the tests do not depend on timing;
- a full disk is the kernel's ENOSPC from /dev/full: from the moment the test picks (after the k-th optimizer
  step, or when a chosen file is opened), every file under the run folder that is open or opened for writing
  has its descriptor pointed at /dev/full (os.dup2). Only the moment and the folder are simulated; a real disk
  may also write part of the data before refusing the rest (start_metrics drops such a torn line, tested too).
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import checkpoint
import distill
from checkpoint import read_checkpoint
from conftest import run_main, smoke_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# not the run's result: its timings, and the path it wrote
OTHER = {"tokens_per_s", "mfu", "wall_s", "step_time", "rollout_tok_s", "train_tok_s", "eval_time", "out"}
SMOKE = ("--preset", "smoke", "--device", "cpu")
PRETRAIN = ("pretrain.py", *SMOKE, "--steps", "6", "--eval-every", "1", "--save-every", "0")

HOOK = r'''
# Test hook (tests/test_faults.py): sends a real signal at a chosen moment, given as JSON in $FAULT.
import builtins, json, os, signal
fault = json.loads(os.environ.get("FAULT", "{}"))
target = os.getppid() if fault.get("to_parent") else 0
def send(name):
    sig = getattr(signal, name)
    os.killpg(os.getpgid(0), sig) if fault.get("to_group") else os.kill(target or os.getpid(), sig)
    if target:   # the parent passes it on: wait until it is here (a smoke step is shorter than the relay)
        import safety, time
        deadline = time.time() + 30
        while not safety._asked and time.time() < deadline:
            time.sleep(0.01)
if "at_step" in fault:
    import torch
    real_step, count = torch.optim.AdamW.step, [0]
    def step(self, *a, **kw):
        out = real_step(self, *a, **kw)
        count[0] += 1
        if count[0] == fault["at_step"]:
            send(fault["signal"])
        return out
    torch.optim.AdamW.step = step
    if "during_save" in fault:          # a second signal while the checkpoint is being written
        real_save = torch.save
        def save(*a, **kw):
            send(fault["during_save"])
            return real_save(*a, **kw)
        torch.save = save
if "on_open" in fault:                  # a signal once a file whose name holds this text is opened
    real_open = builtins.open
    def hooked_open(file, *a, **kw):
        f = real_open(file, *a, **kw)
        if fault["on_open"] in str(file):
            send(fault["signal"])
        return f
    builtins.open = hooked_open
if "in_worker" in fault:                # ... or once a function runs in a worker process (not the leader)
    import importlib
    module, name = fault["in_worker"].split(":")
    m = importlib.import_module(module)
    real = getattr(m, name)
    def hooked(*a, **kw):
        if os.getpid() != os.getpgid(0):
            send(fault["signal"])
        return real(*a, **kw)
    setattr(m, name, hooked)
'''


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    d = tmp_path_factory.mktemp("hooks")
    (d / "sitecustomize.py").write_text(HOOK)
    return str(d)


def env(hooks, **fault):
    path = os.pathsep.join([hooks, ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "FAULT": json.dumps(fault)}


def run(hooks, *args, fault=None, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env(hooks, **(fault or {})), **kw)


def last_line(text):
    """The last line of stderr (tqdm redraws its bar with carriage returns)."""
    return text.replace("\r", "\n").strip().splitlines()[-1]


def clean_stop(r, text):
    """One line saying what happened, a non-zero exit, no traceback."""
    return r.returncode not in (0, None) and "Traceback" not in r.stderr and text in last_line(r.stderr)


def leftovers(folder):
    """Temporary files and locks a run left behind: none, after any fault."""
    return sorted(f for f in os.listdir(folder) if ".tmp" in f or f.endswith(".lock"))


def weights(path):
    return read_checkpoint(path)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(path):
    """The metrics file's rows without their timings (which differ from run to run) and paths."""
    return [{k: v for k, v in json.loads(line).items() if k not in OTHER} for line in open(path)]


@pytest.fixture(scope="module")
def reference(hooks, tmp_path_factory):
    """PRETRAIN, uninterrupted: what every interrupted and resumed run must end as."""
    out = tmp_path_factory.mktemp("reference") / "b.pt"
    r = run(hooks, *PRETRAIN, "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    return weights(out), rows(out.with_suffix(".jsonl"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished smoke-preset pretraining checkpoint with random weights: SFT's and RL's --init."""
    # max_seq_len: room for the longest example; shorter greedy decoding
    return smoke_checkpoint(tmp_path_factory.mktemp("base") / "base.pt", max_seq_len=640, stage="pretrain")


# ----------------------------------------------------------------------------------------------
# SIGTERM (preemption) and a second signal during the save it starts

@pytest.mark.slow
def test_sigterm_in_pretraining_saves_at_the_step_boundary_and_resume_is_exact(hooks, reference, tmp_path):
    """SIGTERM during step 3, then Ctrl-C while the checkpoint is being written: step 3 is finished and saved
    whole, the run says so in one line and exits 143; --resume ends with the reference's weights and rows."""
    out = tmp_path / "b.pt"
    t0 = time.time()
    r = run(hooks, *PRETRAIN, "--out", str(out), fault={"at_step": 3, "signal": "SIGTERM", "during_save": "SIGINT"})
    assert r.returncode == 143 and clean_stop(r, "stopped by SIGTERM after step 3"), r.stderr[-2000:]
    assert time.time() - t0 < 60
    assert leftovers(tmp_path) == []
    assert read_checkpoint(str(out))["meta"]["train_state"]["step"] == 3
    r = run(hooks, *PRETRAIN, "--out", str(out), "--resume")
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr[-2000:]
    assert same_weights(weights(out), reference[0])
    assert rows(tmp_path / "b.jsonl") == reference[1]


def stop_then_resume(hooks, tmp_path, cmd, step, signal_name, status):
    """`cmd` once uninterrupted (the reference), once with `signal_name` at `step` and SIGTERM while its
    checkpoint is written: one line, exit `status`, nothing left over, a checkpoint resumable at `step`; then
    --resume ends with the reference's weights and metrics rows."""
    r = run(hooks, *cmd, "--out", str(tmp_path / "ref.pt"))
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "s.pt"
    r = run(hooks, *cmd, "--out", str(out), fault={"at_step": step, "signal": signal_name, "during_save": "SIGTERM"})
    assert r.returncode == status and clean_stop(r, f"stopped by {signal_name} after step {step}"), r.stderr[-2000:]
    assert leftovers(tmp_path) == []
    assert read_checkpoint(str(out))["meta"]["train_state"]["step"] == step
    r = run(hooks, *cmd, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert same_weights(weights(out), weights(tmp_path / "ref.pt"))
    assert rows(tmp_path / "s.jsonl") == rows(tmp_path / "ref.jsonl")


@pytest.mark.slow
def test_ctrl_c_in_sft_saves_and_a_second_sigterm_does_not_cut_the_save(hooks, base, tmp_path):
    """Ctrl-C during SFT's step 1 and SIGTERM while its checkpoint is written; --resume ends as a run that
    was not interrupted (made here too: SFT's own reference)."""
    sft = ("sft.py", "--init", base, "--device", "cpu", "--steps", "3", "--eval-every", "1")
    stop_then_resume(hooks, tmp_path, sft, step=1, signal_name="SIGINT", status=130)


@pytest.mark.slow
def test_sigterm_in_rl_saves_at_the_step_boundary_and_resume_is_exact(hooks, base, tmp_path):
    """SIGTERM during RL's step 2 and again while its checkpoint is written; --resume ends as a run that was
    not interrupted (made here too)."""
    rl = ("rl.py", "--init", base, *SMOKE, "--steps", "3", "--save-every", "0", "--eval-every", "2")
    stop_then_resume(hooks, tmp_path, rl, step=2, signal_name="SIGTERM", status=143)


@pytest.mark.slow
def test_run_sh_passes_sigterm_on_and_stops_the_recipe(hooks, tmp_path):
    """The pretraining stage sends SIGTERM to run.sh (its parent) during its first step: run.sh passes it on,
    the stage saves and says so, and the recipe stops there (no convert), exiting 143; nothing is left."""
    out = tmp_path / "r"
    r = subprocess.run(["bash", "run.sh", "--preset", "smoke", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=env(hooks, at_step=1, signal="SIGTERM", to_parent=True))
    assert r.returncode == 143, (r.returncode, r.stderr[-3000:])
    assert "stopped by SIGTERM after step 1" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert last_line(r.stderr).startswith("run.sh: stopped by SIGTERM")
    assert "convert to SWA" not in r.stdout
    assert read_checkpoint(str(out / "base.pt"))["meta"]["train_state"]["step"] == 1
    assert leftovers(out) == []


# ----------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM outside a training loop: one line, nothing half-written

@pytest.mark.parametrize("sig, code, text", [("SIGINT", -signal.SIGINT, "interrupted (Ctrl-C)"),
                                             ("SIGTERM", 143, "stopped by SIGTERM")])
def test_a_signal_while_eval_writes_its_table(hooks, base, tmp_path, sig, code, text):
    table = tmp_path / "r.json"
    r = run(hooks, "eval.py", "--ckpt", base, "--n", "2", "--k", "1", "--max-new-tokens", "4", "--device", "cpu",
            "--json", str(table), fault={"on_open": "r.json.tmp", "signal": sig})
    assert r.returncode == code and clean_stop(r, text), r.stderr[-2000:]   # (after eval's progress bars)
    assert os.listdir(tmp_path) == []                      # no table, no temporary file, no lock


def test_ctrl_c_in_the_corpus_build_is_one_line_from_every_process(hooks, tmp_path):
    """Ctrl-C at a terminal reaches the whole process group: pretraining's corpus workers too (each printed a
    traceback). The hook sends SIGINT to the group from inside a worker's chunk of the corpus."""
    out = tmp_path / "b.pt"
    r = run(hooks, *PRETRAIN, "--n-train", "4001", "--out", str(out), start_new_session=True,
            fault={"in_worker": "data.mathgen:make_problems", "signal": "SIGINT", "to_group": True})
    assert r.returncode == -signal.SIGINT, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and last_line(r.stderr).startswith("interrupted (Ctrl-C)"), r.stderr[-3000:]
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# A full disk

class FullDisk:
    """Every write to a file under `folder` fails with the kernel's ENOSPC from the moment `fill()` is called:
    files already open (their descriptors are pointed at /dev/full) and files opened from then on (through
    open(), which every writer of the project uses). `free()`: the space is back."""

    def __init__(self, folder, monkeypatch):
        self.folder, self.full = str(folder), False
        self.real_open = open
        monkeypatch.setattr("builtins.open", self.open)

    def writing(self, path, flags):
        return os.path.realpath(path).startswith(os.path.realpath(self.folder) + os.sep) and flags & 3

    def point_at_dev_full(self, fd):
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)
        os.close(full)

    def fill(self):
        self.full = True
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
                flags = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
            except OSError:
                continue
            if path.startswith("/") and self.writing(path, flags):   # not "pipe:[...]" and the like
                self.point_at_dev_full(fd)

    def free(self):
        self.full = False

    def open(self, file, mode="r", *a, **kw):
        f = self.real_open(file, mode, *a, **kw)
        if self.full and isinstance(file, (str, os.PathLike)) and self.writing(file, int(any(c in mode for c in "wax+"))):
            self.point_at_dev_full(f.fileno())
        return f


def call(script, args):
    """Run `python <script> args` in this process (conftest.run_main): (exit code, stderr)."""
    r = run_main(script, args)
    return r.returncode, r.stderr


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full") or not os.path.isdir("/proc/self/fd"),
                                    reason="simulates a full disk with /dev/full and /proc (Linux)")


@pytest.fixture
def after_step(monkeypatch):
    """after_step(k, f): f() runs once the k-th optimizer step is taken."""
    def arm(k, f):
        real, count = torch.optim.AdamW.step, [0]

        def step(self, *a, **kw):
            out = real(self, *a, **kw)
            count[0] += 1
            if count[0] == k:
                f()
            return out
        monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return arm


ARGS = ["--preset", "smoke", "--device", "cpu", "--steps", "6", "--save-every", "2"]


@needs_dev_full
@pytest.mark.parametrize("what, fill_at, eval_every, saved", [
    ("the checkpoint", 3, "0", 2),     # full during step 3: the save at step 4 fails, step 2's stays
    ("the metrics", 3, "1", 2),        # full during step 3: its metrics row fails, step 2's checkpoint stays
])
def test_a_full_disk_during_pretraining(tmp_path, monkeypatch, after_step, what, fill_at, eval_every, saved):
    monkeypatch.chdir(tmp_path)
    args = [*ARGS, "--eval-every", eval_every]
    assert call("pretrain", [*args, "--out", "ref.pt"])[0] == 0
    disk = FullDisk(tmp_path, monkeypatch)
    after_step(fill_at, disk.fill)
    code, err = call("pretrain", [*args, "--out", "b.pt"])
    path = "b.pt" if what == "the checkpoint" else "b.jsonl"
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert f"cannot write {path} (No space left on device)" in last_line(err), err[-2000:]
    assert read_checkpoint("b.pt")["meta"]["train_state"]["step"] == saved      # the previous one, whole
    assert leftovers(tmp_path) == []
    monkeypatch.undo()                  # the space is back
    monkeypatch.chdir(tmp_path)
    code, err = call("pretrain", [*args, "--out", "b.pt", "--resume"])
    assert code == 0, err[-2000:]
    assert same_weights(weights("b.pt"), weights("ref.pt"))
    assert rows("b.jsonl") == rows("ref.jsonl")


@needs_dev_full
@pytest.mark.parametrize("script, args, path", [
    ("eval", ["--n", "2", "--k", "1", "--max-new-tokens", "4", "--json", "t.json"], "t.json"),      # a table
    ("distill", ["--n", "2", "--batch-size", "2", "--out", "c.jsonl"], "c.jsonl"),                # a corpus
    ("data.mathgen", ["--n", "5", "--out", "p.jsonl"], "p.jsonl"),                                 # a corpus
])
def test_a_full_disk_while_a_script_writes_its_output(tmp_path, monkeypatch, base, script, args, path):
    monkeypatch.chdir(tmp_path)
    disk = FullDisk(tmp_path, monkeypatch)
    real_open = disk.open

    def fill_on_open(file, mode="r", *a, **kw):  # the disk fills as the output is being written
        if str(file).startswith(path + ".tmp"):
            disk.fill()
        return real_open(file, mode, *a, **kw)
    monkeypatch.setattr("builtins.open", fill_on_open)
    if script == "distill":            # a random model is never right: every sample is kept instead
        monkeypatch.setattr(distill, "judge", lambda enc, completion, answer: (True, None, "1 + 1 = 2"))
    model = ["--ckpt", base, "--device", "cpu"] if script != "data.mathgen" else []
    code, err = call(script, [*model, *args])
    assert code == 1 and len(err.strip().splitlines()) >= 1, err[-2000:]
    assert last_line(err) == f"error: cannot write {path} (No space left on device)", err[-2000:]
    assert os.listdir(tmp_path) == []


def test_a_line_a_full_disk_cut_short_is_dropped_on_resume(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    checkpoint.start_metrics(str(path), 2)
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'


def test_enospc_is_the_real_errno():
    """The simulation's error is the kernel's own (what a full disk gives), not one made up by the test."""
    with pytest.raises(OSError) as e, open("/dev/full", "w") as f:
        f.write("x")
    assert e.value.errno == errno.ENOSPC
