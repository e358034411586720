#!/usr/bin/env python3
"""torch.nn.functional.scaled_dot_product_attention at the shapes of attention_bench_cuda.cpp.

Run on the GPU machine; prints JSON {name: {"ms": ..., "tflops": ...}} with the same names and
FLOP convention (forward 4*B*H*S^2*D, backward 2.5x, halved for causal). GQA uses enable_gqa when
this torch has it, else K/V are expanded outside the timed region (the kernel then does MHA work,
as it would in such a torch).
"""
import json
import sys

import torch
import torch.nn.functional as F

SHAPES = [
    ("gpt2_small", 8, 1024, 12, 12, 64),
    ("llama_1b", 4, 2048, 32, 8, 64),
    ("llama_d128", 2, 2048, 16, 8, 128),
]
DTYPES = [("bfloat16", torch.bfloat16), ("float32", torch.float32)]


def time_it(fn, min_time=0.5):
    fn()
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    iters, total = 0, 0.0
    while total < min_time * 1e3 or iters < 5:
        start.record()
        for _ in range(5):
            fn()
        end.record()
        torch.cuda.synchronize()
        total += start.elapsed_time(end)
        iters += 5
    return total / iters / 1e3


def main():
    if not torch.cuda.is_available():
        print("torch_attention.py: no CUDA device", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    has_gqa = "enable_gqa" in F.scaled_dot_product_attention.__doc__
    out = {}
    for name, b, s, hq, hkv, d in SHAPES:
        for dname, dt in DTYPES:
            dev = "cuda"
            q = torch.randn(b, hq, s, d, device=dev, dtype=dt, requires_grad=True)
            k = torch.randn(b, hkv, s, d, device=dev, dtype=dt, requires_grad=True)
            v = torch.randn(b, hkv, s, d, device=dev, dtype=dt, requires_grad=True)
            if hkv != hq and not has_gqa:
                k = k.detach().repeat_interleave(hq // hkv, dim=1).requires_grad_()
                v = v.detach().repeat_interleave(hq // hkv, dim=1).requires_grad_()
            kw = {"is_causal": True}
            if hkv != hq and has_gqa:
                kw["enable_gqa"] = True

            def fwd():
                with torch.no_grad():
                    return F.scaled_dot_product_attention(q, k, v, **kw)

            y = F.scaled_dot_product_attention(q, k, v, **kw)
            dy = torch.randn_like(y)
            t_fwd = time_it(fwd)
            t_bwd = time_it(lambda: torch.autograd.grad(y, (q, k, v), dy, retain_graph=True))
            flops_fwd = 4.0 * b * hq * s * s * d * 0.5
            base = f"attention_{name}_{dname}"
            out[base + "_fwd"] = {"ms": t_fwd * 1e3, "tflops": flops_fwd / t_fwd / 1e12}
            out[base + "_bwd"] = {"ms": t_bwd * 1e3, "tflops": 2.5 * flops_fwd / t_bwd / 1e12}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
