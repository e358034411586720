#!/usr/bin/env python3
"""The ops of bench/ops_bench.cpp in PyTorch (eager, CPU, same shapes and thread count).

Prints JSON {benchmark name: seconds per iteration}. Backward is timed with autograd.grad on a
retained graph, i.e. what a PyTorch training step pays for that op's backward.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

T, H, FFN, V = 4096, 768, 3072, 50304
S, NH, D = 1024, 12, 64


def timeit(fn, min_time=0.5):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time and n >= 3:
            return dt / n


def fwd_bwd(name, make, out):
    inputs, f, dy_shape = make()
    out[name + "_fwd"] = timeit(lambda: f(*inputs))
    y = f(*inputs)
    dy = torch.randn(dy_shape if dy_shape else y.shape)
    out[name + "_bwd"] = timeit(lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True))


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    r = lambda *s: torch.randn(*s, requires_grad=True)
    res = {}
    fwd_bwd("layer_norm", lambda: ((r(T, H), r(H), r(H)),
                                    lambda x, w, b: F.layer_norm(x, (H,), w, b, 1e-5), None), res)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    fwd_bwd("rms_norm", lambda: ((r(T, H), r(H)), rms, None), res)

    mask = torch.triu(torch.ones(512, 512, dtype=torch.bool), 1)

    def softmax(x):
        return torch.softmax((x * 0.125).masked_fill(mask, float("-inf")), -1)
    res["softmax_causal_fwd"] = timeit(lambda: softmax(torch.randn(4, 12, 512, 512)))
    x = r(4, 12, 512, 512)
    y = softmax(x)
    dy = torch.randn_like(y)
    res["softmax_bwd"] = timeit(lambda: torch.autograd.grad(y, (x,), dy, retain_graph=True))

    fwd_bwd("gelu", lambda: ((r(T, FFN),), lambda x: F.gelu(x, approximate="tanh"), None), res)

    def swiglu(x):
        a, b = torch.chunk(x, 2, -1)
        return F.silu(a) * b
    fwd_bwd("swiglu", lambda: ((r(T, 2 * FFN),), swiglu, None), res)

    cmask = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)

    def attention(q, k, v):  # [S, B, H, D] -> explicit softmax(QK^T)V, as eager PyTorch 1.13 does
        qb, kb, vb = (t.permute(1, 2, 0, 3) for t in (q, k, v))
        s = (qb @ kb.transpose(-1, -2)) / D ** 0.5
        p = torch.softmax(s.masked_fill(cmask, float("-inf")), -1)
        return (p @ vb).permute(2, 0, 1, 3)
    fwd_bwd("attention", lambda: ((r(S, 1, NH, D), r(S, 1, NH, D), r(S, 1, NH, D)), attention, None), res)

    # The bench steps' attention layers: batch 2 x 256 tokens, causal; GQA repeats each kv head.
    smask = torch.triu(torch.ones(256, 256, dtype=torch.bool), 1)

    def step_attention(q, k, v):
        qb, kb, vb = (t.permute(1, 2, 0, 3) for t in (q, k, v))
        rep = qb.shape[1] // kb.shape[1]
        kb, vb = kb.repeat_interleave(rep, 1), vb.repeat_interleave(rep, 1)
        s = (qb @ kb.transpose(-1, -2)) / D ** 0.5
        p = torch.softmax(s.masked_fill(smask, float("-inf")), -1)
        return (p @ vb).permute(2, 0, 1, 3)
    fwd_bwd("attention_mha256", lambda: ((r(256, 2, 12, D), r(256, 2, 12, D), r(256, 2, 12, D)),
                                         step_attention, None), res)
    fwd_bwd("attention_gqa256", lambda: ((r(256, 2, 8, D), r(256, 2, 4, D), r(256, 2, 4, D)),
                                         step_attention, None), res)

    target = torch.arange(2048) * 7919 % V
    fwd_bwd("cross_entropy", lambda: ((r(2048, V),),
                                      lambda l: F.cross_entropy(l, target, reduction="none"), None), res)
    json.dump(res, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
