#!/usr/bin/env python3
"""PyTorch (eager) training loop on the GPU of exactly the model and setup that
`tools/pretrain_gpt --device cuda` trains, for the GPU training-throughput comparison
(scripts/bench_gpu). The GPU counterpart of bench/torch_gpt_train.py, whose argument reader,
FLOP count and LR schedule it reuses:

  pretrain_gpt --device cuda --bf16 --model gpt2-124m --mock-data ... > mcore.log
  bench/gpu/torch_gpt_train_cuda.py --args-from mcore.log --skip 3

Model: Megatron-Core's GPTModel as in bench/torch_gpt_train.py (pre-LN, fused QKV with GQA,
LayerNorm/RMSNorm, GeLU/SwiGLU, learned positions or RoPE, tied or untied output layer), with
attention through torch.nn.functional.scaled_dot_product_attention (FlashAttention-2 kernels
on an H100, causal, attention dropout inside the kernel) - the fused path mcore's CUDA attention
is compared with.

Precision (--precision): "autocast" (default; PyTorch's usual mixed precision: fp32 params,
grads and AdamW state, bf16 matmuls and attention under torch.autocast) or "bf16" (bf16 params
and grads, AdamW on them; fastest, but not what Megatron's --bf16 does: Megatron keeps fp32
main params). mcore's --bf16 is bf16 params, fp32 gradient accumulation and fp32 main params,
so "autocast" is the closer match in numerics and memory traffic.

Optimizer: AdamW with Megatron's groups (no decay on biases and norms), fused CUDA kernel when
this torch has one (--no-fused to disable), global-norm clipping, Megatron's LR schedule.
Tokens are random (throughput does not depend on them). Prints one JSON line: seconds per
iteration (mean after the first --skip), tokens/s, TFLOP/s (Megatron's
num_floating_point_operations), MFU against --peak-tflops (default 989: H100 SXM dense bf16),
losses and peak GPU memory.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_gpt_train import (GPT, Layer, megatron_lr,  # noqa: E402
                             num_floating_point_operations, read_megatron_args)


class SdpaLayer(Layer):
    """bench/torch_gpt_train.py's layer with attention through scaled_dot_product_attention."""

    def __init__(self, a):
        super().__init__(a)
        self.has_gqa = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")

    def attention(self, q, k, v):
        nh, ng = self.nh, self.ng
        kw = {"is_causal": True, "dropout_p": self.p_attn if self.training else 0.0}
        if ng != nh:
            if self.has_gqa:
                kw["enable_gqa"] = True
            else:
                k, v = k.repeat_interleave(nh // ng, 1), v.repeat_interleave(nh // ng, 1)
        return F.scaled_dot_product_attention(q, k, v, **kw)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--args-from", required=True, help="pretrain_gpt output with its arguments block")
    p.add_argument("--iters", type=int, default=None, help="default: the run's train_iters")
    p.add_argument("--skip", type=int, default=3, help="warm-up iterations left out of the mean")
    p.add_argument("--precision", choices=["autocast", "bf16"], default="autocast")
    p.add_argument("--no-fused", action="store_true", help="the foreach AdamW, not the fused one")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense bf16 peak for MFU (H100 SXM: 989; H100 PCIe: 756; H200: 989)")
    p.add_argument("--seed", type=int, default=1234)
    o = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_gpt_train_cuda.py: no CUDA device")
    a = read_megatron_args(o.args_from)
    if a["optimizer"] != "adam":
        raise SystemExit("torch_gpt_train_cuda.py implements --optimizer adam only")
    dev = torch.device("cuda")
    torch.manual_seed(o.seed)
    torch.backends.cuda.matmul.allow_tf32 = False  # as mcore: fp32 GEMMs stay fp32
    torch.backends.cudnn.allow_tf32 = False

    model = GPT(a, SdpaLayer).to(dev)
    if o.precision == "bf16":
        model = model.to(torch.bfloat16)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]  # biases and norms
    groups = [{"params": decay, "weight_decay": a["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=a["lr"], betas=(a["adam_beta1"], a["adam_beta2"]), eps=a["adam_eps"])
    fused = False
    if not o.no_fused:
        try:
            opt = torch.optim.AdamW(groups, fused=True, **kw)
            fused = True
        except (TypeError, RuntimeError):
            opt = torch.optim.AdamW(groups, **kw)
    else:
        opt = torch.optim.AdamW(groups, **kw)

    mbs, gbs, s = a["micro_batch_size"], a["global_batch_size"], a["seq_length"]
    num_mb = gbs // (mbs * a.get("data_parallel_size", 1))
    iters = o.iters or a["train_iters"]
    vocab = a["vocab_size"] or a["padded_vocab_size"]
    g = torch.Generator().manual_seed(o.seed)
    # Host batches copied per microbatch through pinned memory, as pretrain_gpt does.
    data = torch.randint(0, vocab, (iters, num_mb, mbs, s + 1), generator=g).pin_memory()
    loss_mask = torch.ones(mbs, s, device=dev)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if o.precision == "autocast"
                else torch.autocast("cuda", enabled=False))

    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for it in range(1, iters + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = megatron_lr(a, it - 1, a["train_iters"])
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for m in range(num_mb):
            batch = data[it - 1, m].to(dev, non_blocking=True)
            tokens, labels = batch[:, :-1], batch[:, 1:]
            with autocast:
                loss = model(tokens, labels, loss_mask)
            (loss / num_mb).backward()
            total += loss.item()  # as pretrain_gpt: the loss is read every microbatch
        if a["clip_grad"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a["clip_grad"])
        opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(total / num_mb)
    timed = times[o.skip:] if len(times) > o.skip else times
    sec = sum(timed) / len(timed)
    flops = num_floating_point_operations(a, gbs)
    tflops = flops / sec / 1e12
    print(json.dumps({
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "precision": o.precision,
        "fused_adamw": fused,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_iteration": sec,
        "tokens_per_second": gbs * s / sec,
        "tflops": tflops,
        "mfu": tflops / o.peak_tflops,
        "flops_per_iteration": flops,
        "losses": losses,
        "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(),
    }))


if __name__ == "__main__":
    main()
