#!/usr/bin/env python3
"""PyTorch training loop of exactly the model and setup that tools/pretrain_gpt trains, for the
training-throughput benchmark (scripts/bench_train).

The model and the training settings are read from the "arguments" block that pretrain_gpt
prints (Megatron's _print_args), so both sides train the same thing:

  pretrain_gpt --model gpt2-124m --mock-data ... > mcore.log
  bench/torch_gpt_train.py --args-from mcore.log --iters 8 --skip 2

Model (Megatron-Core's GPTModel, pre-LN): word embeddings (padded vocabulary) plus learned
absolute position embeddings (or RoPE), embedding dropout; per layer LayerNorm/RMSNorm -> fused
QKV (GQA if set) -> causal softmax(QK^T/sqrt(d)) with attention dropout -> V -> projection ->
dropout -> residual; norm -> fc1 -> GeLU (tanh if --openai-gelu) or SwiGLU -> fc2 -> dropout ->
residual; final norm; output layer tied to the word embeddings unless untied; masked-mean
token cross-entropy. Init: normal(0, init_method_std), output projections std/sqrt(2 layers).
Training: global batch = micro batch x microbatches (one rank), loss / microbatches
accumulated, AdamW (Megatron's Adam: decoupled weight decay, none on biases and norms),
global-norm clipping at clip_grad, Megatron's linear LR decay with warmup, fp32. Tokens are
random (as --mock-data: throughput does not depend on their values).

torch.set_num_threads(OMP_NUM_THREADS, default 2). Prints one JSON line: seconds per
iteration (mean over iterations after the first --skip), tokens/s, TFLOP/s by Megatron's
num_floating_point_operations, the per-iteration losses, and peak RSS.
"""
import argparse
import json
import math
import os
import re
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_megatron_args(path):
    """The `name ..... value` lines of pretrain_gpt's arguments block, as Python values."""
    args = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^  (\w+) \.+ (.*)$", line.rstrip("\n"))
        if not m:
            continue
        v = m.group(2).strip()
        if v in ("True", "False"):
            v = v == "True"
        elif v == "None":
            v = None
        else:
            try:
                v = int(v)
            except ValueError:
                try:
                    v = float(v)
                except ValueError:
                    pass
        args[m.group(1)] = v
    if "padded_vocab_size" not in args:
        raise SystemExit(f"{path}: no pretrain_gpt arguments block (padded_vocab_size) found")
    return args


class RMSNorm(nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(h)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(a):
    h, eps = a["hidden_size"], a["layernorm_epsilon"]
    return nn.LayerNorm(h, eps=eps) if a["normalization"] == "LayerNorm" else RMSNorm(h, eps)


def rope_rotate(t, cos, sin):
    d = t.shape[-1]
    return t * cos + torch.cat([-t[..., d // 2:], t[..., : d // 2]], -1) * sin


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        h, nh, d = a["hidden_size"], a["num_attention_heads"], a["kv_channels"]
        ng = a["num_query_groups"] if a["group_query_attention"] else nh
        self.nh, self.ng, self.d = nh, ng, d
        self.swiglu = a["swiglu"]
        self.gelu_approx = "tanh" if a["openai_gelu"] else "none"
        self.p_hidden, self.p_attn = a["hidden_dropout"], a["attention_dropout"]
        bias, qkv_bias = a["add_bias_linear"], a["add_bias_linear"] or a["add_qkv_bias"]
        ffn = a["ffn_hidden_size"]
        self.input_layernorm = make_norm(a)
        # Megatron's fused QKV layout: per query group, its query heads, one key, one value.
        self.linear_qkv = nn.Linear(h, (nh + 2 * ng) * d, bias=qkv_bias)
        self.linear_proj = nn.Linear(nh * d, h, bias=bias)
        self.pre_mlp_layernorm = make_norm(a)
        self.linear_fc1 = nn.Linear(h, 2 * ffn if self.swiglu else ffn, bias=bias)
        self.linear_fc2 = nn.Linear(ffn, h, bias=bias)

    def attention(self, q, k, v):
        """Causal attention over [b, heads, s, d]; the GPU script overrides it with SDPA."""
        nh, ng, d, s = self.nh, self.ng, self.d, q.shape[2]
        if ng != nh:
            k, v = k.repeat_interleave(nh // ng, 1), v.repeat_interleave(nh // ng, 1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        mask = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
        att = F.dropout(att.masked_fill(mask, float("-inf")).softmax(-1), self.p_attn, self.training)
        return att @ v

    def forward(self, x, rope):
        b, s, _ = x.shape
        nh, ng, d = self.nh, self.ng, self.d
        qkv = self.linear_qkv(self.input_layernorm(x)).view(b, s, ng, (nh // ng + 2) * d)
        q, k, v = qkv.split([nh // ng * d, d, d], -1)
        q = q.reshape(b, s, nh, d).transpose(1, 2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        if rope is not None:
            q, k = rope_rotate(q, *rope).to(q.dtype), rope_rotate(k, *rope).to(k.dtype)
        ctx = self.attention(q, k, v).transpose(1, 2).reshape(b, s, nh * d)
        x = x + F.dropout(self.linear_proj(ctx), self.p_hidden, self.training)
        m = self.linear_fc1(self.pre_mlp_layernorm(x))
        if self.swiglu:
            g, u = m.chunk(2, -1)
            m = F.silu(g) * u
        else:
            m = F.gelu(m, approximate=self.gelu_approx)
        return x + F.dropout(self.linear_fc2(m), self.p_hidden, self.training)


class GPT(nn.Module):
    def __init__(self, a, layer_cls=Layer):
        super().__init__()
        self.a = a
        h, vocab = a["hidden_size"], a["padded_vocab_size"]
        self.word_embeddings = nn.Embedding(vocab, h)
        self.rope = a["position_embedding_type"] == "rope"
        self.position_embeddings = (
            None if self.rope else nn.Embedding(a["max_position_embeddings"], h))
        self.layers = nn.ModuleList(layer_cls(a) for _ in range(a["num_layers"]))
        self.final_layernorm = make_norm(a)
        self.output_layer = (nn.Linear(h, vocab, bias=False)
                             if a["untie_embeddings_and_output_weights"] else None)
        std, out_std = a["init_method_std"], a["init_method_std"] / math.sqrt(2 * a["num_layers"])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, out_std if name.endswith(("linear_proj.weight",
                                                                  "linear_fc2.weight")) else std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        self._rope_cache = {}

    def rope_tables(self, s, device):
        key = (s, device)
        if key not in self._rope_cache:
            d = self.a["kv_channels"]
            inv = 1.0 / (self.a["rotary_base"] ** (torch.arange(0, d, 2, device=device).float() / d))
            f = torch.outer(torch.arange(s, device=device).float(), inv)
            emb = torch.cat([f, f], -1)
            self._rope_cache[key] = (emb.cos(), emb.sin())
        return self._rope_cache[key]

    def forward(self, tokens, labels, loss_mask):
        b, s = tokens.shape
        x = self.word_embeddings(tokens)
        rope = None
        if self.rope:
            rope = self.rope_tables(s, tokens.device)
        else:
            x = x + self.position_embeddings(torch.arange(s, device=tokens.device))
        x = F.dropout(x, self.a["hidden_dropout"], self.training)
        for layer in self.layers:
            x = layer(x, rope)
        x = self.final_layernorm(x)
        w = self.word_embeddings.weight if self.output_layer is None else self.output_layer.weight
        logits = x @ w.t()
        per_token = F.cross_entropy(logits.view(b * s, -1).float(), labels.reshape(-1),
                                    reduction="none")
        return (per_token * loss_mask.view(-1)).sum() / loss_mask.sum().clamp(min=1)


def num_floating_point_operations(a, batch_size):
    """Megatron-LM's num_floating_point_operations (as mcore::training computes it)."""
    h, s, layers, heads = a["hidden_size"], a["seq_length"], a["num_layers"], a["num_attention_heads"]
    groups = a["num_query_groups"] if a["group_query_attention"] else heads
    kv = a["kv_channels"] or h / heads
    ffn = a["ffn_hidden_size"] or 4 * h
    gated = 1.5 if a["swiglu"] else 1.0
    qproj_ratio = kv * heads / h
    return 12.0 * batch_size * s * layers * h * h * (
        (1 + groups / heads + s / h) * qproj_ratio + ffn / h * gated
        + a["padded_vocab_size"] / (2 * layers * h))


def megatron_lr(a, it, train_iters):
    """OptimizerParamScheduler's linear/constant decay with linear warmup, per iteration."""
    max_lr, min_lr = a["lr"], a.get("min_lr") or 0.0
    warmup = a.get("lr_warmup_iters") or 0
    decay = a.get("lr_decay_iters") or train_iters
    if warmup > 0 and it <= warmup:
        return max_lr * it / warmup
    if a.get("lr_decay_style", "linear") == "constant":
        return max_lr
    ratio = min(1.0, (it - warmup) / max(1, decay - warmup))
    return min_lr + (max_lr - min_lr) * (1.0 - ratio)


def max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--args-from", required=True, help="pretrain_gpt output with its arguments block")
    p.add_argument("--iters", type=int, default=None, help="default: the run's train_iters")
    p.add_argument("--skip", type=int, default=2, help="warm-up iterations left out of the mean")
    p.add_argument("--seed", type=int, default=1234)
    o = p.parse_args()
    a = read_megatron_args(o.args_from)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(o.seed)
    rss_after_import = max_rss_bytes()

    model = GPT(a)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]  # biases and norms
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=a["lr"], betas=(a["adam_beta1"], a["adam_beta2"]), eps=a["adam_eps"])
    if a["optimizer"] != "adam":
        raise SystemExit("torch_gpt_train.py implements --optimizer adam only")

    mbs, gbs, s = a["micro_batch_size"], a["global_batch_size"], a["seq_length"]
    num_mb = gbs // (mbs * a.get("data_parallel_size", 1))
    iters = o.iters or a["train_iters"]
    vocab = a["vocab_size"] or a["padded_vocab_size"]
    g = torch.Generator().manual_seed(o.seed)
    data = torch.randint(0, vocab, (iters, num_mb, mbs, s + 1), generator=g)
    loss_mask = torch.ones(mbs, s)

    times, losses = [], []
    for it in range(1, iters + 1):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = megatron_lr(a, it - 1, a["train_iters"])
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for m in range(num_mb):
            tokens, labels = data[it - 1, m, :, :-1], data[it - 1, m, :, 1:]
            loss = model(tokens, labels, loss_mask)
            (loss / num_mb).backward()
            total += loss.item()
        if a["clip_grad"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a["clip_grad"])
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(total / num_mb)
    timed = times[o.skip:] if len(times) > o.skip else times
    sec = sum(timed) / len(timed)
    flops = num_floating_point_operations(a, gbs)
    print(json.dumps({
        "threads": threads,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_iteration": sec,
        "tokens_per_second": gbs * s / sec,
        "tflops": flops / sec / 1e12,
        "flops_per_iteration": flops,
        "losses": losses,
        "max_rss_bytes": max_rss_bytes(),
        "rss_after_import_bytes": rss_after_import,
    }))


if __name__ == "__main__":
    main()
