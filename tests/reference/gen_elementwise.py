"""Broadcasting elementwise ops (add, sub, mul, div, scale) and their gradients in PyTorch."""
import torch

from refutil import save

GROUP = "elementwise"


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
