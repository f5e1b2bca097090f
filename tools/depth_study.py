#!/usr/bin/env python3
"""Tables and plots for launch/depth_study.sh.

    tools/depth_study.py OUT VARIANT... -- LAYERS...

Reads OUT/<variant>-L<layers>/{metrics.jsonl, diagnostics.h5} and the run logs; writes OUT/table.md,
OUT/table.csv, OUT/grad_norm_vs_depth.png (|dL/dx_l| against l at the deepest depth, at step 1 and
at the end), OUT/loss_curves.png (training loss per depth) and OUT/loss_vs_depth.png (final
validation loss against depth).
"""
import json
import math
import os
import re
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(out, variant, layers):
    name = f"{variant}-L{layers}"
    run = {"variant": variant, "layers": layers, "losses": [], "val": None, "diverged": None,
           "ratio_start": None, "ratio_end": None, "grad_start": None, "grad_end": None}
    metrics = os.path.join(out, name, "metrics.jsonl")
    if os.path.exists(metrics):
        rows = [json.loads(line) for line in open(metrics)]
        run["losses"] = [(r["step"], r["loss"]) for r in rows if r["loss"] is not None]
        vals = [r["val_loss"] for r in rows if "val_loss" in r]
        run["val"] = vals[-1] if vals else None
    log = os.path.join(out, name + ".log")
    if os.path.exists(log):
        found = re.search(r"diverged at step (\d+)", open(log).read())
        run["diverged"] = int(found.group(1)) if found else None
    diag = os.path.join(out, name, "diagnostics.h5")
    if os.path.exists(diag):
        with h5py.File(diag, "r") as f:
            grads, final = f["residual_grad_norm"][()], f["final_grad_norm"][()]
        for row, key in ((0, "start"), (len(final) - 1, "end")):
            if len(final) and (key == "start" or len(final) > 1):
                run["ratio_" + key] = grads[row, 0] / final[row] if final[row] > 0 else math.inf
                run["grad_" + key] = list(grads[row]) + [final[row]]
    return run


def fmt(x, digits=4):
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.2e}"


def main():
    out = sys.argv[1]
    split = sys.argv.index("--")
    variants, depths = sys.argv[2:split], [int(x) for x in sys.argv[split + 1:]]
    runs = {(v, L): load(out, v, L) for v in variants for L in depths}

    header = ["variant", "layers", "final val loss", "final train loss", "grad x_0 / grad x_L, step 1",
              "grad x_0 / grad x_L, end", "diverged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv = [",".join(["variant", "layers", "val_loss", "train_loss", "ratio_step1", "ratio_end", "diverged_at"])]
    for (v, L), r in runs.items():
        train = r["losses"][-1][1] if r["losses"] else None
        diverged = f"at step {r['diverged']}" if r["diverged"] else "no"
        cells = [v, str(L), fmt(r["val"]), fmt(train), fmt(r["ratio_start"], 3), fmt(r["ratio_end"], 3), diverged]
        lines.append("| " + " | ".join(cells) + " |")
        csv.append(",".join(str(x if x is not None else "") for x in
                            [v, L, r["val"], train, r["ratio_start"], r["ratio_end"], r["diverged"] or ""]))
    open(os.path.join(out, "table.md"), "w").write("\n".join(lines) + "\n")
    open(os.path.join(out, "table.csv"), "w").write("\n".join(csv) + "\n")
    print("\n".join(lines))

    deepest = max(depths)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, key, title in ((axes[0], "grad_start", "step 1 (initialisation)"), (axes[1], "grad_end", "last step")):
        for v in variants:
            g = runs[(v, deepest)][key]
            if g:
                ax.semilogy(range(len(g)), g, label=v)
        ax.set_title(f"|dL/dx_l|, {deepest} layers, {title}")
        ax.set_xlabel("l (block input; the last point is the stream's output x_L)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("gradient norm")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "grad_norm_vs_depth.png"), dpi=110)

    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 4), sharey=True)
    for ax, L in zip(axes if len(depths) > 1 else [axes], depths):
        for v in variants:
            curve = runs[(v, L)]["losses"]
            if curve:
                ax.plot([s for s, _ in curve], [loss for _, loss in curve], label=v, linewidth=1)
        ax.set_title(f"{L} layers")
        ax.set_xlabel("step")
        ax.set_ylim(top=6.0)
        ax.grid(True, alpha=0.3)
    (axes[0] if len(depths) > 1 else axes).set_ylabel("training loss (nats)")
    (axes[0] if len(depths) > 1 else axes).legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss_curves.png"), dpi=110)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for v in variants:
        points = [(L, runs[(v, L)]["val"]) for L in depths if runs[(v, L)]["val"] is not None]
        if points:
            ax.plot([p for p, _ in points], [q for _, q in points], marker="o", label=v)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("layers")
    ax.set_ylabel("final validation loss (nats)")
    ax.set_title("equal tokens per run")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss_vs_depth.png"), dpi=110)
    print(f"wrote {out}/table.md, table.csv, grad_norm_vs_depth.png, loss_curves.png, loss_vs_depth.png")


if __name__ == "__main__":
    main()
