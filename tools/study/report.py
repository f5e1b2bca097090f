"""launch/study.sh's outputs: the CSV columns, DIR/study.csv, DIR/study.md and DIR/study.json."""
import csv
import json
import os
import time

# The CSV's columns (docs/studies.md); the grid's keys come after error, as grid:KEY.
FIXED_COLUMNS = [
    "point", "status", "error", "dp", "pp", "ranks", "threads", "cores", "oversubscribed", "schedule",
    "virtual", "micro_batch", "micro_batches", "global_batch", "layers", "d_model", "seq_len", "params",
    "steps", "measured_steps", "rounds", "tokens_per_s", "step_time_s", "bubble", "bubble_theory", "comm_wait_s",
    "p2p_wait_s", "peak_rss_mb_max", "peak_rss_mb_ranks", "activation_mb_stages", "flops_per_token",
    "model_gflops", "peak_gflops", "peak_source", "mfu", "wall_s", "cpu_share", "final_loss", "val_loss",
    "diverged_step", "run_dir"]

# The study.md table's measurement columns (micro_batches left out where it is a grid key).
TABLE_COLUMNS = ("ranks", "threads", "micro_batches", "tokens_per_s", "step_time_s", "bubble", "bubble_theory",
                 "comm_wait_s", "peak_rss_mb_max", "mfu", "cpu_share")


def fmt(x, digits=6):
    """A CSV cell: '' for None, floats to digits significant digits, anything else as str."""
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def csv_columns(grid_keys):
    """The CSV's header: point, status, error, grid:KEY for each grid key, then the other columns."""
    return FIXED_COLUMNS[:3] + [f"grid:{k}" for k in grid_keys] + FIXED_COLUMNS[3:]


def write_csv(out, rows, grid_keys):
    """OUT/study.csv, one row a point (written whole, then renamed into place); returns its path."""
    columns = csv_columns(grid_keys)
    path = os.path.join(out, "study.csv")
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([fmt(row.get(c)) for c in columns])
    os.replace(path + ".tmp", path)
    return path


def write_markdown(out, rows, grid_keys):
    """OUT/study.md: the main columns as a Markdown table, a failed point's error in its status."""
    shown = ["point", "status"] + [f"grid:{k}" for k in grid_keys] + [
        c for c in TABLE_COLUMNS if c != "micro_batches" or c not in grid_keys]
    lines = ["| " + " | ".join(c.replace("grid:", "") for c in shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = []
        for c in shown:
            x = row.get(c)
            if c == "status" and row["status"] != "ok":
                x = f"failed: {row['error']}"
            cells.append(f"{x:.4g}" if isinstance(x, float) else ("" if x is None else str(x)).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def write_outputs(out, rows, grid_keys):
    """OUT/study.csv and OUT/study.md from the rows so far; returns the CSV's path."""
    path = write_csv(out, rows, grid_keys)
    write_markdown(out, rows, grid_keys)
    return path


def write_json(out, argv, binary, cores, grid, overrides, mpirun_args, warmup, peak):
    """OUT/study.json: the command, the binary, cores, grid, overrides, mpirun arguments, warm-up
    steps, the peak and its source, the start time."""
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump({"command": ["launch/study.sh"] + argv, "binary": binary, "cores": cores,
                   "grid": {"+".join(a): [":".join(v) for v in vs] for a, vs in grid.items()},
                   "overrides": overrides, "mpirun_args": mpirun_args, "warmup_steps": warmup,
                   "peak_gflops": peak[0], "peak_source": peak[1],
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f, indent=1)
