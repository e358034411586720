"""Reference data for tests/ops activation, softmax and norm tests (group "act_norm").

Each case runs a PyTorch function forward and backward (autograd, with a random output
gradient) in float32 and in bfloat16, on small odd shapes. Every array is saved as float32:
bf16 inputs and outputs are bf16 values widened to float32 (exact), so the C++ side converts
the inputs back to bf16 losslessly. Names: <case>_<f32|bf16>_<x|w|b|dy|y|dx|dw|db>.
"""
import pathlib

import torch
import torch.nn.functional as F

from refutil import rng, save

G = "act_norm"


def rand(shape, seed, scale=1.0, offset=0.0):
    return torch.from_numpy(rng(seed).standard_normal(shape) * scale + offset).float()


def swiglu(x):
    x1, x2 = torch.chunk(x, 2, dim=-1)
    return F.silu(x1) * x2


def causal_softmax(x, scale):
    """Megatron FusedScaleMaskSoftmax (upper-triangular mask, aligned at the bottom right):
    (i, j) with j > i + (sk - sq) masked; fully masked rows are zeros, gradient zero."""
    sq, sk = x.shape[-2], x.shape[-1]
    i = torch.arange(sq)[:, None]
    j = torch.arange(sk)[None, :]
    mask = j > i + (sk - sq)
    y = torch.softmax((x * scale).masked_fill(mask, float("-inf")), dim=-1)
    return y


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def run_case(out, name, fn, inputs, seed, dtypes=("f32", "bf16")):
    """inputs: dict name -> float32 tensor (or None). fn(**inputs) -> output.

    f32: torch's float32 kernels. bf16: the inputs rounded to bf16, the function computed in
    float32 from those values and the results rounded once to bf16. That is the contract of
    mcore's kernels and of Megatron's fused GPU kernels; torch 1.13's own CPU bf16 kernels
    round intermediates to bf16 (gelu(tanh) returns -0 where the value is -3e-3, silu's and
    layer_norm's backward are off by several bf16 ulp), so they are not a useful reference.
    f64: the float32 inputs computed in float64 (the exact answer for those inputs).
    """
    for tag in dtypes:
        dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f64": torch.float32}[tag]
        ts = {k: (v.detach().to(dt).clone().requires_grad_() if v is not None else None)
              for k, v in inputs.items()}
        if tag == "f64":
            tf = {k: (v.detach().double().requires_grad_() if v is not None else None)
                  for k, v in ts.items()}
            y = fn(**tf)
            dy = rand(y.shape, seed + 1)
            y.backward(dy.double())
            grads = {k: tf[k].grad for k in ts if ts[k] is not None}
            y = y.detach()
        elif tag == "bf16":
            tf = {k: (v.detach().float().requires_grad_() if v is not None else None)
                  for k, v in ts.items()}
            y = fn(**tf)
            dy = rand(y.shape, seed + 1).to(torch.bfloat16)
            y.backward(dy.float())
            y = y.to(torch.bfloat16)
            grads = {k: tf[k].grad.to(torch.bfloat16) for k in ts if ts[k] is not None}
        else:
            y = fn(**ts)
            dy = rand(y.shape, seed + 1)
            y.backward(dy)
            grads = {k: ts[k].grad for k in ts if ts[k] is not None}
        for k, v in ts.items():
            if v is not None:
                save(out, G, f"{name}_{tag}_{k}", v.detach().float())
        save(out, G, f"{name}_{tag}_dy", dy.float())
        # A fully masked softmax row is NaN in torch; its true value and gradient are zero.
        keep = torch.double if tag == "f64" else torch.float
        save(out, G, f"{name}_{tag}_y", torch.nan_to_num(y.detach().to(keep), nan=0.0))
        for k, g in grads.items():
            save(out, G, f"{name}_{tag}_d{k}", torch.nan_to_num(g.to(keep), nan=0.0))


def generate(out: pathlib.Path):
    torch.manual_seed(0)
    shape = (3, 5, 37)
    run_case(out, "gelu_none", lambda x: F.gelu(x, approximate="none"),
             {"x": rand(shape, 1, 2.0)}, 10)
    run_case(out, "gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
             {"x": rand(shape, 2, 2.0)}, 20)
    run_case(out, "silu", lambda x: F.silu(x), {"x": rand(shape, 3, 3.0)}, 30)
    run_case(out, "swiglu", swiglu, {"x": rand((3, 5, 74), 4, 2.0)}, 40)

    run_case(out, "softmax", lambda x: torch.softmax(x, dim=-1), {"x": rand(shape, 5, 3.0)}, 50)
    run_case(out, "softmax_causal", lambda x: causal_softmax(x, 0.3),
             {"x": rand((2, 3, 7, 11), 6, 3.0)}, 60)
    run_case(out, "softmax_causal_tall", lambda x: causal_softmax(x, 0.125),
             {"x": rand((2, 3, 11, 7), 7, 3.0)}, 70)

    run_case(out, "layer_norm", lambda x, w, b: F.layer_norm(x, (37,), w, b, 1e-5),
             {"x": rand(shape, 8, 2.0, 0.5), "w": rand((37,), 9, 0.5, 1.0),
              "b": rand((37,), 10, 0.5)}, 80)
    run_case(out, "layer_norm_nobias", lambda x, w: F.layer_norm(x, (37,), w, None, 1e-6),
             {"x": rand(shape, 11, 2.0), "w": rand((37,), 12, 0.5, 1.0)}, 90)
    # |mean| >> std: catches E[x^2] - E[x]^2 cancellation in the variance. torch's float32
    # result is itself 1e-3 off here, so the test compares with the float64 answer.
    run_case(out, "layer_norm_offset", lambda x, w, b: F.layer_norm(x, (37,), w, b, 1e-5),
             {"x": rand(shape, 13, 0.1, 300.0), "w": rand((37,), 14, 0.5, 1.0),
              "b": rand((37,), 15, 0.5)}, 100, dtypes=("f32", "f64"))
    # torch 1.13 has no rms_norm: the formula above.
    run_case(out, "rms_norm", lambda x, w: rms_norm(x, w, 1e-5),
             {"x": rand(shape, 16, 2.0, 0.3), "w": rand((37,), 17, 0.5, 1.0)}, 110)
