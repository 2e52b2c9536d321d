"""run.sh end to end on the smoke preset, one run shared by the tests below (each run.sh is ~35 s on 2 cores):
every stage runs and the results table has every row; --force starts over in a folder of another run; other
settings are refused; a second run redoes only what is missing (here convert's report, as after a kill
between the checkpoint and the report) and finds every trained stage done; a model newer than the evaluation
(an RL run redone) has the evaluation made again (it is skipped when every model is older)."""
import json
import os
import subprocess

import pytest

from checkpoint import read_checkpoint
from conftest import one_line_error, smoke_checkpoint, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LABELS = ["SA base, no SFT", "SWA converted, no SFT", "SA + SFT", "SWA + SFT", "SA + SFT + RL (seed 0)",
          "SWA + SFT + RL (seed 0)"]

pytestmark = pytest.mark.slow


def run_sh(*args):
    return subprocess.run(["bash", "run.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One smoke run, made with --force over a folder holding another run's settings, checkpoint and RL seed."""
    out = tmp_path_factory.mktemp("run") / "r"
    out.mkdir()
    (out / "run.json").write_text('{"preset": "smoke", "seed": "3"}\n')
    smoke_checkpoint(out / "base.pt")
    (out / "rl_sa_s9.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    r = run_sh("--preset", "smoke", "--out", str(out), "--force")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


def test_every_stage_runs_and_the_table_has_every_row(run):
    out, stdout = run
    rows = json.load(open(out / "results.json"))["results"]
    assert [r["label"] for r in rows] == LABELS   # the base rows first
    table = (out / "results.md").read_text()
    # the base report, printed after pretraining and kept: a smoke base solves nothing, so the draw is weak
    assert "## The base (before SFT)" in table and "weak draw" in table
    assert "weak draw" in stdout.split("SFT of the SA model")[0]
    for label in LABELS:
        assert label in table
    assert (out / "rl_curves.svg").exists()


def test_force_starts_over(run):
    out, _ = run
    assert not (out / "rl_sa_s9.jsonl").exists()       # the old run's outputs are gone
    assert read_checkpoint(str(out / "base.pt"))["meta"]["stage"] == "pretrain"
    record = json.loads((out / "run.json").read_text())
    assert record["preset"] == "smoke" and record["seed"] == "0" and record["window"] == "preset"
    assert "rl_sa_s9" not in (out / "rl_curves.svg").read_text()


def test_other_settings_are_refused_in_one_line(run):
    out, _ = run
    before = snapshot(out)
    r = run_sh("--preset", "smoke", "--out", str(out), "--window", "64", "--seed", "5")
    assert one_line_error(r) and "other settings" in r.stderr, r.stderr[-2000:]
    assert snapshot(out) == before


def test_a_second_run_redoes_only_what_is_missing(run):
    out, _ = run
    (out / "convert.json").write_text("")              # killed after the checkpoint, before the report
    trained = {f: (out / f).read_bytes() for f in ("base.pt", "sft_sa.pt", "sft_swa.pt", "rl_sa_s0.pt",
                                                    "rl_swa_s0.pt")}
    later = os.path.getmtime(out / "final.json") + 10   # an RL model newer than the evaluation (redone since)
    os.utime(out / "rl_swa_s0.pt", (later, later))
    r = run_sh("--preset", "smoke", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "convert to SWA" in r.stdout
    assert json.loads((out / "convert.json").read_text())["out"].endswith("swa.pt")
    assert r.stdout.count("nothing to do") == len(trained)   # pretraining, both SFTs, both RLs
    assert "=== evaluate" in r.stdout and os.path.getmtime(out / "final.json") > later - 10
    assert {f: (out / f).read_bytes() for f in trained} == trained
    assert not [f for f in os.listdir(out) if ".tmp" in f or f.endswith(".lock")]
    assert [r["label"] for r in json.load(open(out / "results.json"))["results"]] == LABELS
