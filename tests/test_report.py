"""report.py: the base report's verdict on a draw, from eval rows written by hand, and its one-line errors."""
import json
import os
import subprocess
import sys

import pytest

from report import base_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row(greedy, wf_greedy, wf_sampled, acc_wf, acc_sa, k=4):
    return {"greedy_acc": greedy, "wf_frac": wf_greedy, "sample_wf_frac": wf_sampled, "sample_acc_wf": acc_wf,
            "sample_acc_sa": acc_sa, "k": k}


@pytest.mark.parametrize("base, converted, verdict", [
    (row(0.977, 0.0, 0.425, 0.944, 0.938), row(0.006, 0.0, 0.425, 0.936, 0.005), "strong draw"),
    # the converted model's window-friendly samples right 25%: RL can only reach about that
    (row(0.95, 0.0, 0.25, 0.30, 0.95), row(0.004, 0.0, 0.24, 0.25, 0.004), "weak draw"),
    # a base that is no solver
    (row(0.70, 0.0, 0.4, 0.80, 0.70), row(0.01, 0.0, 0.4, 0.80, 0.01), "weak draw"),
    # no window-friendly sample at all: no number, weak
    (row(0.97, 0.0, 0.0, None, 0.97), row(0.0, 0.0, 0.0, None, 0.0), "weak draw"),
])
def test_the_verdict(base, converted, verdict):
    text = base_report(base, converted)
    assert f"**{verdict}**" in text or f"- {verdict}" in text
    assert ("strong draw" in text) == (verdict == "strong draw")


def test_a_base_that_writes_window_friendly_traces_greedily_is_named():
    text = base_report(row(0.96, 1.0, 0.6, 0.94, 0.93), row(0.94, 1.0, 0.6, 0.94, 0.0))
    assert "already writes window-friendly traces greedily" in text


def test_results_merge_the_base_rows_first(tmp_path):
    """The rows of a real run (draw seed 0, as eval.py wrote them) split into base.json and final.json again:
    results.json holds them in order, with final.json's settings and the base report; results.md starts with it."""
    with open(os.path.join(ROOT, "results", "finding", "seed0", "results.json")) as f:
        rows = json.load(f)["results"]
    (tmp_path / "base.json").write_text(json.dumps({"settings": {"n": 1000}, "results": rows[:2]}))
    (tmp_path / "final.json").write_text(json.dumps({"settings": {"n": 3}, "results": rows[2:]}))
    r = subprocess.run([sys.executable, "report.py", "results", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "results.json").read_text())
    assert out["results"] == rows and out["settings"] == {"n": 3}
    assert "strong draw" in out["base_report"] and "**0.6%**" in out["base_report"]   # the converted model
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("## The base (before SFT)") and sum(line.startswith("|") for line in md.splitlines()) == 2 + len(rows)


def test_a_missing_eval_file_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "report.py", "base", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot read" in r.stderr
    assert list(tmp_path.iterdir()) == []
