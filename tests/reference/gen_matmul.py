"""Reference values for matmul and linear: forward and gradients from PyTorch (fp32, fp64,
bf16 and fp16 inputs), and an FP8 GEMM computed from ml_dtypes' exact FP8 values."""
import ml_dtypes
import numpy as np
import torch

from refutil import save

GROUP = "matmul"


def generate(out):
    g = torch.Generator().manual_seed(0)
    # Batched matmul with transposes, odd sizes.
    for name, (ta, tb) in {"nn": (False, False), "tn": (True, False), "nt": (False, True),
                           "tt": (True, True)}.items():
        a = torch.randn(*( (3, 7, 5) if ta else (3, 5, 7) ), generator=g, dtype=torch.float64)
        b = torch.randn(*( (3, 9, 7) if tb else (3, 7, 9) ), generator=g, dtype=torch.float64)
        a32, b32 = a.float().requires_grad_(), b.float().requires_grad_()
        opa = a32.transpose(-1, -2) if ta else a32
        opb = b32.transpose(-1, -2) if tb else b32
        c = opa @ opb
        gc = torch.randn(c.shape, generator=g, dtype=torch.float64)
        c.backward(gc.float())
        for k, v in {"a": a32, "b": b32, "c": c, "gc": gc.float(), "ga": a32.grad, "gb": b32.grad}.items():
            save(out, GROUP, f"{name}_{k}", v.detach().numpy())

    # Linear with bias on a [S, B, in] input (fp32).
    x = torch.randn(6, 3, 11, generator=g).requires_grad_()
    w = torch.randn(13, 11, generator=g).requires_grad_()
    bias = torch.randn(13, generator=g).requires_grad_()
    y = torch.nn.functional.linear(x, w, bias)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    for k, v in {"x": x, "w": w, "bias": bias, "y": y, "gy": gy, "gx": x.grad, "gw": w.grad,
                 "gbias": bias.grad}.items():
        save(out, GROUP, f"linear_{k}", v.detach().numpy())

    # Narrow dtypes: torch computes bf16/fp16 matmul with fp32 accumulation and one rounding.
    a = torch.randn(17, 33, generator=g)
    b = torch.randn(33, 19, generator=g)
    save(out, GROUP, "lp_a", a.numpy())
    save(out, GROUP, "lp_b", b.numpy())
    gc = torch.randn(17, 19, generator=g)
    save(out, GROUP, "lp_gc", gc.numpy())
    for dt, tag in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        ref = (a.to(dt).float() @ b.to(dt).float()).to(dt).float()
        save(out, GROUP, f"lp_c_{tag}", ref.numpy())
        # The backward in the same arithmetic: each gradient one matmul of the narrow values,
        # accumulated in fp32 and rounded once (dA = dC B^T, dB = A^T dC).
        a_n, b_n, gc_n = a.to(dt).float(), b.to(dt).float(), gc.to(dt).float()
        save(out, GROUP, f"lp_ga_{tag}", (gc_n @ b_n.T).to(dt).float().numpy())
        save(out, GROUP, f"lp_gb_{tag}", (a_n.T @ gc_n).to(dt).float().numpy())

    # FP8: quantize with scales, exact products of the fp8 values in float64.
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 24)).astype(np.float32) * 3
    b = rng.standard_normal((24, 8)).astype(np.float32) * 0.01
    a_scale, b_scale = 448.0 / np.abs(a).max(), 57344.0 / np.abs(b).max() / 8
    a8 = (a * a_scale).astype(ml_dtypes.float8_e4m3fn)
    b8 = (b * b_scale).astype(ml_dtypes.float8_e5m2)
    c = (a8.astype(np.float64) @ b8.astype(np.float64)) / (a_scale * b_scale)
    save(out, GROUP, "fp8_a_bits", a8.view(np.uint8))
    save(out, GROUP, "fp8_b_bits", b8.view(np.uint8))
    save(out, GROUP, "fp8_scale_inv", np.array([1 / a_scale, 1 / b_scale], dtype=np.float64))
    save(out, GROUP, "fp8_c", c)
