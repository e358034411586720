"""Broadcasting elementwise ops (add, sub, mul, div, scale, and axpy as torch.add(a, b, alpha))
and their gradients in PyTorch."""
import torch

from refutil import save

GROUP = "elementwise"
AXPY_ALPHA = -0.75  # tests/autograd/elementwise_reference_test.cpp uses the same


def generate(out):
    g = torch.Generator().manual_seed(3)
    cases = {"bias": ((4, 3, 5), (5,)), "rowscale": ((4, 3, 5), (4, 1, 1)),
             "outer": ((3, 1), (1, 6)), "same": ((7, 9), (7, 9))}
    for name, (sa, sb) in cases.items():
        a = torch.randn(*sa, generator=g).requires_grad_()
        b = (torch.rand(*sb, generator=g) + 0.5).requires_grad_()  # away from 0 for div
        save(out, GROUP, f"{name}_a", a.detach().numpy())
        save(out, GROUP, f"{name}_b", b.detach().numpy())
        y = (a + b) * b - a / b * 0.5
        gy = torch.randn(y.shape, generator=g)
        y.backward(gy)
        save(out, GROUP, f"{name}_y", y.detach().numpy())
        save(out, GROUP, f"{name}_gy", gy.numpy())
        save(out, GROUP, f"{name}_ga", a.grad.numpy())
        save(out, GROUP, f"{name}_gb", b.grad.numpy())
        a.grad, b.grad = None, None
        z = torch.add(a, b, alpha=AXPY_ALPHA)  # a + alpha * b, b broadcast
        gz = torch.randn(z.shape, generator=g)
        z.backward(gz)
        save(out, GROUP, f"{name}_axpy_y", z.detach().numpy())
        save(out, GROUP, f"{name}_axpy_gy", gz.numpy())
        save(out, GROUP, f"{name}_axpy_ga", a.grad.numpy())
        save(out, GROUP, f"{name}_axpy_gb", b.grad.numpy())
