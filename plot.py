"""
A tiny dependency-free SVG line plot, for training curves.

    from plot import line_plot_svg
    line_plot_svg("loss.svg", {"train": [(0, 2.3), (100, 1.1)], "val": [(0, 2.4), (100, 1.3)]},
                  title="loss", xlabel="step", ylabel="nats")
    # several panels stacked vertically, sharing the x label: a dict of {panel title: series}
    line_plot_svg("rl.svg", {"reward": {"train": pts}, "length": {"mean": lens}}, "GRPO", "step", "")

Points whose y is None or NaN are skipped; a series with one point is drawn as a dot.

    python plot.py rl.svg runs/default/rl_sa_s0.jsonl runs/default/rl_swa_s0.jsonl   # RL curves side by side

Depends on: common (write_atomic, read_jsonl, the CLI).
"""
import math
import os
import sys
from html import escape

from common import ArgumentParser, claim_outputs, read_jsonl, write_atomic

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
W, PANEL_H = 720, 260                        # pixels: figure width, height of one panel
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 34, 46   # margins of a panel; the legend sits on the right


def nice_ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) * 0.1 or 1), hi + (abs(hi) * 0.1 or 1)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = [round(first, 12)]
    while ticks[-1] < hi - step * 1e-9:   # until the last tick covers hi
        ticks.append(round(first + len(ticks) * step, 12))
    return ticks


def _fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.6g}"


def _clean(points):
    return [(float(x), float(y)) for x, y in points
            if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]


def _panel(series, y0, title, xlabel, ylabel, xlim):
    """SVG elements of one panel whose top edge is at y0."""
    out = []
    px0, px1 = LEFT, W - RIGHT
    py0, py1 = y0 + TOP, y0 + PANEL_H - BOTTOM
    ys = [y for pts in series.values() for _, y in pts]
    yt = nice_ticks(min(ys), max(ys)) if ys else [0.0, 1.0]
    xt = nice_ticks(*xlim)
    ylo, yhi, xlo, xhi = yt[0], yt[-1], xt[0], xt[-1]
    sx = lambda x: px0 + (x - xlo) / (xhi - xlo) * (px1 - px0)
    sy = lambda y: py1 - (y - ylo) / (yhi - ylo) * (py1 - py0)
    out.append(f'<text x="{(px0 + px1) / 2}" y="{y0 + 20}" text-anchor="middle" font-size="14" '
               f'font-weight="bold">{escape(title)}</text>')
    for t in yt:   # horizontal grid lines with labels
        out.append(f'<line x1="{px0}" y1="{sy(t):.1f}" x2="{px1}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{px0 - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>')
    for t in xt:
        out.append(f'<line x1="{sx(t):.1f}" y1="{py0}" x2="{sx(t):.1f}" y2="{py1}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{py1 + 16}" text-anchor="middle" font-size="11">{_fmt(t)}</text>')
    out.append(f'<rect x="{px0}" y="{py0}" width="{px1 - px0}" height="{py1 - py0}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{(px0 + px1) / 2}" y="{py1 + 34}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>')
    if ylabel:
        cy = (py0 + py1) / 2
        out.append(f'<text x="16" y="{cy}" text-anchor="middle" font-size="12" '
                   f'transform="rotate(-90 16 {cy})">{escape(ylabel)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        if len(pts) == 1:
            out.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{color}"/>')
        elif pts:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        ly = py0 + 12 + 18 * i   # legend entry
        out.append(f'<line x1="{px1 + 12}" y1="{ly}" x2="{px1 + 32}" y2="{ly}" stroke="{color}" stroke-width="3"/>')
        out.append(f'<text x="{px1 + 38}" y="{ly + 4}" font-size="11">{escape(str(name))}</text>')
    return out


def line_plot_svg(path, series, title, xlabel, ylabel):
    """Write an SVG line plot. series: {name: [(x, y), ...]} for one panel, or
    {panel title: {name: [(x, y), ...]}} for several panels stacked vertically (shared x range).
    ylabel is a string, or a dict {panel title: label} for panels."""
    panels = series if series and all(isinstance(v, dict) for v in series.values()) else {"": series}
    panels = {p: {n: _clean(pts) for n, pts in s.items()} for p, s in panels.items()}
    xs = [x for s in panels.values() for pts in s.values() for x, _ in pts]
    xlim = (min(xs), max(xs)) if xs else (0.0, 1.0)
    H = 30 + PANEL_H * len(panels)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'font-family="sans-serif">', f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="16">{escape(title)}</text>']
    for k, (ptitle, s) in enumerate(panels.items()):
        yl = ylabel.get(ptitle, "") if isinstance(ylabel, dict) else ylabel
        parts += _panel(s, 30 + k * PANEL_H - (0 if ptitle else 14), ptitle, xlabel, yl, xlim)
    parts.append("</svg>")
    write_atomic(path, "\n".join(parts) + "\n")
    return path


def rl_curves(svg_path, metrics_paths):
    """GRPO curves of one or more runs (rl.py's JSON lines), one series per run in each panel: reward,
    held-out greedy accuracy, the window-friendly share of samples, the far-dependency fraction of the
    held-out greedy traces and the completion length."""
    panels = {"reward (train samples)": "reward", "greedy accuracy (val)": "eval_acc",
              "window-friendly share (train samples)": "wf_frac",
              "operands beyond the window (val, greedy)": "eval_dep_far",
              "completion length (mean tokens)": "len_mean"}
    series = {panel: {} for panel in panels}
    for path in metrics_paths:
        rows = read_jsonl(path, need=("step",))
        name = os.path.splitext(os.path.basename(path))[0]
        for panel, key in panels.items():
            series[panel][name] = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return line_plot_svg(svg_path, series, "GRPO", "step", "")


def main(argv=None):
    ap = ArgumentParser(__doc__)
    ap.add_argument("out", metavar="OUT.svg", help="the plot to write")
    ap.add_argument("metrics", nargs="+", metavar="RUN.jsonl", help="rl.py metrics, one series each")
    argv = sys.argv[1:] if argv is None else argv
    options = [a for a in argv if a.startswith("-") and a not in ("-h", "--help")]
    if options:   # plot.py has none: "--foo" is a typo, never an output path
        ap.error(f"unknown option {options[0]}")
    args = ap.parse_args(argv)
    claim_outputs([args.out], args.metrics)
    for path in args.metrics:   # every input read whole before the plot is written
        read_jsonl(path, need=("step",))
    print(rl_curves(args.out, args.metrics))


if __name__ == "__main__":
    main()
