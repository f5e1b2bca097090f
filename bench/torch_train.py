#!/usr/bin/python3
"""Times training steps of kilolayer's model in PyTorch (tools/torch_gpt.py): forward, backward,
global-norm clipping and AdamW, fp32, on random tokens. Prints one JSON line with the median
tokens/s over the steps after the first."""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_gpt import GPT  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 128), ("d_model", 128), ("heads", 2), ("seq_len", 128),
                          ("batch", 8), ("vocab", 256), ("steps", 4), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--dropout", type=float, default=0.1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = GPT(a.layers, a.d_model, a.heads, 4 * a.d_model, a.seq_len, a.vocab, a.dropout)
    optimizer = model.adamw(lr=1e-3, weight_decay=0.1)
    times = []
    for _ in range(a.steps):
        x = torch.randint(0, a.vocab, (a.batch, a.seq_len))
        y = torch.randint(0, a.vocab, (a.batch, a.seq_len))
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, a.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    steady = times[1:] if len(times) > 1 else times
    tokens = a.batch * a.seq_len
    print(json.dumps({"tokens_per_s": tokens / statistics.median(steady),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "step_s": [round(t, 3) for t in times]}))


if __name__ == "__main__":
    main()
