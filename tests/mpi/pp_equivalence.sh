#!/usr/bin/env bash
# Pipeline parallelism under a real mpirun reproduces the single-process run: 16 layers, pp in
# {2, 4} x every schedule (interleaved with 2 chunks per stage), pp 2 x dp 2 (1f1b, interleaved, and
# zb1 with ZeRO-1), recomputation inside the pipeline, an explicit uneven split and untied
# embeddings give per-step losses within 1e-5 relative for 20 steps and the same final parameters,
# with dropout 0 and 0.1; so do deepnorm (pp 4; pp 2 x dp 2 with recomputation) and highway with
# stochastic depth (pp 2 x dp 2 interleaved), whose per-layer diagnostics match the single process,
# and pre-norm under CompleteP with stochastic depth that skips dropped blocks (pp 2 x dp 2 with
# zb1's split backward, pp 4 with recomputation).
#   tests/pp_equivalence.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
source "$(dirname "$0")/../lib/equivalence.sh" "$bin" 16 "$@"

status=0
groups=()
for dropout in 0.0 0.1; do
  d=d$dropout
  run "${d}_ref" 1 1 --model.dropout=$dropout || status=1
  names=()
  for pp in 2 4; do
    for schedule in gpipe 1f1b interleaved zb1; do
      extra=()
      [ "$schedule" = interleaved ] && extra=(--parallel.virtual=2)
      run "${d}_pp${pp}_$schedule" 1 $pp --model.dropout=$dropout --parallel.schedule=$schedule "${extra[@]}" || status=1
      names+=("${d}_pp${pp}_$schedule")
    done
  done
  run "${d}_pp2_dp2" 2 2 --model.dropout=$dropout || status=1
  run "${d}_pp2_dp2_interleaved" 2 2 --model.dropout=$dropout --parallel.schedule=interleaved --parallel.virtual=2 || status=1
  run "${d}_pp2_dp2_zero" 2 2 --model.dropout=$dropout --parallel.zero=1 --parallel.schedule=zb1 || status=1
  run "${d}_pp4_recompute" 1 4 --model.dropout=$dropout --parallel.recompute=block || status=1
  run "${d}_pp4_zb1_recompute" 1 4 --model.dropout=$dropout --parallel.recompute=block --parallel.schedule=zb1 || status=1
  run "${d}_pp4_split" 1 4 --model.dropout=$dropout --parallel.stage_layers=2,6,5,3 || status=1
  names+=("${d}_pp2_dp2" "${d}_pp2_dp2_interleaved" "${d}_pp2_dp2_zero" "${d}_pp4_recompute" "${d}_pp4_zb1_recompute" "${d}_pp4_split")
  groups+=("${d}_ref=$(IFS=,; echo "${names[*]}")")
done
run untied_ref 1 1 --model.tie_embeddings=false || status=1
run untied_pp4_interleaved 1 4 --model.tie_embeddings=false --parallel.schedule=interleaved --parallel.virtual=2 || status=1
run untied_pp2_dp2 2 2 --model.tie_embeddings=false || status=1
groups+=("untied_ref=untied_pp4_interleaved,untied_pp2_dp2")
# Residual variants and stochastic depth inside the pipeline; diagnostics gathered across stages.
run deepnorm_ref 1 1 --model.residual=deepnorm --run.diag_every=5 || status=1
run deepnorm_pp4 1 4 --model.residual=deepnorm --run.diag_every=5 || status=1
run deepnorm_pp2_dp2 2 2 --model.residual=deepnorm --run.diag_every=5 --parallel.recompute=block || status=1
run highway_ref 1 1 --model.residual=highway --model.stochastic_depth=0.3 || status=1
run highway_pp2_dp2 2 2 --model.residual=highway --model.stochastic_depth=0.3 --parallel.schedule=interleaved \
  --parallel.virtual=2 || status=1
skip=(--model.stochastic_depth=0.3 --model.depth_scaling=completep --model.base_layers=4)
run skip_ref 1 1 "${skip[@]}" || status=1
run skip_pp2_dp2_zb1 2 2 "${skip[@]}" --parallel.schedule=zb1 || status=1
run skip_pp4_recompute 1 4 "${skip[@]}" --parallel.recompute=block || status=1
groups+=("deepnorm_ref=deepnorm_pp4,deepnorm_pp2_dp2" "highway_ref=highway_pp2_dp2"
         "skip_ref=skip_pp2_dp2_zb1,skip_pp4_recompute")
[ "$status" -eq 0 ] || exit 1
/usr/bin/python3 "$(dirname "$0")/../lib/compare_runs.py" "$work" 20 "${groups[@]}" || exit 1
/usr/bin/python3 - "$work" <<'PY'
import sys
import h5py, numpy as np
work = sys.argv[1]
ref = h5py.File(f"{work}/deepnorm_ref/diagnostics.h5", "r")
assert list(ref["step"][()]) == [1, 5, 10, 15, 20], ref["step"][()]
for name in ("deepnorm_pp4", "deepnorm_pp2_dp2"):
    got = h5py.File(f"{work}/{name}/diagnostics.h5", "r")
    worst = max(np.max(np.abs(got[k][()] - ref[k][()]) / (np.abs(ref[k][()]) + 1e-12)) for k in ref)
    print(f"diagnostics {name} vs single process: worst relative difference {worst:.1e}",
          "ok" if worst < 1e-4 else "FAIL")
    if worst >= 1e-4:
        sys.exit(1)
PY
