"""kilolayer's model written independently in plain PyTorch: GPT-2-style, pre-norm, causal
multi-head attention, exact-erf GELU, dropout on the embedding and each branch output, LM head tied
to the token embedding; `branch_mult` multiplies every branch (the depth parametrisations' (L0/L)^alpha,
models/residual.h). Used by the reference fixture (tools/torch_reference.py) and the CPU benchmark
(bench/torch_train.py)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, d_ff, dropout, branch_mult=1.0):
        super().__init__()
        self.heads = heads
        self.branch_mult = branch_mult
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc = nn.Linear(d, d_ff)
        self.fc2 = nn.Linear(d_ff, d)
        self.drop = nn.Dropout(dropout)

    def attention(self, x):
        B, T, C = x.shape
        hs = C // self.heads
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, hs).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.branch_mult * self.drop(self.attention(self.ln1(x)))
        return x + self.branch_mult * self.drop(self.fc2(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    def __init__(self, layers, d_model, heads, d_ff, seq_len, vocab, dropout=0.0, branch_mult=1.0):
        super().__init__()
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(seq_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, d_ff, dropout, branch_mult) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T)))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied head, no bias

    def adamw(self, lr, weight_decay, betas=(0.9, 0.95), eps=1e-8, block_lr_scale=1.0, block_eps_scale=1.0):
        """AdamW with decay on matrices only, as kilolayer's parameter table says; the blocks' tensors
        get lr x block_lr_scale and eps x block_eps_scale (each group's "lr_scale" is kept for the
        schedule to multiply)."""
        in_blocks = {id(p) for p in self.blocks.parameters()}
        groups = []
        for block in (False, True):
            for matrix in (True, False):
                params = [p for p in self.parameters() if (id(p) in in_blocks) == block and (p.dim() == 2) == matrix]
                scale = block_lr_scale if block else 1.0
                groups.append({"params": params, "weight_decay": weight_decay if matrix else 0.0,
                               "lr": lr * scale, "lr_scale": scale, "eps": eps * (block_eps_scale if block else 1.0)})
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
