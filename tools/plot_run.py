#!/usr/bin/python3
"""Plots of one training run.

    tools/plot_run.py RUN_DIR [--out DIR]

Reads RUN_DIR/metrics.jsonl (one JSON object per logged step: README, "Run directory"),
RUN_DIR/config.ini (train.global_batch and model.seq_len turn steps into tokens) and, when the run
had run.diag_every > 0, RUN_DIR/diagnostics.h5 (src/train/diagnostics.h). Writes into --out
(default RUN_DIR/plots):

    loss.png            training loss and validation loss against tokens seen
    lr.png              learning rate against step
    grad_norm.png       gradient norm (before clipping) against step, log scale
    tokens_per_s.png    throughput against step
    residual_grad.png   |dL/dx_l| over blocks x diagnosed steps, log colour scale (diagnostics.h5 only)

Prints the files it wrote. A missing or malformed run directory is one line on stderr and exit 2.
Needs matplotlib, and h5py for the heatmap (Debian's python3-matplotlib, python3-h5py).
"""
import argparse
import configparser
import json
import math
import os
import sys


class RunError(Exception):
    """A problem with the run directory, told to the user in one line."""


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise RunError(f"{path} does not exist (is {run_dir} a kilolayer run directory?)")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunError(f"{path}:{number}: not JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise RunError(f"{path}:{number}: a row without an integer \"step\"")
            rows.append(row)
    if not rows:
        raise RunError(f"{path} holds no steps yet")
    return rows


def tokens_per_step(run_dir):
    path = os.path.join(run_dir, "config.ini")
    config = configparser.ConfigParser()
    try:
        if not config.read(path):
            raise RunError(f"{path} does not exist (the run's effective config: it gives tokens per step)")
        return int(config["train"]["global_batch"]) * int(config["model"]["seq_len"])
    except (configparser.Error, KeyError, ValueError) as e:
        raise RunError(f"{path}: cannot read train.global_batch and model.seq_len ({e})") from None


def series(rows, key):
    """(step, value) of every row that has a finite `key`."""
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [(s, v) for s, v in points if math.isfinite(v)]


def line_plot(plt, out, name, curves, xlabel, ylabel, title, log=False):
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, points, style in curves:
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], style, label=label, markersize=4)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if log:
        axes.set_yscale("log")
    if len(curves) > 1:
        axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path = os.path.join(out, name)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def residual_heatmap(plt, out, diag_path, title):
    import h5py  # only here: a run without diagnostics needs no h5py
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    try:
        with h5py.File(diag_path, "r") as f:
            steps = f["step"][()]
            grads = f["residual_grad_norm"][()]
    except (OSError, KeyError) as e:
        raise RunError(f"{diag_path}: not a kilolayer diagnostics file ({e})") from None
    if grads.ndim != 2 or grads.shape[0] != len(steps) or len(steps) == 0:
        raise RunError(f"{diag_path}: residual_grad_norm has shape {grads.shape} for {len(steps)} steps")
    positive = grads[grads > 0]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    image = axes.imshow(grads.T, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis",
                        norm=LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None,
                        extent=(-0.5, len(steps) - 0.5, -0.5, grads.shape[1] - 0.5))
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    axes.set_xticks(ticks)
    axes.set_xticklabels([str(steps[t]) for t in ticks])
    axes.set_xlabel("step (diagnosed steps)")
    axes.set_ylabel("block l")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="|dL/dx_l|")
    figure.tight_layout()
    path = os.path.join(out, "residual_grad.png")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_run(run_dir, out):
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir} is not a directory")
    rows = read_metrics(run_dir)
    per_step = tokens_per_step(run_dir)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    name = os.path.basename(os.path.normpath(run_dir))
    in_tokens = lambda points: [(s * per_step, v) for s, v in points]  # noqa: E731
    written = [
        line_plot(plt, out, "loss.png", [("training", in_tokens(series(rows, "loss")), "-"),
                                         ("validation", in_tokens(series(rows, "val_loss")), "o-")],
                  f"tokens seen ({per_step} a step)", "loss (nats per token)", f"{name}: loss"),
        line_plot(plt, out, "lr.png", [("lr", series(rows, "lr"), "-")], "step", "learning rate",
                  f"{name}: learning rate"),
        line_plot(plt, out, "grad_norm.png", [("norm", series(rows, "grad_norm"), "-")], "step",
                  "gradient norm (before clipping)", f"{name}: gradient norm", log=True),
        line_plot(plt, out, "tokens_per_s.png", [("tokens/s", series(rows, "tokens_per_s"), "-")], "step",
                  "tokens / s (whole job)", f"{name}: throughput"),
    ]
    diag = os.path.join(run_dir, "diagnostics.h5")
    if os.path.exists(diag):
        written.append(residual_heatmap(plt, out, diag, f"{name}: |dL/dx_l| per block"))
    return written


def main():
    parser = argparse.ArgumentParser(description="PNG plots of a kilolayer run directory")
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="where to write the PNGs (default RUN_DIR/plots)")
    args = parser.parse_args()
    try:
        for path in plot_run(args.run_dir, args.out or os.path.join(args.run_dir, "plots")):
            print(path)
    except RunError as e:
        print(f"plot_run: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
