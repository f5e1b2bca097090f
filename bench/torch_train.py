#!/usr/bin/python3
"""Times training steps of kilolayer's model in PyTorch on random tokens: forward, backward,
global-norm clipping and AdamW. Two formulations a PyTorch user might write (--model):
  gpt      tools/torch_gpt.py, nanoGPT-style (kilolayer's model written out by hand);
  encoder  nn.TransformerEncoderLayer(norm_first=True, activation="gelu") with a causal mask, the
           same embeddings, final LayerNorm and tied head (its dropout also acts on the attention
           probabilities and the MLP's hidden units).
--precision bf16 runs the forward pass under torch.autocast("cpu", dtype=torch.bfloat16).
Prints one JSON line: the median tokens/s over the steps after the first, the parameter count,
and the BLAS library this process loaded (from /proc/self/maps)."""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_gpt import GPT  # noqa: E402


class EncoderGPT(nn.Module):
    """The model through PyTorch's own Transformer layer."""

    def __init__(self, layers, d, heads, seq_len, vocab, dropout):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(seq_len, d)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d)
        self.register_buffer("mask", torch.triu(torch.full((seq_len, seq_len), float("-inf")), diagonal=1))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T)))
        x = self.blocks(x, mask=self.mask[:T, :T])
        return self.ln_f(x) @ self.wte.weight.T

    def adamw(self, lr, weight_decay, betas=(0.9, 0.95), eps=1e-8):
        decay = [p for p in self.parameters() if p.dim() == 2]
        rest = [p for p in self.parameters() if p.dim() != 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                  {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps)


def loaded_blas():
    """The BLAS shared objects mapped into this process, resolved to their real files."""
    found = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if any(key in name for key in ("blas", "blis", "mkl_rt", "mkl_core")):
                found.add(os.path.realpath(path))
    return sorted(found)


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 128), ("d_model", 128), ("heads", 2), ("seq_len", 128),
                          ("batch", 8), ("vocab", 256), ("steps", 4), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--model", choices=["gpt", "encoder"], default="gpt")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "gpt":
        model = GPT(a.layers, a.d_model, a.heads, 4 * a.d_model, a.seq_len, a.vocab, a.dropout)
    else:
        model = EncoderGPT(a.layers, a.d_model, a.heads, a.seq_len, a.vocab, a.dropout)
    optimizer = model.adamw(lr=1e-3, weight_decay=0.1)
    times, losses = [], []
    for _ in range(a.steps):
        x = torch.randint(0, a.vocab, (a.batch, a.seq_len))
        y = torch.randint(0, a.vocab, (a.batch, a.seq_len))
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    steady = times[1:] if len(times) > 1 else times
    tokens = a.batch * a.seq_len
    assert all(math.isfinite(v) for v in losses), losses
    print(json.dumps({"tokens_per_s": tokens / statistics.median(steady),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "blas": loaded_blas(),
                      "step_s": [round(t, 3) for t in times]}))


if __name__ == "__main__":
    main()
