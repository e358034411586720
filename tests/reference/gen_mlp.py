"""A small MLP (Linear -> LayerNorm -> GeLU(tanh) -> Linear -> cross-entropy) trained for 50
AdamW steps in PyTorch. mcore loads the same initial weights and data and must follow the same
trajectory (tests/nn/mlp_training_test.cpp)."""
import torch

from refutil import save

GROUP = "mlp"
STEPS = 50


def generate(out):
    torch.manual_seed(0)
    n, d_in, d_hidden, n_cls = 32, 10, 24, 5
    fc1 = torch.nn.Linear(d_in, d_hidden)
    norm = torch.nn.LayerNorm(d_hidden)
    fc2 = torch.nn.Linear(d_hidden, n_cls)
    with torch.no_grad():  # non-trivial norm parameters
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.1, 0.1)
    params = {"fc1.weight": fc1.weight, "fc1.bias": fc1.bias, "norm.weight": norm.weight,
              "norm.bias": norm.bias, "fc2.weight": fc2.weight, "fc2.bias": fc2.bias}
    for k, v in params.items():
        save(out, GROUP, "init_" + k, v.detach().numpy())
    x = torch.randn(n, d_in)
    y = torch.randint(0, n_cls, (n,))
    save(out, GROUP, "x", x.numpy())
    save(out, GROUP, "y", y.numpy())
    # Megatron-style: no weight decay on biases and norm parameters.
    decay = [fc1.weight, fc2.weight]
    no_decay = [fc1.bias, norm.weight, norm.bias, fc2.bias]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        h = torch.nn.functional.gelu(norm(fc1(x)), approximate="tanh")
        loss = torch.nn.functional.cross_entropy(fc2(h), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    save(out, GROUP, "losses", torch.tensor(losses, dtype=torch.float64).numpy())
    for k, v in params.items():
        save(out, GROUP, "final_" + k, v.detach().numpy())
