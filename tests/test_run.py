"""run.sh end to end on the smoke preset: every stage runs and the results table has every row."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



@pytest.mark.slow
def test_run_sh_smoke(tmp_path):
    out = str(tmp_path / "run")
    r = subprocess.run(["bash", "run.sh", "--preset", "smoke", "--out", out], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.load(open(os.path.join(out, "results.json")))
    rows = rows["results"]
    assert len(rows) == 6
    assert [r["label"] for r in rows[:2]] == ["SA base, no SFT", "SWA converted, no SFT"]
    table = open(os.path.join(out, "results.md")).read()
    # the base report, printed after pretraining and kept: a smoke base solves nothing, so the draw is weak
    assert "## The base (before SFT)" in table and "weak draw" in table
    assert "weak draw" in r.stdout.split("SFT of the SA model")[0]
    for label in ("SA base, no SFT", "SWA converted, no SFT", "SA + SFT", "SWA + SFT", "SA + SFT + RL (seed 0)", "SWA + SFT + RL (seed 0)"):
        assert label in table
    assert os.path.exists(os.path.join(out, "rl_curves.svg"))
    # a second run finds every stage done and redoes nothing but the evaluation
    again = subprocess.run(["bash", "run.sh", "--preset", "smoke", "--out", out], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to do" in again.stdout
