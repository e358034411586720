"""Broadcasting elementwise ops (add, sub, mul, div, scale, and axpy as torch.add(a, b, alpha))
and their gradients in PyTorch."""
import torch

from refutil import save

GROUP = "elementwise"
AXPY_ALPHA = -0.75  # tests/autograd/elementwise_reference_test.cpp uses the same


def save_forward_backward(out, prefix, y, a, b, g):
    """Saves y, a random output gradient and both input gradients under `prefix`."""
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    for k, v in {"y": y.detach(), "gy": gy, "ga": a.grad, "gb": b.grad}.items():
        save(out, GROUP, f"{prefix}_{k}", v.numpy())
    a.grad, b.grad = None, None


def generate(out):
    g = torch.Generator().manual_seed(3)
    cases = {"bias": ((4, 3, 5), (5,)), "rowscale": ((4, 3, 5), (4, 1, 1)),
             "outer": ((3, 1), (1, 6)), "same": ((7, 9), (7, 9))}
    for name, (sa, sb) in cases.items():
        a = torch.randn(*sa, generator=g).requires_grad_()
        b = (torch.rand(*sb, generator=g) + 0.5).requires_grad_()  # away from 0 for div
        save(out, GROUP, f"{name}_a", a.detach().numpy())
        save(out, GROUP, f"{name}_b", b.detach().numpy())
        save_forward_backward(out, name, (a + b) * b - a / b * 0.5, a, b, g)
        # axpy: a + alpha * b, b broadcast
        save_forward_backward(out, f"{name}_axpy", torch.add(a, b, alpha=AXPY_ALPHA), a, b, g)
