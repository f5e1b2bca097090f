"""Compares training runs with a reference run, step by step: per-step losses within 1e-5 relative
and final parameters (final_params.f32, the whole model's layout) within 1e-5 + 1e-4 |p|.

    compare_runs.py WORK STEPS REF=RUN[,RUN...] [REF=RUN...]

Each RUN is a run directory under WORK compared with the run directory REF, step by step over the
steps RUN logged (a run resumed from a checkpoint logs only the steps after it; it must reach STEPS).
Parameters: the sums run
in another order, and AdamW turns rounding-level differences in the gradient of a near-zero
parameter into steps of up to lr, so bitwise equality is not expected.
"""
import json
import sys

import numpy as np


def losses(work, name):
    rows = [json.loads(line) for line in open(f"{work}/{name}/metrics.jsonl")]
    return {row["step"]: row["loss"] for row in rows}


def params(work, name):
    return np.fromfile(f"{work}/{name}/final_params.f32", dtype=np.float32)


def main():
    work, steps = sys.argv[1], int(sys.argv[2])
    passed = failed = 0
    for group in sys.argv[3:]:
        ref_name, others = group.split("=")
        ref, ref_params = losses(work, ref_name), params(work, ref_name)
        assert sorted(ref) == list(range(1, steps + 1)), f"the reference {ref_name} did not run {steps} steps"
        for name in others.split(","):
            got, p = losses(work, name), params(work, name)
            complete = bool(got) and sorted(got) == list(range(min(got), steps + 1))
            worst = max((abs(got[s] - ref[s]) / abs(ref[s]) for s in got), default=float("inf"))
            n = min(len(p), len(ref_params))  # buffers are padded (to a multiple of dp)
            extra = np.abs(p[n:]).max(initial=0) + np.abs(ref_params[n:]).max(initial=0)
            param_err = np.max(np.abs(p[:n] - ref_params[:n]) / (1e-5 + 1e-4 * np.abs(ref_params[:n])))
            ok = complete and worst <= 1e-5 and param_err <= 1.0 and extra == 0
            print(f"{name:28s} vs {ref_name}: worst loss rel diff {worst:.2e}, "
                  f"worst param diff {param_err:.2f} of tolerance {'ok' if ok else 'FAIL'}")
            passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
