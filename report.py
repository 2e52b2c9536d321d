"""The run's reports, from what eval.py wrote (run.sh calls both; each is also a command of its own):

    python report.py base RUN      # after pretraining: RUN/base.json (the base and the converted model) -> a
                                   # few lines on stdout, kept as RUN/base.md; says when the draw is weak
    python report.py results RUN   # at the end: RUN/base.json + RUN/final.json -> RUN/results.json, results.md

A draw is weak when its base is: the recipe cannot do better than the base's skill at either style. On the
earlier draws the converted model's sampled accuracy on window-friendly traces, measured before any SFT,
predicted SWA + RL within about 10 points (docs/log.md), so the report names that number.
It also holds the results table's format (markdown_table), which eval.py prints.
Depends on: common (one-line errors, atomic writes); not on torch, so it starts in a moment."""
import json
import os
import sys

from common import ArgumentParser, fail, write_atomic

STRONG = 0.75   # the converted model's window-friendly samples must be right this often for a strong draw
SOLVER = 0.90   # ... and the base's greedy traces this often


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown_table(rows):
    """One markdown row per evaluated checkpoint (eval.py's rows)."""
    k = max((r["k"] for r in rows), default=0)
    cols = ["model", "attention", "n", "greedy", f"pass@1 (k={k})", f"pass@{k}", f"maj@{k}", "extracted",
            "len mean", "len p90", "trunc", "dep mean", "dep p90", "dep >W", "wf", "tok/s", "KV bytes/seq"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = [r["label"], r["attention"], str(r["n"]), pct(r["greedy_acc"]), pct(r["pass1_sampled"]),
                 pct(r["pass_at_k"]), pct(r["maj_at_k"]), pct(r["extracted"]), f"{r['len_mean']:.0f}",
                 f"{r['len_p90']:.0f}", pct(r["trunc_rate"]), fmt(r["dep_mean"], ".1f"), fmt(r["dep_p90"], ".0f"),
                 f"{pct(r['dep_far'])} (W={r['dep_window']})", pct(r["wf_frac"]), f"{r['tok_per_s']:.0f}",
                 f"{r['kv_bytes_per_seq']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_eval(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d["settings"], d["results"]
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror} (run eval.py --json {path} first)")
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{path}: not an eval.py --json file ({e})")


def base_report(base, converted):
    """Markdown lines on the draw: what the base writes and how well, and what conversion costs."""
    lines = [
        "## The base (before SFT)",
        "",
        f"- base (SA), greedy: **{pct(base['greedy_acc'])}** right, window-friendly style in "
        f"{pct(base['wf_frac'])} of its traces",
        f"- base, sampled (k={base['k']}): window-friendly style in {pct(base['sample_wf_frac'])} of samples; "
        f"right {pct(base['sample_acc_wf'])} of the time in that style, {pct(base['sample_acc_sa'])} in the "
        f"SA style",
        f"- converted to SWA, no SFT: greedy **{pct(converted['greedy_acc'])}** "
        f"(window-friendly {pct(converted['wf_frac'])}); its window-friendly samples right "
        f"{pct(converted['sample_acc_wf'])}",
    ]
    wf_skill = converted["sample_acc_wf"]
    if wf_skill is None or wf_skill < STRONG:
        lines.append(f"- **weak draw**: the converted model's window-friendly samples are right {pct(wf_skill)} "
                     f"(< {pct(STRONG)}); expect SWA + RL near that, not near SA")
    elif base["greedy_acc"] < SOLVER:
        lines.append(f"- **weak draw**: the base's greedy accuracy is {pct(base['greedy_acc'])} "
                     f"(< {pct(SOLVER)}); expect SA + SFT near it")
    else:
        lines.append(f"- strong draw: window-friendly samples right {pct(wf_skill)} (>= {pct(STRONG)}), "
                     f"base greedy {pct(base['greedy_acc'])} (>= {pct(SOLVER)})")
    if converted["wf_frac"] is not None and converted["wf_frac"] > 0.5:
        lines.append("- note: the base already writes window-friendly traces greedily, so conversion costs "
                     "little; the finding needs a base that prefers the SA style")
    return "\n".join(lines) + "\n"


def main(argv):
    ap = ArgumentParser(__doc__)
    ap.add_argument("what", choices=["base", "results"], help="the base report, or the results at the end")
    ap.add_argument("run", help="the run folder (run.sh's --out)")
    args = ap.parse_args(argv)
    what, run = args.what, args.run
    base, converted = read_eval(os.path.join(run, "base.json"))[1][:2]
    report = base_report(base, converted)
    if what == "base":
        print(report, end="")
        write_atomic(os.path.join(run, "base.md"), report)
        return
    settings, rows = read_eval(os.path.join(run, "final.json"))
    table = markdown_table([base, converted, *rows])
    write_atomic(os.path.join(run, "results.md"), report + "\n## Every model\n\n" + table + "\n")
    write_atomic(os.path.join(run, "results.json"),
                 json.dumps({"settings": settings, "base_report": report, "results": [base, converted, *rows]},
                            indent=2) + "\n")
    print(report + "\n" + table)


if __name__ == "__main__":
    main(sys.argv[1:])
