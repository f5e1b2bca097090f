#!/usr/bin/python3
"""Learning-rate sweeps from a launch/study.sh CSV: the best learning rate per curve, how far it
moves, the plots, and the coord check of the runs' diagnostics.h5.

    tools/study/lr_sweep.py CSV OUTDIR --panel KEY --curve KEY [--lr train.lr] [--coord-step K]
                            [--coord-lr LR] [--title TEXT]

KEY: a grid key of the CSV (its column grid:KEY), e.g. model.depth_scaling (one panel each) and
model.layers (one curve each, numeric keys in numeric order). A point's loss is its final
validation loss (val_loss), else its final training loss; a failed (diverged) point has none.
Writes
  OUTDIR/lr_sweep.md, lr_sweep.csv  loss at every learning rate, per (panel, curve); the best on the
                                    grid and the parabola's vertex through it and its two
                                    neighbours in log lr; per panel, how far the best moves against
                                    the first curve (factor) and what the first curve's best costs
                                    on each other curve (transfer penalty, nats)
  OUTDIR/loss_vs_lr.png             loss against learning rate, one panel per panel value, one curve
                                    per curve value
  OUTDIR/coord_check.png, .csv      with --coord-step K: per-layer RMS of the stream x_l, RMS of
                                    the branches' outputs and the update/weight ratio at step K
                                    (diagnostics.h5 of each point's run directory), against l / L,
                                    at the learning rate --coord-lr (default: the sweep's median)
  OUTDIR/best.json                  per panel, its best point over every curve: {lr, curve, loss}
"""
import argparse
import csv
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from study.plot import number, pyplot  # noqa: E402


def sort_key(value):
    x = number(value)
    return (0, x, "") if x is not None else (1, 0.0, value)


def load(path, panel, curve, lr_key):
    """The CSV's points as dicts: panel, curve, lr, loss (None when failed), status, run_dir."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for key in (panel, curve, lr_key):
        if rows and f"grid:{key}" not in rows[0]:
            sys.exit(f"lr_sweep.py: {path} has no column grid:{key}")
    points = []
    for r in rows:
        loss = number(r.get("val_loss")) if number(r.get("val_loss")) is not None else number(r.get("final_loss"))
        if r["status"] != "ok" or loss is None or not math.isfinite(loss):
            loss = None
        points.append({"panel": r[f"grid:{panel}"], "curve": r[f"grid:{curve}"], "lr": float(r[f"grid:{lr_key}"]),
                       "loss": loss, "status": r["status"], "error": r.get("error", ""),
                       "run_dir": r.get("run_dir", "")})
    return points


def best(points):
    """(grid best lr, its loss, vertex lr or None) over points of one curve with a loss."""
    good = sorted((p for p in points if p["loss"] is not None), key=lambda p: p["lr"])
    if not good:
        return None, None, None
    i = min(range(len(good)), key=lambda k: good[k]["loss"])
    vertex = None
    if 0 < i < len(good) - 1:  # a parabola in log lr through the best and its neighbours
        xs = [math.log(good[k]["lr"]) for k in (i - 1, i, i + 1)]
        ys = [good[k]["loss"] for k in (i - 1, i, i + 1)]
        denom = (xs[0] - xs[1]) * (xs[0] - xs[2]) * (xs[1] - xs[2])
        a = (xs[2] * (ys[1] - ys[0]) + xs[1] * (ys[0] - ys[2]) + xs[0] * (ys[2] - ys[1])) / denom
        b = (xs[2] ** 2 * (ys[0] - ys[1]) + xs[1] ** 2 * (ys[2] - ys[0]) + xs[0] ** 2 * (ys[1] - ys[2])) / denom
        if a > 0:
            vertex = math.exp(-b / (2 * a))
    return good[i]["lr"], good[i]["loss"], vertex


def fmt(x, digits=4):
    return "-" if x is None else f"{x:.{digits}g}"


def analyse(points):
    """{panel: [(curve, {lr: loss}, best lr, best loss, vertex)]} in sorted order."""
    out = {}
    for panel in sorted({p["panel"] for p in points}, key=sort_key):
        curves = []
        for curve in sorted({p["curve"] for p in points if p["panel"] == panel}, key=sort_key):
            mine = [p for p in points if p["panel"] == panel and p["curve"] == curve]
            curves.append((curve, {p["lr"]: p["loss"] for p in mine}, *best(mine)))
        out[panel] = curves
    return out


def write_tables(result, lrs, outdir, panel_key, curve_key):
    lines = [f"| {panel_key} | {curve_key} | " + " | ".join(f"lr {lr:g}" for lr in lrs) +
             " | best lr (grid) | best loss | best lr (parabola) | moves (x, vs first) | first's best costs (nats) |",
             "|" + "---|" * (len(lrs) + 7)]
    rows = []
    for panel, curves in result.items():
        first_lr = curves[0][2] if curves else None
        for curve, losses, lr, loss, vertex in curves:
            moves = lr / first_lr if lr and first_lr else None
            penalty = losses.get(first_lr) - loss if first_lr and loss is not None and losses.get(first_lr) is not None \
                else None
            cells = ["" if x not in losses else "div" if losses[x] is None else fmt(losses[x]) for x in lrs]
            lines.append(f"| {panel} | {curve} | " + " | ".join(cells) +
                         f" | {fmt(lr)} | {fmt(loss)} | {fmt(vertex, 3)} | {fmt(moves, 3)} | {fmt(penalty, 3)} |")
            rows.append([panel, curve] + [losses.get(x) for x in lrs] + [lr, loss, vertex, moves, penalty])
    with open(os.path.join(outdir, "lr_sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n\n'div': diverged or failed; empty: not run. 'moves': the best lr on the grid over the "
                "first curve's; 'first's best costs': loss at the first curve's best lr minus this curve's best.\n")
    with open(os.path.join(outdir, "lr_sweep.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([panel_key, curve_key] + [f"loss_lr_{x:g}" for x in lrs] +
                   ["best_lr", "best_loss", "vertex_lr", "moves", "transfer_penalty"])
        w.writerows(rows)


def plot_losses(result, outdir, panel_key, curve_key, title):
    plt = pyplot()
    panels = list(result)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True, squeeze=False)
    losses = [l for curves in result.values() for c in curves for l in c[1].values() if l is not None]
    for ax, panel in zip(axes[0], panels):
        for curve, by_lr, lr, loss, _ in result[panel]:
            xs = sorted(x for x in by_lr if by_lr[x] is not None)
            line, = ax.plot(xs, [by_lr[x] for x in xs], marker="o", label=f"{curve_key.split('.')[-1]} {curve}")
            if lr is not None:
                ax.plot([lr], [loss], marker="*", markersize=14, color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_title(f"{panel_key.split('.')[-1]} = {panel}")
        ax.grid(alpha=0.3)
    if losses:
        top = min(max(losses), statistics.median(losses) + 3 * (statistics.median(losses) - min(losses)) + 0.05)
        axes[0][0].set_ylim(min(losses) - 0.02, top)
    axes[0][0].set_ylabel("final validation loss (nats)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "loss_vs_lr.png"), dpi=80)


def coord_check(points, outdir, panel_key, curve_key, step, coord_lr):
    """Per-layer stream RMS, branch output RMS and update/weight ratio at `step`, per panel and curve."""
    import h5py
    import numpy as np

    lrs = sorted({p["lr"] for p in points})
    lr = coord_lr if coord_lr else lrs[len(lrs) // 2]
    lr = min(lrs, key=lambda x: abs(math.log(x / lr)))
    chosen = [p for p in points if p["lr"] == lr]
    panels = sorted({p["panel"] for p in chosen}, key=sort_key)
    quantities = [("residual_rms", "RMS of the stream x_l"), ("branch_rms", "RMS of a branch's output"),
                  ("update_ratio", "|update| / |weights| of block l")]
    plt = pyplot()
    fig, axes = plt.subplots(len(quantities), len(panels), figsize=(4.2 * len(panels), 3.0 * len(quantities)),
                             squeeze=False, sharey="row")
    summary = []
    for j, panel in enumerate(panels):
        for p in sorted((p for p in chosen if p["panel"] == panel), key=lambda p: sort_key(p["curve"])):
            path = os.path.join(p["run_dir"], "diagnostics.h5")
            if not os.path.isfile(path):
                continue
            with h5py.File(path, "r") as f:
                steps = list(f["step"][()])
                if step not in steps:
                    continue
                k = steps.index(step)
                values = {"residual_rms": f["residual_rms"][k], "update_ratio": f["update_ratio"][k],
                          "branch_rms": np.sqrt((f["attn_out_rms"][k] ** 2 + f["mlp_out_rms"][k] ** 2) / 2),
                          "final_rms": float(f["final_rms"][k])}
            L = len(values["residual_rms"])
            x = (np.arange(L) + 0.5) / L
            for i, (key, label) in enumerate(quantities):
                axes[i][j].plot(x, values[key], label=f"{curve_key.split('.')[-1]} {p['curve']}")
                axes[i][j].set_yscale("log")
                axes[i][0].set_ylabel(label, fontsize=8)
            summary.append([panel, p["curve"], lr, step, float(np.mean(values["residual_rms"])),
                            values["final_rms"], float(np.mean(values["branch_rms"])),
                            float(np.mean(values["update_ratio"])), float(np.max(values["update_ratio"]))])
        axes[0][j].set_title(f"{panel_key.split('.')[-1]} = {panel}")
        axes[-1][j].set_xlabel("l / L")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"coord check: step {step}, lr {lr:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "coord_check.png"), dpi=80)
    with open(os.path.join(outdir, "coord_check.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([panel_key, curve_key, "lr", "step", "mean_stream_rms", "final_stream_rms", "mean_branch_rms",
                    "mean_update_ratio", "max_update_ratio"])
        w.writerows(summary)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv")
    parser.add_argument("outdir")
    parser.add_argument("--panel", required=True)
    parser.add_argument("--curve", required=True)
    parser.add_argument("--lr", default="train.lr")
    parser.add_argument("--coord-step", type=int, default=0)
    parser.add_argument("--coord-lr", type=float, default=0.0)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    points = load(args.csv, args.panel, args.curve, args.lr)
    result = analyse(points)
    lrs = sorted({p["lr"] for p in points})
    write_tables(result, lrs, args.outdir, args.panel, args.curve)
    plot_losses(result, args.outdir, args.panel, args.curve, args.title)
    print(open(os.path.join(args.outdir, "lr_sweep.md")).read())
    # Per panel, its best point over every curve: what a later stage of a study carries on.
    overall = {}
    for panel, curves in result.items():
        found = [(loss, lr, curve) for curve, _, lr, loss, _ in curves if loss is not None]
        if found:
            loss, lr, curve = min(found)
            overall[panel] = {"lr": lr, "curve": curve, "loss": loss}
    with open(os.path.join(args.outdir, "best.json"), "w") as f:
        json.dump(overall, f, indent=1)
    if args.coord_step:
        for row in coord_check(points, args.outdir, args.panel, args.curve, args.coord_step, args.coord_lr):
            print("coord check", " ".join(fmt(x) if isinstance(x, float) else str(x) for x in row))


if __name__ == "__main__":
    main()
