#!/usr/bin/python3
"""Writes the PyTorch reference fixture for tests/test_torch_reference.cpp.

kilolayer's model written independently in PyTorch (tools/torch_gpt.py), run in float64, without
dropout (PyTorch's dropout RNG cannot be matched). It records the weights, one
batch's logits, loss, every gradient and the norm of dL/dx at every block boundary, then ten steps of AdamW (PyTorch's own, weight decay on
matrices only) with global-norm clipping and the warmup + cosine schedule, and their losses.
The same again under "dmup/" for Depth-muP at L0 = 2 (models/residual.h): every branch times
(L0/L)^(1/2), the blocks' learning rate times (L/L0)^(-1/2) and their Adam epsilon times (L/L0)^(-1/2),
from the same initial weights.

File format (little-endian): b"KLFX", uint32 count, then per tensor: uint32 name length, name bytes,
uint32 ndim, int64 dims[ndim], float64 data.
"""
import argparse
import math
import os
import struct

import torch
import torch.nn.functional as F

from torch_gpt import GPT

CONFIG = dict(layers=6, d_model=32, heads=4, d_ff=128, seq_len=16, vocab=64, batch=3)
TRAIN = dict(steps=10, lr=3e-3, min_lr=3e-4, warmup=3, weight_decay=0.1, beta1=0.9, beta2=0.95,
             eps=1e-8, clip=1.0)


def kilolayer_names(model):
    """PyTorch parameter -> kilolayer's global name."""
    names = {model.wte.weight: "embed.token.weight", model.wpe.weight: "embed.position.weight",
             model.ln_f.weight: "final_norm.weight", model.ln_f.bias: "final_norm.bias"}
    parts = {"ln1": "ln1", "qkv": "attn.qkv", "proj": "attn.proj", "ln2": "ln2", "fc": "mlp.fc",
             "fc2": "mlp.proj"}
    for l, block in enumerate(model.blocks):
        for attr, name in parts.items():
            module = getattr(block, attr)
            names[module.weight] = f"layers/{l:06d}/{name}.weight"
            names[module.bias] = f"layers/{l:06d}/{name}.bias"
    return names


def learning_rate(step):
    t = TRAIN
    if step < t["warmup"]:
        return t["lr"] * (step + 1) / t["warmup"]
    progress = (step - t["warmup"]) / (t["steps"] - t["warmup"] - 1)
    return t["min_lr"] + (t["lr"] - t["min_lr"]) * 0.5 * (1 + math.cos(math.pi * progress))


DEPTH_MUP_BASE_LAYERS = 2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    c = CONFIG
    model = GPT(c["layers"], c["d_model"], c["heads"], c["d_ff"], c["seq_len"], c["vocab"])
    with torch.no_grad():  # non-trivial values everywhere, so that every gradient is exercised
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.1)
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm gains around 1
                p.add_(1.0)
    initial = {name: p.detach().clone() for name, p in model.state_dict().items()}
    tensors = {}
    for p, name in kilolayer_names(model).items():
        tensors["param/" + name] = p.detach().clone()
    for key, value in c.items():
        tensors["meta." + key] = torch.tensor([float(value)])
    for key, value in TRAIN.items():
        tensors["train." + key] = torch.tensor([float(value)])
    tensors["dmup.base_layers"] = torch.tensor([float(DEPTH_MUP_BASE_LAYERS)])

    B, T, V = c["batch"], c["seq_len"], c["vocab"]
    inputs = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    step_inputs = torch.randint(0, V, (TRAIN["steps"], B, T))
    step_targets = (step_inputs * 3 + 1) % V  # learnable, so the losses move
    record(model, "", tensors, inputs, targets, step_inputs, step_targets)
    ratio = c["layers"] / DEPTH_MUP_BASE_LAYERS  # L / L0
    scaled = GPT(c["layers"], c["d_model"], c["heads"], c["d_ff"], c["seq_len"], c["vocab"],
                 branch_mult=ratio ** -0.5)
    scaled.load_state_dict(initial)
    losses = record(scaled, "dmup/", tensors, inputs, targets, step_inputs, step_targets,
                    lr_scale=ratio ** -0.5, eps_scale=ratio ** -0.5)
    loss = tensors["loss"]

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "wb") as f:
        f.write(b"KLFX")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors.items():
            data = t.detach().contiguous().double()
            encoded = name.encode()
            f.write(struct.pack("<I", len(encoded)))
            f.write(encoded)
            f.write(struct.pack("<I", data.dim()))
            f.write(struct.pack(f"<{data.dim()}q", *data.shape))
            f.write(data.numpy().astype("<f8").tobytes())
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}: {len(tensors)} tensors, loss {loss.item():.6f}, "
          f"depth-muP step losses {losses[0]:.4f} .. {losses[-1]:.4f}")


def record(model, prefix, tensors, inputs, targets, step_inputs, step_targets, lr_scale=1.0, eps_scale=1.0):
    """One batch's logits, loss, gradients and dL/dx_l norms, then ten AdamW steps: into tensors
    under `prefix`. Returns the step losses."""
    names = kilolayer_names(model)
    B, T = inputs.shape
    V = model.wte.weight.shape[0]
    # The model's forward spelled out, keeping the residual stream at every block boundary so that
    # its gradients dL/dx_l can be recorded (kilolayer's diagnostics report their norms).
    x = model.drop(model.wte(inputs) + model.wpe(torch.arange(T)))
    stream = []
    for block in model.blocks:
        x.retain_grad()
        stream.append(x)
        x = block(x)
    x.retain_grad()
    stream.append(x)
    logits = model.ln_f(x) @ model.wte.weight.T
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    tensors[prefix + "stream_grad_norm"] = torch.stack([s.grad.norm() for s in stream]).detach()
    tensors[prefix + "inputs"] = inputs.double()
    tensors[prefix + "targets"] = targets.double()
    tensors[prefix + "logits"] = logits.detach()
    tensors[prefix + "loss"] = loss.detach().reshape(1)
    for p, name in names.items():
        tensors[prefix + "grad/" + name] = p.grad.detach().clone()

    # Ten optimizer steps, each on its own batch.
    model.zero_grad()
    optimizer = model.adamw(TRAIN["lr"], TRAIN["weight_decay"], (TRAIN["beta1"], TRAIN["beta2"]), TRAIN["eps"],
                           lr_scale, eps_scale)
    losses = []
    for step in range(TRAIN["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step) * group["lr_scale"]
        optimizer.zero_grad()
        step_loss = F.cross_entropy(model(step_inputs[step]).reshape(-1, V), step_targets[step].reshape(-1))
        step_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["clip"])
        optimizer.step()
        losses.append(step_loss.item())
    tensors[prefix + "steps.inputs"] = step_inputs.double()
    tensors[prefix + "steps.targets"] = step_targets.double()
    tensors[prefix + "steps.losses"] = torch.tensor(losses)
    for p, name in names.items():
        tensors[prefix + "final/" + name] = p.detach().clone()

    return losses


if __name__ == "__main__":
    main()
