#!/usr/bin/python3
"""Plots of a launch/study.sh CSV.

    tools/study/plot.py CSV OUTDIR

Writes, from the rows whose status is ok, only the plots the CSV's varied columns allow:
  throughput_vs_ranks.png        tokens/s against ranks (dp x pp), one line per value of the other
                                 varied grid keys (and per pp when dp and pp both vary); hollow
                                 markers where ranks x threads exceed the cores
  bubble_vs_micro_batches.png    measured (solid) and theoretical (dashed) pipeline bubble against
                                 micro-batches per step, one colour per pp / schedule (and other
                                 varied grid keys; pp > 1 only)
  memory_vs_layers.png           the largest per-rank peak resident memory against model.layers,
                                 one line per pp / schedule
and prints which it skipped and why. Exit status 0 (also when every plot is skipped), 2 for a CSV
it cannot read.
"""
import csv
import os
import sys

PROGRAM = "tools/study/plot.py"

# Columns that describe a point's setting (the rest are measurements); grid:* columns count too.
SETTINGS = ["dp", "pp", "ranks", "threads", "schedule", "virtual", "micro_batch", "micro_batches",
            "global_batch", "layers", "d_model", "seq_len", "steps"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def number(text):
    """The float in text, or None where there is none (empty cell, missing column)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def varied(rows, column):
    """Whether column takes more than one value over rows."""
    return len({r.get(column, "") for r in rows}) > 1


def series_key(row, columns):
    """The (name, value) pairs of row's columns that name its line in a plot."""
    return tuple((c.replace("grid:", ""), row[c]) for c in columns)


def label(key):
    """A series key as a legend label."""
    return ", ".join(f"{c}={v}" for c, v in key) or "all"


def grouped(rows, columns, x):
    """{series key: [(x, row), ...] sorted by x} over rows with a numeric x."""
    groups = {}
    for r in rows:
        if number(r.get(x)) is not None:
            groups.setdefault(series_key(r, columns), []).append((number(r[x]), r))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in sorted(groups.items())}


# Grid keys that the setting columns already hold (the CSV writes both).
MIRRORED = {"parallel.dp": "dp", "parallel.pp": "pp", "parallel.schedule": "schedule",
            "parallel.virtual": "virtual", "train.micro_batch": "micro_batch", "micro_batches": "micro_batches",
            "train.global_batch": "global_batch", "model.layers": "layers", "model.d_model": "d_model",
            "model.seq_len": "seq_len", "run.threads": "threads", "train.steps": "steps"}


def other_varied(rows, skip):
    """The columns that split a plot's lines: the varied grid keys (a derived setting such as m under
    a fixed global batch follows them), as setting columns where one mirrors them, less skip. A CSV
    without grid:* columns falls back to every varied setting column."""
    grid = [c for c in rows[0] if c.startswith("grid:")]
    if not grid:
        return [c for c in SETTINGS if c not in skip and varied(rows, c)]
    names = [MIRRORED.get(c[5:], c) for c in grid]
    return [n for n in names if n not in skip and varied(rows, n)]


def save(fig, ax, out, name, legend_size):
    """Grid, legend and layout, then OUT/NAME as PNG; returns its path."""
    plt = pyplot()
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_throughput(rows, out):
    """throughput_vs_ranks.png: tokens/s against ranks; returns its path."""
    skip = {"ranks", "dp", "pp", "threads", "global_batch"}
    columns = other_varied(rows, skip)
    if varied(rows, "dp") and varied(rows, "pp"):
        columns = ["pp"] + columns  # several layouts per rank count: one line per pp
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    cores = max((number(r.get("cores")) or 0) for r in rows)
    for key, points in grouped(rows, columns, "ranks").items():
        xs = [x for x, _ in points]
        ys = [number(r["tokens_per_s"]) for _, r in points]
        line, = ax.plot(xs, ys, marker="o", label=label(key))
        over = [(x, y) for (x, r), y in zip(points, ys) if r.get("oversubscribed") == "1"]
        if over:
            ax.plot([x for x, _ in over], [y for _, y in over], "o", markersize=10, markerfacecolor="white",
                    markeredgecolor=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ranks (dp x pp)" + (f"; hollow: ranks x threads > {cores:.0f} cores" if cores else ""))
    ax.set_ylabel("tokens/s (whole job, median)")
    ax.set_title("throughput against ranks")
    return save(fig, ax, out, "throughput_vs_ranks.png", legend_size=8)


def plot_bubble(rows, out):
    """bubble_vs_micro_batches.png: measured and theoretical bubble against m (pp > 1); returns its path."""
    rows = [r for r in rows if (number(r.get("pp")) or 1) > 1]
    skip = {"micro_batches", "global_batch", "micro_batch", "ranks", "threads", "pp", "schedule", "virtual"}
    columns = ["pp", "schedule"] + (["virtual"] if varied(rows, "virtual") else []) + other_varied(rows, skip)
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    for key, points in grouped(rows, columns, "micro_batches").items():
        xs = [x for x, _ in points]
        line, = ax.plot(xs, [number(r["bubble"]) for _, r in points], marker="o", label=label(key) + " measured")
        ax.plot(xs, [number(r["bubble_theory"]) for _, r in points], linestyle="--", marker="x",
                color=line.get_color(), label=label(key) + " theory")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("micro-batches per step (m)")
    ax.set_ylabel("bubble (share of the step)")
    ax.set_title("pipeline bubble: measured (solid) and formula (dashed)")
    ax.set_ylim(bottom=0)
    return save(fig, ax, out, "bubble_vs_micro_batches.png", legend_size=7)


def plot_memory(rows, out):
    """memory_vs_layers.png: the largest per-rank peak memory against layers; returns its path."""
    skip = {"layers", "ranks", "threads", "pp", "schedule", "global_batch"}
    columns = ["pp", "schedule"] + other_varied(rows, skip)
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    for key, points in grouped(rows, columns, "layers").items():
        ax.plot([x for x, _ in points], [number(r["peak_rss_mb_max"]) for _, r in points], marker="o",
                label=label(key))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("layers")
    ax.set_ylabel("peak resident memory, largest rank (MiB)")
    ax.set_title("memory against depth")
    return save(fig, ax, out, "memory_vs_layers.png", legend_size=8)


def main():
    """Reads the CSV of sys.argv[1], writes the plots into sys.argv[2]; returns the exit status."""
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, out = sys.argv[1], sys.argv[2]
    try:
        with open(source, newline="") as f:
            all_rows = list(csv.DictReader(f))
    except OSError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 2
    rows = [r for r in all_rows if r.get("status") == "ok"]
    os.makedirs(out, exist_ok=True)
    wrote, skipped = [], []
    if len(rows) < 2:
        skipped.append(("every plot", f"{len(rows)} successful point(s) of {len(all_rows)}"))
    else:
        if varied(rows, "ranks"):
            wrote.append(plot_throughput(rows, out))
        else:
            skipped.append(("throughput_vs_ranks.png", "ranks (dp x pp) does not vary"))
        piped = [r for r in rows if (number(r.get("pp")) or 1) > 1]
        if not varied(rows, "micro_batches"):
            skipped.append(("bubble_vs_micro_batches.png", "micro_batches does not vary"))
        elif not piped:
            skipped.append(("bubble_vs_micro_batches.png", "no successful point with pp > 1"))
        else:
            wrote.append(plot_bubble(rows, out))
        if varied(rows, "layers"):
            wrote.append(plot_memory(rows, out))
        else:
            skipped.append(("memory_vs_layers.png", "layers does not vary"))
    for path in wrote:
        print(f"{PROGRAM}: wrote {path}")
    for name, why in skipped:
        print(f"{PROGRAM}: skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
