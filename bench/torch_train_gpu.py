#!/usr/bin/python3
"""Times training steps of kilolayer's model (tools/torch_gpt.py) in PyTorch on one CUDA GPU:
forward, backward, global-norm clipping and AdamW with fp32 master weights; --precision bf16 runs
the passes under torch.autocast(bfloat16), --recompute block checkpoints every block (what
kilolayer's parallel.recompute = block does). Random tokens. Prints one JSON line with the median
tokens/s over the steps after the first, or exits 77 with a message when PyTorch has no CUDA."""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_gpt import GPT  # noqa: E402


def forward(model, idx, recompute):
    x = model.drop(model.wte(idx) + model.wpe(torch.arange(idx.shape[1])))
    for block in model.blocks:
        x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
    return model.ln_f(x) @ model.wte.weight.T


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 128), ("d_model", 1024), ("heads", 16), ("seq_len", 1024),
                          ("batch", 8), ("micro_batch", 8), ("vocab", 256), ("steps", 6)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--recompute", choices=["none", "block"], default="block")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("torch_train_gpu: this PyTorch (%s) has no usable CUDA device (Debian's python3-torch is "
              "CPU-only: a CUDA build of torch is needed for the comparison)" % torch.__version__, file=sys.stderr)
        sys.exit(77)
    torch.set_default_device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = GPT(a.layers, a.d_model, a.heads, 4 * a.d_model, a.seq_len, a.vocab, a.dropout)
    optimizer = model.adamw(lr=1e-3, weight_decay=0.1)
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    times = []
    for _ in range(a.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for _ in range(a.batch // a.micro_batch):
            x = torch.randint(0, a.vocab, (a.micro_batch, a.seq_len))
            y = torch.randint(0, a.vocab, (a.micro_batch, a.seq_len))
            with torch.autocast("cuda", dtype=dtype, enabled=a.precision == "bf16"):
                logits = forward(model, x, a.recompute == "block")
            loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), y.reshape(-1)) * a.micro_batch / a.batch
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    steady = times[1:] if len(times) > 1 else times
    print(json.dumps({"tokens_per_s": a.batch * a.seq_len / statistics.median(steady),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
                      "step_s": [round(t, 3) for t in times]}))


if __name__ == "__main__":
    main()
