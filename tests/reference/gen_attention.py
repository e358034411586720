"""Reference data for tests/attention (group "attention"): fused attention, RoPE, cross-entropy
and embedding, forward and backward (autograd with a random output gradient).

Inputs are float32 (bf16 cases: bf16 values widened to float32, exact, so the C++ side converts
them back losslessly). Attention references are computed in float64 from those inputs with the
explicit formula softmax(q k^T * scale + mask) v, so the C++ tolerance measures only our kernel's
float32 error. RoPE follows Megatron's RotaryEmbedding + _apply_rotary_pos_emb_bshd verbatim (in
float32, and in bf16 for the bf16 case, which is what Megatron computes). Cross-entropy and
embedding use torch.nn.functional.cross_entropy(reduction='none') and F.embedding.
"""
import math
import pathlib

import torch
import torch.nn.functional as F

from refutil import rng, save

G = "attention"


def rand(shape, seed, scale=1.0):
    return torch.from_numpy(rng(seed).standard_normal(shape) * scale).float()


# ---------------------------------------------------------------------------------------------
# Attention


def naive_attention(q, k, v, scale, causal, mask):
    """q [Sq, B, Hq, D], k/v [Sk, B, Hkv, D(v)], mask bool broadcastable to [B, Hq, Sq, Sk]
    (True = masked). Fully masked rows give 0 (flash-attn convention)."""
    sq, b, hq, d = q.shape
    sk, hkv = k.shape[0], k.shape[2]
    group = hq // hkv
    k = k.repeat_interleave(group, dim=2)  # query head h reads kv head h // group
    v = v.repeat_interleave(group, dim=2)
    s = torch.einsum("ibhd,jbhd->bhij", q, k) * scale
    masked = torch.zeros(b, hq, sq, sk, dtype=torch.bool)
    if causal:
        i = torch.arange(sq)[:, None]
        j = torch.arange(sk)[None, :]
        masked = masked | (j > i + (sk - sq))
    if mask is not None:
        masked = masked | mask
    s = s.masked_fill(masked, float("-inf"))
    p = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
    return torch.einsum("bhij,jbhd->ibhd", p, v)


def attention_case(out, name, sq, sk, b, hq, hkv, d, dv, causal, mask_kind, seed, bf16=False,
                   scale=None):
    q = rand((sq, b, hq, d), seed)
    k = rand((sk, b, hkv, d), seed + 1)
    v = rand((sk, b, hkv, dv), seed + 2)
    dout = rand((sq, b, hq, dv), seed + 3)
    if bf16:
        q, k, v, dout = (t.to(torch.bfloat16).float() for t in (q, k, v, dout))
    mask = None
    r = rng(seed + 4)
    if mask_kind == "padding":  # [B, Sk]: trailing keys of each sample are padding
        lengths = [sk - 3 - 5 * i for i in range(b)]
        m = torch.zeros(b, sk, dtype=torch.bool)
        for i, n in enumerate(lengths):
            m[i, n:] = True
        save(out, G, f"{name}_mask", m.numpy())
        mask = m[:, None, None, :]
    elif mask_kind == "dense":  # [B, 1, Sq, Sk] random
        m = torch.from_numpy(r.random((b, 1, sq, sk)) < 0.3)
        save(out, G, f"{name}_mask", m.numpy())
        mask = m
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    o = naive_attention(q64, k64, v64, scale, causal, mask)
    o.backward(dout.double())
    for key, t in (("q", q), ("k", k), ("v", v), ("dout", dout)):
        save(out, G, f"{name}_{key}", t)
    save(out, G, f"{name}_out", o.detach())
    save(out, G, f"{name}_dq", q64.grad)
    save(out, G, f"{name}_dk", k64.grad)
    save(out, G, f"{name}_dv", v64.grad)


# ---------------------------------------------------------------------------------------------
# RoPE: Megatron's code, transcribed.


def megatron_freqs(kv_channels, rotary_percent, rotary_interleaved, interp, base, max_seq_len,
                   offset):
    dim = kv_channels
    if rotary_percent < 1.0:
        dim = int(dim * rotary_percent)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    seq = torch.arange(max_seq_len, dtype=inv_freq.dtype) + offset
    if interp is not None:
        seq *= 1 / interp
    freqs = torch.outer(seq, inv_freq)
    if not rotary_interleaved:
        emb = torch.cat((freqs, freqs), dim=-1)
    else:
        emb = torch.stack((freqs.view(-1, 1), freqs.view(-1, 1)), dim=-1).view(freqs.shape[0], -1)
    return emb[:, None, None, :]


def _rotate_half(x, rotary_interleaved):
    if not rotary_interleaved:
        x1, x2 = torch.chunk(x, 2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    x1 = x[:, :, :, ::2]
    x2 = x[:, :, :, 1::2]
    x_new = torch.stack((-x2, x1), dim=-1)
    return x_new.view(x_new.shape[0], x_new.shape[1], x_new.shape[2], -1)


def apply_rotary_pos_emb_bshd(t, freqs, rotary_interleaved=False, mscale=1.0):
    rot_dim = freqs.shape[-1]
    t, t_pass = t[..., :rot_dim], t[..., rot_dim:]
    cos_ = (torch.cos(freqs) * mscale).to(t.dtype)
    sin_ = (torch.sin(freqs) * mscale).to(t.dtype)
    t = (t * cos_) + (_rotate_half(t, rotary_interleaved) * sin_)
    return torch.cat((t, t_pass), dim=-1)


def rope_case(out, name, s, b, h, d, rotary_percent, interleaved, interp, base, offset, seed,
              bf16=False):
    freqs = megatron_freqs(d, rotary_percent, interleaved, interp, base, s, offset)
    dt = torch.bfloat16 if bf16 else torch.float32
    t = rand((s, b, h, d), seed, 2.0).to(dt).requires_grad_()
    dy = rand((s, b, h, d), seed + 1).to(dt)
    y = apply_rotary_pos_emb_bshd(t, freqs, interleaved)
    y.backward(dy)
    save(out, G, f"{name}_freqs", freqs)
    save(out, G, f"{name}_t", t.detach().float())
    save(out, G, f"{name}_dy", dy.float())
    save(out, G, f"{name}_y", y.detach().float())
    save(out, G, f"{name}_dt", t.grad.float())


# ---------------------------------------------------------------------------------------------
# Cross-entropy and embedding


def cross_entropy_case(out, name, shape, v, seed, with_mask, ignore=0, bf16=False):
    logits = rand(shape + (v,), seed, 3.0)
    if bf16:
        logits = logits.to(torch.bfloat16).float()
    target = torch.from_numpy(rng(seed + 1).integers(0, v, size=shape)).long()
    if ignore:
        target.view(-1)[:ignore] = -100
    mask = torch.from_numpy((rng(seed + 2).random(shape) < 0.7).astype("float32"))
    x = logits.double().requires_grad_()
    loss = F.cross_entropy(x.view(-1, v), target.view(-1), reduction="none").view(shape)
    if with_mask:
        loss = loss * mask.double()
    g = rand(shape, seed + 3)
    loss.backward(g.double())
    save(out, G, f"{name}_logits", logits)
    save(out, G, f"{name}_target", target.numpy())
    save(out, G, f"{name}_mask", mask)
    save(out, G, f"{name}_grad", g)
    save(out, G, f"{name}_loss", loss.detach())
    save(out, G, f"{name}_dlogits", x.grad)


def embedding_case(out, name, v, hdim, ids_shape, seed):
    w = rand((v, hdim), seed).requires_grad_()
    ids = torch.from_numpy(rng(seed + 1).integers(0, v, size=ids_shape)).long()
    ids.view(-1)[:3] = 2  # repeated ids exercise the scatter-add
    y = F.embedding(ids, w)
    dy = rand(tuple(y.shape), seed + 2)
    y.backward(dy)
    save(out, G, f"{name}_w", w.detach())
    save(out, G, f"{name}_ids", ids.numpy())
    save(out, G, f"{name}_dy", dy)
    save(out, G, f"{name}_y", y.detach())
    save(out, G, f"{name}_dw", w.grad)


def generate(out: pathlib.Path):
    torch.manual_seed(0)
    # GQA, causal, square; 37 queries: one partial query block.
    attention_case(out, "attn_gqa_causal", 37, 37, 2, 4, 2, 16, 16, True, None, 100)
    # MQA, non-causal, key padding [B, Sk]; 150 keys cross the 128-key block boundary; Dv != D.
    attention_case(out, "attn_mqa_padding", 20, 150, 2, 2, 1, 8, 6, False, "padding", 200)
    # Causal bottom-right (Sq < Sk) with a dense [B, 1, Sq, Sk] mask; 70 queries cross the
    # 64-query block boundary; explicit softmax_scale.
    attention_case(out, "attn_causal_dense", 70, 135, 1, 3, 3, 5, 5, True, "dense", 300,
                   scale=0.3)
    # bf16 inputs (reference in float64 from the bf16 values).
    attention_case(out, "attn_bf16", 33, 33, 1, 2, 1, 16, 16, True, None, 400, bf16=True)

    rope_case(out, "rope_half_partial", 7, 2, 3, 16, 0.5, False, None, 10000.0, 0, 500)
    rope_case(out, "rope_interleaved", 9, 2, 2, 10, 1.0, True, 2.0, 500.0, 3, 510)
    rope_case(out, "rope_bf16", 5, 2, 3, 12, 1.0, False, None, 10000.0, 0, 520, bf16=True)

    cross_entropy_case(out, "ce_sbv", (5, 3), 37, 600, with_mask=True)
    cross_entropy_case(out, "ce_ignore", (11,), 29, 610, with_mask=False, ignore=2)
    cross_entropy_case(out, "ce_bf16", (4, 3), 33, 620, with_mask=True, bf16=True)

    embedding_case(out, "emb", 11, 6, (3, 4), 700)
