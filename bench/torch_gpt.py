#!/usr/bin/env python3
"""The models of bench/gpt_bench.cpp in PyTorch (eager, CPU, fp32, same shapes and thread
count): one training step = zero grads, forward, mean token cross-entropy, backward.
Prints JSON {benchmark name: seconds per step}, read by bench/compare.py. Attention is the
explicit causal softmax(QK^T)V that torch 1.13 eager runs (no fused SDPA there)."""
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(h)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, nh, nkv, f = c["hidden"], c["heads"], c["kv_heads"], c["ffn"]
        self.c, self.hd = c, h // nh
        norm = (lambda: nn.LayerNorm(h)) if c["norm"] == "LayerNorm" else (lambda: RMSNorm(h, 1e-5))
        self.ln1, self.ln2 = norm(), norm()
        self.qkv = nn.Linear(h, (nh + 2 * nkv) * self.hd, bias=c["bias"])
        self.proj = nn.Linear(nh * self.hd, h, bias=c["bias"])
        self.fc1 = nn.Linear(h, 2 * f if c["glu"] else f, bias=c["bias"])
        self.fc2 = nn.Linear(f, h, bias=c["bias"])

    def forward(self, x, mask, cos, sin):
        b, s, _ = x.shape
        nh, nkv, hd = self.c["heads"], self.c["kv_heads"], self.hd
        q, k, v = self.qkv(self.ln1(x)).split([nh * hd, nkv * hd, nkv * hd], -1)
        q, k, v = (t.view(b, s, -1, hd).transpose(1, 2) for t in (q, k, v))
        if cos is not None:
            rot = lambda t: torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        if nkv != nh:
            k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, s, nh * hd))
        m = self.fc1(self.ln2(x))
        if self.c["glu"]:
            g, u = m.chunk(2, -1)
            m = F.silu(g) * u
        else:
            m = F.gelu(m, approximate="tanh")
        return x + self.fc2(m)


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.wte = nn.Embedding(c["vocab"], c["hidden"])
        self.wpe = nn.Embedding(c["seq"], c["hidden"]) if not c["rope"] else None
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.lnf = nn.LayerNorm(c["hidden"]) if c["norm"] == "LayerNorm" else RMSNorm(c["hidden"], 1e-5)
        self.head = None if c["tied"] else nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, ids, labels):
        s = ids.shape[1]
        x = self.wte(ids)
        cos = sin = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(s))
        else:
            hd = self.c["hidden"] // self.c["heads"]
            inv = 1.0 / (self.c["rope_base"] ** (torch.arange(0, hd, 2).float() / hd))
            f = torch.outer(torch.arange(s).float(), inv)
            emb = torch.cat([f, f], -1)
            cos, sin = emb.cos(), emb.sin()
        mask = torch.ones(s, s, dtype=torch.bool).triu(1)
        for layer in self.layers:
            x = layer(x, mask, cos, sin)
        x = self.lnf(x)
        logits = x @ self.wte.weight.T if self.head is None else self.head(x)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


SHAPES = {
    "gpt2_small_step": dict(layers=12, hidden=768, heads=12, kv_heads=12, ffn=3072, vocab=50304,
                            norm="LayerNorm", bias=True, glu=False, rope=False, tied=True,
                            batch=2, seq=256, rope_base=None),
    "llama_tiny_step": dict(layers=4, hidden=512, heads=8, kv_heads=4, ffn=1408, vocab=32000,
                            norm="RMSNorm", bias=False, glu=True, rope=True, tied=False,
                            batch=2, seq=256, rope_base=5e5),
}


def timeit(fn, min_time):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time and n >= 3:
            return dt / n


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    res = {}
    for name, c in SHAPES.items():
        model = GPT(c)
        ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"]))
        labels = torch.randint(0, c["vocab"], (c["batch"], c["seq"]))

        def step():
            model.zero_grad(set_to_none=True)
            model(ids, labels).backward()
        res[name] = timeit(step, 3.0)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
