#!/usr/bin/env python3
"""Writes a kilolayer checkpoint's parameters as a PyTorch state_dict with nanoGPT's names.

    tools/export_torch.py CHECKPOINT OUT.pt

CHECKPOINT: a checkpoint.h5, a step directory, or a checkpoint directory (its `latest`). Weights
keep nn.Linear's (out, in) orientation, which kilolayer stores already; a tied head is written as
both transformer.wte.weight and lm_head.weight. A padded vocabulary (model.vocab_padded) is cut to
the true one (model.vocab rows; the padding rows are zero and checked to be). The checkpoint's
CRC-32s are verified. The architecture (the arguments of tools/nanogpt.py's GPT) is printed.
"""
import configparser
import os
import sys
import zlib

import h5py
import numpy as np
import torch

NAMES = {  # kilolayer (per layer) -> nanoGPT
    "ln1.weight": "ln_1.weight", "ln1.bias": "ln_1.bias",
    "attn.qkv.weight": "attn.c_attn.weight", "attn.qkv.bias": "attn.c_attn.bias",
    "attn.proj.weight": "attn.c_proj.weight", "attn.proj.bias": "attn.c_proj.bias",
    "ln2.weight": "ln_2.weight", "ln2.bias": "ln_2.bias",
    "mlp.fc.weight": "mlp.c_fc.weight", "mlp.fc.bias": "mlp.c_fc.bias",
    "mlp.proj.weight": "mlp.c_proj.weight", "mlp.proj.bias": "mlp.c_proj.bias",
}


def checkpoint_file(path):
    if os.path.isfile(path):
        return path
    if os.path.isfile(os.path.join(path, "checkpoint.h5")):
        return os.path.join(path, "checkpoint.h5")
    with open(os.path.join(path, "latest")) as f:
        return os.path.join(path, f.read().strip(), "checkpoint.h5")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, out = checkpoint_file(sys.argv[1]), sys.argv[2]
    f = h5py.File(source, "r")
    config = configparser.ConfigParser()
    config.read_string(f.attrs["config"].decode() if isinstance(f.attrs["config"], bytes) else f.attrs["config"])
    model = config["model"]
    layers, tied = int(model["layers"]), model["tie_embeddings"] == "true"
    if model.get("residual", "prenorm") != "prenorm":
        sys.exit(f"export_torch: {source}: model.residual = {model['residual']}; nanoGPT's blocks are pre-norm only")

    def tensor(name):
        data = f["model/" + name]
        values = np.ascontiguousarray(data[()], dtype="<f4")
        if zlib.crc32(values.tobytes()) != data.attrs["crc32"]:
            sys.exit(f"export_torch: {source}: checksum mismatch in model/{name}")
        return torch.from_numpy(values.copy())

    vocab = int(model["vocab"])

    def vocabulary(name):  # the true rows of a token embedding or head stored with padding rows
        values = tensor(name)
        if values.shape[0] > vocab and values[vocab:].abs().max().item() != 0:
            sys.exit(f"export_torch: {source}: model/{name} has non-zero rows past model.vocab = {vocab}")
        return values[:vocab].clone()

    state = {"transformer.wte.weight": vocabulary("embed.token.weight"),
             "transformer.wpe.weight": tensor("embed.position.weight"),
             "transformer.ln_f.weight": tensor("final_norm.weight"),
             "transformer.ln_f.bias": tensor("final_norm.bias")}
    for i in range(layers):
        for ours, theirs in NAMES.items():
            state[f"transformer.h.{i}.{theirs}"] = tensor(f"layers/{i:06d}/{ours}")
    state["lm_head.weight"] = state["transformer.wte.weight"] if tied else vocabulary("head.weight")
    d_model = int(model["d_model"])
    arch = dict(layers=layers, d_model=d_model, heads=int(model["heads"]),
                d_ff=int(model["d_ff"]) or 4 * d_model, seq_len=int(model["seq_len"]), vocab=vocab)
    torch.save(state, out)
    print(f"export_torch: {source} (step {f.attrs['step']}) -> {out}: {len(state)} tensors, {arch}")


if __name__ == "__main__":
    main()
