#!/usr/bin/env bash
# `kilolayer plan` as users run it: calibrate a small model, plan with the calibration and with a
# preset, write the best layout's overrides and feed them back through the config machinery, plan
# the docs' 1024-layer example; and every bad request refused with exit 2 and a message naming it.
set -u
bin=$1
source "$(dirname "$0")/../lib/cli.sh"

write_ini "$work/small.ini" model.layers=8 model.d_model=32 model.heads=2 model.seq_len=16 \
  train.global_batch=8 train.micro_batch=1
write_ini "$work/other.ini" model.layers=8 model.d_model=64 model.heads=2 model.seq_len=16
hw=(--gpu-memory 16 --peak-tflops 0.1 --intra-gbps 10 --inter-gbps 5 --gpus-per-node 2)

# Calibration: a file with every key, that plan reads.
check "calibrate" "$bin" plan --config "$work/small.ini" --calibrate --repeats 3 --out "$work/cal.txt"
check "calibration has per-block times" grep -q '^backward_weight_s = ' "$work/cal.txt"
out=$("$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --calibration "$work/cal.txt" --top 3 \
  --out "$work/best.txt" 2>&1)
check "plan with a calibration ($out)" grep -q '^best: --parallel.dp=' <<<"$out"
check "three rows" test "$(grep -c '^[123] ' <<<"$out")" -eq 3
check "costs from the calibration" grep -q "costs: calibration $work/cal.txt" <<<"$out"
# The written overrides are config overrides: --evaluate reads them and predicts that layout.
read -r -a best <"$work/best.txt"
evaluated=$("$bin" plan --config "$work/small.ini" --evaluate "${hw[@]}" --calibration "$work/cal.txt" "${best[@]}" 2>&1)
check "overrides load ($evaluated)" grep -q '^prediction: step_time_s=' <<<"$evaluated"
layout=$(grep "^1 " <<<"$out" | cut -c5-66 | sed "s/ *$//")  # the best row's layout column
check "same layout evaluated ($layout)" grep -qxF "layout: $layout" <<<"$evaluated"
# pp 4: the 4 stages each get a line.
staged=$("$bin" plan --config "$work/small.ini" --evaluate "${hw[@]}" --parallel.pp=4 --parallel.schedule=zb1)
check "four stages" test "$(grep -c '^stage [0-3]:' <<<"$staged")" -eq 4

# The CUDA backend keeps attention's softmax, the CPU's flash-style kernel does not: more memory.
activations() { "$bin" plan --config "$work/small.ini" --evaluate "${hw[@]}" --backend "$1" |
  sed -n 's/^stage 0:.* activations \([0-9.]*\) MiB.*/\1/p'; }
cuda_mib=$(activations cuda) cpu_mib=$(activations cpu)
check "cuda prices more attention memory ($cuda_mib against $cpu_mib MiB)" \
  awk -v a="$cuda_mib" -v b="$cpu_mib" 'BEGIN { exit !(a > b && b > 0) }'

# The docs' worked example finishes with a layout (FLOP costs, the H200 preset).
big=$("$bin" plan --config "$(dirname "$0")/../../configs/plan_1024x4096.ini" --gpus 1024 --preset h200 --top 2 2>&1)
check "1024-layer plan ($big)" grep -q '^best: ' <<<"$big"

# Refusals.
printf 'forward_s = 1\n' >"$work/partial.txt"
sed 's/^heads = .*/heads = 3/' "$work/cal.txt" >"$work/badheads.txt"
sed 's/^forward_s = .*/forward_s = -2/' "$work/cal.txt" >"$work/negative.txt"
expect_error "no --gpus" "--gpus N is required" -- "$bin" plan --config "$work/small.ini" "${hw[@]}"
expect_error "no --config" "--config FILE is required" -- "$bin" plan --gpus 4 "${hw[@]}"
expect_error "gpus not divisible by pp" "--gpus 6 is not divisible by --pp 4" -- \
  "$bin" plan --config "$work/small.ini" --gpus 6 --pp 4 "${hw[@]}"
expect_error "dp x pp not gpus" "--dp 2 x --pp 2 is not --gpus 8" -- \
  "$bin" plan --config "$work/small.ini" --gpus 8 --dp 2 --pp 2 "${hw[@]}"
expect_error "batch not divisible" "dp must divide train.global_batch = 8" -- \
  "$bin" plan --config "$work/small.ini" --gpus 3 --pp 1 "${hw[@]}"
expect_error "cannot fit" "no layout of 4 GPUs fits in 0.00 GB per GPU" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 --gpu-memory 0.000001 --peak-tflops 1 --intra-gbps 1 \
  --inter-gbps 1 --gpus-per-node 2
expect_error "1024 layers on 80 GB H100s at 4M tokens" "the smallest, .* needs" -- \
  "$bin" plan --config "$(dirname "$0")/../../configs/plan_1024x4096.ini" --gpus 1024 --preset h100
expect_error "unknown preset" "unknown --preset 'a100'" -- "$bin" plan --config "$work/small.ini" --gpus 4 --preset a100
expect_error "hardware missing" "--peak-tflops is required without --preset" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 --gpu-memory 16
expect_error "bad number" "--gpus must be an integer >= 1, got 'four'" -- \
  "$bin" plan --config "$work/small.ini" --gpus four "${hw[@]}"
expect_error "negative bandwidth" "--inter-gbps must be a positive number, got '-5'" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 --gpu-memory 16 --peak-tflops 1 --intra-gbps 1 \
  --inter-gbps -5 --gpus-per-node 2
expect_error "unknown schedule" "unknown --schedule 'fast'" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 --schedule fast "${hw[@]}"
expect_error "unknown backend" "--backend must be cuda or cpu, got 'tpu'" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --backend tpu
expect_error "unknown option" "unknown option --gpu" -- "$bin" plan --config "$work/small.ini" --gpu 4 "${hw[@]}"
expect_error "bad config key" "train.bogus" -- "$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --train.bogus=1
expect_error "missing calibration" "calibration: cannot open" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --calibration "$work/none.txt"
expect_error "partial calibration" "partial.txt: d_model is missing" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --calibration "$work/partial.txt"
expect_error "inconsistent calibration" "heads = 3 does not divide d_model = 32" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --calibration "$work/badheads.txt"
expect_error "negative time" "forward_s = '-2' must be a finite number > 0" -- \
  "$bin" plan --config "$work/small.ini" --gpus 4 "${hw[@]}" --calibration "$work/negative.txt"
expect_error "another model's calibration" "measured at d_model = 32, but the config's model has 64" -- \
  "$bin" plan --config "$work/other.ini" --gpus 4 "${hw[@]}" --calibration "$work/cal.txt"
expect_error "calibrate takes no gpus" "--calibrate measures; it takes no --gpus" -- \
  "$bin" plan --config "$work/small.ini" --calibrate --gpus 4
expect_error "evaluate on the wrong count" "--gpus 8 is not parallel.dp x parallel.pp = 2" -- \
  "$bin" plan --config "$work/small.ini" --evaluate --gpus 8 "${hw[@]}" --parallel.pp=2
expect_error "evaluate takes no search flag" "--evaluate predicts the config's own layout and takes no --pp" -- \
  "$bin" plan --config "$work/small.ini" --evaluate --pp 2 "${hw[@]}"
report plan_cli
