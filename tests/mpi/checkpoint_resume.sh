#!/usr/bin/env bash
# Checkpoints under a real mpirun at pp 2 x dp 2 with dropout 0.1 (16 layers, 20 steps):
#  - 20 steps straight and 10 steps + a new process + 10 steps give bitwise identical per-step
#    losses and final parameters (also with ZeRO-1);
#  - the step-10 checkpoint resumes at pp 4 x dp 1, pp 1 x dp 4 and pp 4 interleaved, and ZeRO-1's at
#    dp 1, with losses within 1e-5 relative of the straight run;
#  - the asynchronous and the synchronous save write the same tensors and checksums;
#  - another architecture is refused naming the keys, a changed tunable is logged;
#  - h5dump, h5py and `kilolayer inspect` read the checkpoint.
#   tests/checkpoint_resume.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
here=$(dirname "$0")
source "$here/../lib/equivalence.sh" "$bin" 16 "$@"
ckpt=(--model.dropout=0.1 --checkpoint.every=5 --checkpoint.keep=3)

run straight 2 2 "${ckpt[@]}" --checkpoint.dir="$work/straight/ckpt" || exit 1
run split 2 2 "${ckpt[@]}" --checkpoint.dir="$work/split/ckpt" --run.stop_after=10 || exit 1
[ "$(cat "$work/split/ckpt/latest")" = step_00000010 ] || fail "stop_after=10 did not leave step 10 as latest"
run split 2 2 "${ckpt[@]}" --checkpoint.dir="$work/split/ckpt" || exit 1
grep -q "resumed from .*step_00000010.* at step 10" "$work/split.log" || fail "the second process did not resume"
cmp -s <(cut -d, -f1-2 "$work/straight/metrics.jsonl") <(cut -d, -f1-2 "$work/split/metrics.jsonl") ||
  fail "per-step losses differ between 20 straight steps and 10 + 10"
cmp -s "$work/straight/final_params.f32" "$work/split/final_params.f32" || fail "final parameters differ (10 + 10)"
echo "bitwise: 20 straight steps = 10 + new process + 10 (losses and parameters)"
[ "$(ls -d "$work/split/ckpt"/step_* | wc -l)" -eq 3 ] || fail "checkpoint.keep=3 kept $(ls "$work/split/ckpt")"

run zero_straight 2 2 "${ckpt[@]}" --parallel.zero=1 --checkpoint.dir="$work/zero_straight/ckpt" || exit 1
run zero_split 2 2 "${ckpt[@]}" --parallel.zero=1 --checkpoint.dir="$work/zero_split/ckpt" --run.stop_after=10 || exit 1
run zero_split 2 2 "${ckpt[@]}" --parallel.zero=1 --checkpoint.dir="$work/zero_split/ckpt" || exit 1
cmp -s "$work/zero_straight/final_params.f32" "$work/zero_split/final_params.f32" || fail "ZeRO-1: final parameters differ (10 + 10)"
echo "bitwise: the same with ZeRO-1"

# The synchronous save (the training thread writes) and the asynchronous one (the default: a thread
# of each rank writes while training goes on) must write the same tensors and checksums.
run straight_sync 2 2 "${ckpt[@]}" --checkpoint.async=false --checkpoint.dir="$work/straight_sync/ckpt" || exit 1
/usr/bin/python3 - "$work/straight/ckpt" "$work/straight_sync/ckpt" <<'PY' || fail "async and sync checkpoints differ"
import sys, h5py, numpy as np
for step in (10, 15, 20):
    a, b = (h5py.File("%s/step_%08d/checkpoint.h5" % (d, step)) for d in sys.argv[1:3])
    names = []
    a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert len(names) > 100, names
    for n in names:
        assert np.array_equal(a[n][()].view(np.uint32), b[n][()].view(np.uint32)), (step, n)
        assert a[n].attrs["crc32"] == b[n].attrs["crc32"] != 0, (step, n)
PY
grep -q "training stalled .* by the async save" "$work/straight.log" || fail "the default save is not asynchronous"
echo "async and sync saves write the same tensors and checksums (steps 10, 15, 20)"

step10=$work/split/ckpt/step_00000010
run pp4 1 4 --model.dropout=0.1 --checkpoint.resume="$step10" || exit 1
run dp4 4 1 --model.dropout=0.1 --checkpoint.resume="$step10" || exit 1
run pp4_interleaved 1 4 --model.dropout=0.1 --parallel.schedule=interleaved --parallel.virtual=2 \
  --checkpoint.resume="$step10" || exit 1
run zero_to_dp1 1 1 --model.dropout=0.1 --checkpoint.resume="$work/zero_split/ckpt/step_00000010" || exit 1
grep -q "saved from dp=2 pp=2" "$work/pp4.log" || fail "the resharded run does not name the layout it came from"

# Another architecture: refused before training, naming the keys; a tunable: logged.
if "${mpirun[@]}" -np 1 "$bin" train --config "$work/base.ini" --model.layers=12 --model.d_model=64 \
    --checkpoint.resume="$step10" --run.dir="$work/wrong" >"$work/wrong.log" 2>&1; then
  fail "a checkpoint of another architecture was accepted"
fi
grep -q "another architecture.*model.d_model: 32 -> 64.*model.layers: 16 -> 12" "$work/wrong.log" ||
  fail "the architecture error does not list the keys: $(cat "$work/wrong.log")"
run lr 1 1 --model.dropout=0.1 --train.lr=0.001 --checkpoint.resume="$step10" || exit 1
grep -q "train.lr: 0.003 -> 0.001" "$work/lr.log" || fail "the changed learning rate was not logged"

# Readers: h5dump, h5py, inspect.
file=$step10/checkpoint.h5
h5dump -H "$file" >/dev/null || fail "h5dump cannot read $file"
"$bin" inspect "$work/split/ckpt" >"$work/inspect.log" || fail "inspect: $(tail -3 "$work/inspect.log")"
grep -q "^model/layers/000015/attn.qkv.weight \[96 x 32\] norm" "$work/inspect.log" || fail "inspect lists no qkv tensor"
grep -q "datasets verified (CRC-32), 0 problem(s)" "$work/inspect.log" || fail "inspect found problems"
/usr/bin/python3 - "$file" <<'PY' || fail "h5py"
import sys, zlib
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["step"] == 10 and f.attrs["format_version"] == 3
qkv = f["model/layers/000003/attn.qkv.weight"]
assert qkv.shape == (96, 32) and qkv.dtype == np.float32
assert zlib.crc32(qkv[()].astype("<f4").tobytes()) == qkv.attrs["crc32"]
assert "optim/exp_avg_sq/embed.token.weight" in f
raw = open(sys.argv[1], "rb").read()  # the seal in the user block's first 512 bytes, checked independently
seal = dict(line.split(" ", 1) for line in raw[:512].rstrip(b"\0").decode().splitlines()[1:])
assert raw.startswith(b"kilolayer checkpoint 3\n") and int(seal["size"]) == len(raw)
assert int(seal["crc32"], 16) == zlib.crc32(raw[512:])
# The index after it (src/checkpoint/index.h) against what h5py finds: every dataset, where HDF5
# put its bytes, their count, CRC-32 and shape; the header fields against the attributes.
length = int(raw[512:541].decode().split()[2])
assert raw[512:541].startswith(b"kilolayer index ") and 512 + length <= f.userblock_size
lines, fields, tensors, at = raw[512:512 + length].split(b"\n"), {}, {}, 1
while lines[at] != b"end":
    kind, name, value = lines[at].decode().split(" ", 2)
    if kind == "int":
        fields[name] = int(value)
    elif kind == "string":
        text = raw[512:512 + length].split(b"\n", at + 1)[-1][:int(value)]  # as many bytes as announced
        fields[name] = text.decode()
        at += text.count(b"\n") + 1
    else:
        offset, size, crc, shape = value.split(" ")
        tensors[name] = (int(offset), int(size), int(crc, 16), tuple(int(d) for d in shape.split(",")))
    at += 1
for key in ("format_version", "step", "tokens_seen", "config", "layout", "data", "skipped_batches"):
    expected = f.attrs[key]
    assert fields[key] == (expected.decode() if isinstance(expected, bytes) else expected), key
datasets = []
f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
assert sorted(datasets) == sorted(tensors), "the index and the file list other datasets"
for name, (offset, size, crc, shape) in tensors.items():
    d = f[name]
    assert d.id.get_offset() == offset and d.shape == shape and size == d.size * 4, name
    assert zlib.crc32(raw[offset:offset + size]) == crc == d.attrs["crc32"], name
print("h5py: step", f.attrs["step"], "tensors", sum(1 for _ in f["model/layers"]), "layers;", len(tensors),
      "datasets where the index says, with its CRC-32s")
PY

/usr/bin/python3 "$here/../lib/compare_runs.py" "$work" 20 straight=split,pp4,dp4,pp4_interleaved zero_straight=zero_split,zero_to_dp1
