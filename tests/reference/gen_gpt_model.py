"""Tiny GPT models written plainly in PyTorch (not Megatron): separate q/k/v weights per head,
HF-style rotate-half RoPE, repeat-interleaved GQA heads, [gate, up] SwiGLU. The generator draws
fp32 weights, saves them under Megatron's state-dict names - converting q/k/v into Megatron's
per-query-group interleaved linear_qkv layout and gate/up into linear_fc1 = [gate; up] - and
computes logits, the per-token loss and every parameter's gradient (of the mean loss) in
float64 from those fp32 weights. tests/models/gpt_model_reference_test.cpp loads the weights into
mcore's GPTModel with load_state_dict and compares; the q/k/v conversion here is written from
the model's own definition, so a wrong fused layout in mcore cannot pass.

Variants (groups): gpt_ref_gpt2 (LayerNorm, tanh-GeLU, learned positions, tied embeddings,
biases), gpt_ref_llama (GQA 4:2, RoPE, RMSNorm, SwiGLU, untied, no biases), gpt_ref_qwen (GQA
4:2 with q/k/v bias only, RMSNorm eps 1e-6, rope base 1e6), gpt_ref_mistral_qknorm (MQA 4:1,
RoPE base 1e4, QK-norm)."""
import math

import torch

from refutil import save

VARIANTS = {
    "gpt2": dict(layers=2, hidden=64, heads=4, kv_heads=4, ffn=256, vocab=211, max_pos=64,
                 norm="LayerNorm", eps=1e-5, bias=True, qkv_bias=True, glu=False, rope=False,
                 tied=True, rope_base=None),
    "llama": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=160, vocab=256, max_pos=64,
                  norm="RMSNorm", eps=1e-5, bias=False, qkv_bias=False, glu=True, rope=True,
                  tied=False, rope_base=5e5),
    "qwen": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=176, vocab=256, max_pos=64,
                 norm="RMSNorm", eps=1e-6, bias=False, qkv_bias=True, glu=True, rope=True,
                 tied=False, rope_base=1e6),
    # MQA (one kv head for all four query heads) with QK-norm: an RMSNorm over each head's
    # channels, one weight for all query heads and one for the key head, after the projection
    # and before RoPE (Megatron's q_layernorm / k_layernorm with --qk-layernorm).
    "mistral_qknorm": dict(layers=2, hidden=64, heads=4, kv_heads=1, ffn=160, vocab=256,
                           max_pos=64, norm="RMSNorm", eps=1e-5, bias=False, qkv_bias=False,
                           glu=True, rope=True, tied=False, rope_base=1e4, qk_norm=True),
    # Mixture of experts (Mixtral-style): each layer's MLP is 4 SwiGLU experts, every token goes
    # to the 2 with the largest router logits, weighted by the softmax of those two logits; the
    # Switch load-balancing loss (coefficient 0.01) and the ST-MoE router z-loss (coefficient
    # 0.001: the mean over tokens of logsumexp(router logits)^2) are added to the loss the
    # gradients follow.
    "mixtral": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=256, max_pos=64,
                    norm="RMSNorm", eps=1e-5, bias=False, qkv_bias=False, glu=True, rope=True,
                    tied=False, rope_base=1e6, experts=4, topk=2, aux_coeff=0.01,
                    z_coeff=0.001),
    # The same with a shared expert (Qwen2-MoE / DeepSeek style, Megatron's
    # --moe-shared-expert-intermediate-size): a SwiGLU MLP of 80 every token goes through, added
    # to the routed experts' output.
    "moe_shared": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=256, max_pos=64,
                       norm="RMSNorm", eps=1e-5, bias=False, qkv_bias=False, glu=True, rope=True,
                       tied=False, rope_base=1e6, experts=4, topk=2, aux_coeff=0.01,
                       z_coeff=0.001, shared=80),
}
BATCH, SEQ = 3, 13


def make_params(cfg, gen):
    h, nh, nkv, f = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["ffn"]
    hd = h // nh

    def randn(*shape, std=0.08):
        return (torch.randn(*shape, generator=gen) * std).float()

    p = {"wte": randn(cfg["vocab"], h, std=0.5)}
    if not cfg["rope"]:
        p["wpe"] = randn(cfg["max_pos"], h, std=0.2)
    for i in range(cfg["layers"]):
        L = f"l{i}."
        for n in ("ln1", "ln2"):
            p[L + n + ".w"] = 1.0 + randn(h, std=0.1)
            if cfg["norm"] == "LayerNorm":
                p[L + n + ".b"] = randn(h, std=0.1)
        p[L + "wq"], p[L + "wk"], p[L + "wv"] = randn(nh * hd, h), randn(nkv * hd, h), randn(nkv * hd, h)
        if cfg.get("qk_norm"):
            p[L + "qn.w"], p[L + "kn.w"] = 1.0 + randn(hd, std=0.1), 1.0 + randn(hd, std=0.1)
        if cfg["qkv_bias"]:
            p[L + "bq"], p[L + "bk"], p[L + "bv"] = randn(nh * hd), randn(nkv * hd), randn(nkv * hd)
        p[L + "wo"] = randn(h, nh * hd)
        if cfg.get("experts"):
            p[L + "router"] = randn(cfg["experts"], h, std=0.3)
            for e in range(cfg["experts"]):
                E = f"{L}e{e}."
                p[E + "wgate"], p[E + "wup"], p[E + "w2"] = randn(f, h), randn(f, h), randn(h, f)
            if cfg.get("shared"):
                fs = cfg["shared"]
                p[L + "sgate"], p[L + "sup"], p[L + "s2"] = randn(fs, h), randn(fs, h), randn(h, fs)
        elif cfg["glu"]:
            p[L + "wgate"], p[L + "wup"] = randn(f, h), randn(f, h)
            p[L + "w2"] = randn(h, f)
        else:
            p[L + "w1"] = randn(f, h)
            p[L + "w2"] = randn(h, f)
        if cfg["bias"]:
            p[L + "bo"], p[L + "b1"], p[L + "b2"] = randn(h), randn(f), randn(h)
    p["lnf.w"] = 1.0 + randn(h, std=0.1)
    if cfg["norm"] == "LayerNorm":
        p["lnf.b"] = randn(h, std=0.1)
    if not cfg["tied"]:
        p["lm_head"] = randn(cfg["vocab"], h, std=0.2)
    return p


def norm(cfg, x, w, b):
    if cfg["norm"] == "LayerNorm":
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, cfg["eps"])
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["eps"]) * w


def rope(cfg, t):  # t [b, s, n, hd], rotate-half (GPT-NeoX / LLaMA)
    hd, s = t.shape[-1], t.shape[1]
    inv_freq = 1.0 / (cfg["rope_base"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(s, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], -1).double()[None, :, None, :]
    x1, x2 = t[..., : hd // 2], t[..., hd // 2:]
    return t * emb.cos() + torch.cat([-x2, x1], -1) * emb.sin()


def moe_mlp(cfg, p, L, m):
    """Top-k routed SwiGLU experts on m [b, s, h]; returns (output, Switch aux loss + z-loss)."""
    b, s, h = m.shape
    x = m.reshape(b * s, h)
    n_exp, k = cfg["experts"], cfg["topk"]
    logits = x @ p[L + "router"].T                      # [T, E]
    top_logits, top_idx = logits.topk(k, dim=-1)
    probs = top_logits.softmax(-1)                     # softmax among the chosen k
    out = torch.zeros_like(x)
    for e in range(n_exp):
        E = f"{L}e{e}."
        weight = (probs * (top_idx == e)).sum(-1, keepdim=True)  # 0 where e was not chosen
        y = (torch.nn.functional.silu(x @ p[E + "wgate"].T) * (x @ p[E + "wup"].T)) @ p[E + "w2"].T
        out = out + weight * y
    tokens = x.shape[0]
    per_expert = torch.bincount(top_idx.flatten(), minlength=n_exp).to(x.dtype)
    aux = (logits.softmax(-1).sum(0) * per_expert).sum() * (
        n_exp * cfg["aux_coeff"] / (k * tokens * tokens))
    aux = aux + cfg.get("z_coeff", 0.0) * torch.logsumexp(logits, -1).square().mean()
    return out.view(b, s, h), aux


def forward(cfg, p, ids):
    b, s = ids.shape
    h, nh, nkv = cfg["hidden"], cfg["heads"], cfg["kv_heads"]
    hd = h // nh
    x = p["wte"][ids]
    if not cfg["rope"]:
        x = x + p["wpe"][:s][None]
    causal = torch.ones(s, s, dtype=torch.bool).triu(1)
    for i in range(cfg["layers"]):
        L = f"l{i}."
        a = norm(cfg, x, p[L + "ln1.w"], p.get(L + "ln1.b"))
        q = a @ p[L + "wq"].T
        k = a @ p[L + "wk"].T
        v = a @ p[L + "wv"].T
        if cfg["qkv_bias"]:
            q, k, v = q + p[L + "bq"], k + p[L + "bk"], v + p[L + "bv"]
        q, k, v = q.view(b, s, nh, hd), k.view(b, s, nkv, hd), v.view(b, s, nkv, hd)
        if cfg.get("qk_norm"):
            q, k = norm(cfg, q, p[L + "qn.w"], None), norm(cfg, k, p[L + "kn.w"], None)
        if cfg["rope"]:
            q, k = rope(cfg, q), rope(cfg, k)
        k = k.repeat_interleave(nh // nkv, dim=2)  # query head j reads kv head j // (nh/nkv)
        v = v.repeat_interleave(nh // nkv, dim=2)
        scores = torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(hd)
        scores = scores.masked_fill(causal, float("-inf"))
        ctx = torch.einsum("bnqk,bknd->bqnd", scores.softmax(-1), v).reshape(b, s, nh * hd)
        o = ctx @ p[L + "wo"].T
        if cfg["bias"]:
            o = o + p[L + "bo"]
        x = x + o
        m = norm(cfg, x, p[L + "ln2.w"], p.get(L + "ln2.b"))
        if cfg.get("experts"):
            d, aux = moe_mlp(cfg, p, L, m)
            if cfg.get("shared"):
                d = d + (torch.nn.functional.silu(m @ p[L + "sgate"].T) * (m @ p[L + "sup"].T)) @ p[
                    L + "s2"].T
            forward.aux_loss = forward.aux_loss + aux
            x = x + d
            continue
        if cfg["glu"]:
            u = torch.nn.functional.silu(m @ p[L + "wgate"].T) * (m @ p[L + "wup"].T)
        else:
            u = m @ p[L + "w1"].T
            if cfg["bias"]:
                u = u + p[L + "b1"]
            u = torch.nn.functional.gelu(u, approximate="tanh")
        d = u @ p[L + "w2"].T
        if cfg["bias"]:
            d = d + p[L + "b2"]
        x = x + d
    x = norm(cfg, x, p["lnf.w"], p.get("lnf.b"))
    return x @ (p["wte"] if cfg["tied"] else p["lm_head"]).T


forward.aux_loss = 0.0  # the MoE layers' load-balancing losses of the last forward


def to_megatron(cfg, p):
    """Megatron state-dict names and fused layouts from the plain parameters (tensors or grads)."""
    h, nh, nkv = cfg["hidden"], cfg["heads"], cfg["kv_heads"]
    hd, per = h // nh, nh // nkv
    out = {"embedding.word_embeddings.weight": p["wte"]}
    if "wpe" in p:
        out["embedding.position_embeddings.weight"] = p["wpe"]

    def interleave(q, k, v):  # rows (or entries) group by group: [q heads of g | k_g | v_g]
        parts = []
        for g in range(nkv):
            parts += [q[g * per * hd:(g + 1) * per * hd], k[g * hd:(g + 1) * hd], v[g * hd:(g + 1) * hd]]
        return torch.cat(parts, 0)

    for i in range(cfg["layers"]):
        L, M = f"l{i}.", f"decoder.layers.{i}."
        out[M + "input_layernorm.weight"] = p[L + "ln1.w"]
        out[M + "pre_mlp_layernorm.weight"] = p[L + "ln2.w"]
        if cfg["norm"] == "LayerNorm":
            out[M + "input_layernorm.bias"] = p[L + "ln1.b"]
            out[M + "pre_mlp_layernorm.bias"] = p[L + "ln2.b"]
        A = M + "self_attention."
        out[A + "linear_qkv.weight"] = interleave(p[L + "wq"], p[L + "wk"], p[L + "wv"])
        if cfg["qkv_bias"]:
            out[A + "linear_qkv.bias"] = interleave(p[L + "bq"], p[L + "bk"], p[L + "bv"])
        out[A + "linear_proj.weight"] = p[L + "wo"]
        if L + "qn.w" in p:
            out[A + "q_layernorm.weight"] = p[L + "qn.w"]
            out[A + "k_layernorm.weight"] = p[L + "kn.w"]
        if cfg.get("experts"):
            out[M + "mlp.router.weight"] = p[L + "router"]
            for e in range(cfg["experts"]):
                E, X = f"{L}e{e}.", f"{M}mlp.experts.local_experts.{e}."
                out[X + "linear_fc1.weight"] = torch.cat([p[E + "wgate"], p[E + "wup"]], 0)
                out[X + "linear_fc2.weight"] = p[E + "w2"]
            if cfg.get("shared"):
                S = M + "mlp.shared_experts."
                out[S + "linear_fc1.weight"] = torch.cat([p[L + "sgate"], p[L + "sup"]], 0)
                out[S + "linear_fc2.weight"] = p[L + "s2"]
        elif cfg["glu"]:
            out[M + "mlp.linear_fc1.weight"] = torch.cat([p[L + "wgate"], p[L + "wup"]], 0)
            out[M + "mlp.linear_fc2.weight"] = p[L + "w2"]
        else:
            out[M + "mlp.linear_fc1.weight"] = p[L + "w1"]
            out[M + "mlp.linear_fc2.weight"] = p[L + "w2"]
        if cfg["bias"]:
            out[A + "linear_proj.bias"] = p[L + "bo"]
            out[M + "mlp.linear_fc1.bias"] = p[L + "b1"]
            out[M + "mlp.linear_fc2.bias"] = p[L + "b2"]
    out["decoder.final_layernorm.weight"] = p["lnf.w"]
    if "lnf.b" in p:
        out["decoder.final_layernorm.bias"] = p["lnf.b"]
    if "lm_head" in p:
        out["output_layer.weight"] = p["lm_head"]
    return out


def generate(out):
    for vi, (name, cfg) in enumerate(VARIANTS.items()):
        group = "gpt_ref_" + name
        gen = torch.Generator().manual_seed(1000 + vi)
        p32 = make_params(cfg, gen)
        ids = torch.randint(0, cfg["vocab"], (BATCH, SEQ), generator=gen)
        labels = torch.randint(0, cfg["vocab"], (BATCH, SEQ), generator=gen)
        p = {k: v.double().requires_grad_(True) for k, v in p32.items()}
        forward.aux_loss = 0.0
        logits = forward(cfg, p, ids)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, cfg["vocab"]), labels.reshape(-1), reduction="none").view(BATCH, SEQ)
        (loss.mean() + forward.aux_loss).backward()
        for k, v in to_megatron(cfg, p32).items():
            save(out, group, "w." + k, v.numpy())
        for k, v in to_megatron(cfg, {k: t.grad for k, t in p.items()}).items():
            save(out, group, "g." + k, v.numpy())
        save(out, group, "input_ids", ids.numpy())
        save(out, group, "labels", labels.numpy())
        save(out, group, "logits", logits.detach().numpy())
        save(out, group, "loss", loss.detach().numpy())
