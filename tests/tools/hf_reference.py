"""Hugging Face side of tests/tools/convert_checkpoint_test.cpp and convert_mixtral_test.cpp,
run with the transformers venv (.venv-hf, MCORE_HF_PYTHON; scripts/setup makes it).

  hf_reference.py make OUT [NAME ...]
      Tiny random models of every supported architecture (or the named ones), saved with
      save_pretrained(OUT/<name>/hf, safe_serialization=True), with a fixed token sequence
      (OUT/<name>/input_ids.npy, int64 [2, 12]) and transformers' logits for it computed in
      float64 from the fp32 weights (OUT/<name>/logits.npy, [2, 12, vocab]).
  hf_reference.py check JOBS.json
      For each job {"dir", "input_ids", "logits_out", "original" (optional), "architecture"}:
      from_pretrained(dir) with no missing/unexpected/mismatched keys and the expected class,
      logits (float64) written to logits_out; with "original", every tensor of dir's
      safetensors equals the original model's bit for bit and no tensor is missing; with
      "tokenize": {"text", "ids_out"}, AutoTokenizer.from_pretrained(dir)'s ids for the text
      (no special tokens added) written to ids_out as a JSON list; with "router_margin_out", for a
      model with experts, the smallest gap between a token's k-th and (k+1)-th router logit
      over all layers (float64) written there as JSON. Exit 1 with the reasons on any failure.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM, MixtralConfig,
                          MixtralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

# Vocabularies that are not multiples of 128, so mcore pads the embedding and the converter
# must add and drop rows. Shapes: hidden 64, 2 layers; GQA and MQA; tied and untied. Special
# token ids other than the defaults (a list of eos ids, as Llama-3.1's), which must come back.
VARIANTS = {
    "gpt2": (GPT2LMHeadModel, GPT2Config(
        vocab_size=250, n_positions=32, n_embd=64, n_layer=2, n_head=4,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0)),
    "llama": (LlamaForCausalLM, LlamaConfig(
        vocab_size=250, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
        bos_token_id=247, eos_token_id=248, pad_token_id=249)),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config(
        vocab_size=300, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        eos_token_id=[298, 299])),
    "mistral": (MistralForCausalLM, MistralConfig(
        vocab_size=200, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None,
        tie_word_embeddings=False)),
    # 3 layers of 4 experts, top-2; the aux-loss coefficient only matters for training but must
    # come back from the export.
    "mixtral": (MixtralForCausalLM, MixtralConfig(
        vocab_size=230, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=1000000.0, sliding_window=None, num_local_experts=4,
        num_experts_per_tok=2, router_aux_loss_coef=0.02, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2)),
}
# Router weights' scale. mcore routes in float32 and the reference in float64: a token whose
# k-th and (k+1)-th router logits nearly tie may go to different experts in the two, an O(1)
# difference that is no conversion error. Router logits of std ~1.5 (0.1 would give ~0.15) make
# clear choices, and make() checks the smallest gap (MIN_ROUTER_MARGIN).
ROUTER_STD = 0.2
MIN_ROUTER_MARGIN = 1e-3
# Saved in several shards with model.safetensors.index.json.
SHARDED = {"mistral"}


def forward64(model, ids):
    """Logits in float64 from the model's (fp32) weights. The default dtype follows, as some
    4.40 models build their causal mask in it."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            return model.double()(ids).logits
    finally:
        torch.set_default_dtype(prev)


def router_margin(model, ids):
    """The smallest gap between a token's k-th and (k+1)-th router logit over every MoE layer
    (float64 forward), or None for a model without experts."""
    gates = [m for n, m in model.named_modules() if n.endswith("block_sparse_moe.gate")]
    if not gates:
        return None
    k = model.config.num_experts_per_tok
    gaps = []

    def hook(_module, _inputs, logits):
        top = torch.topk(logits.double(), k + 1, dim=-1).values
        gaps.append((top[:, k - 1] - top[:, k]).min().item())

    handles = [g.register_forward_hook(hook) for g in gates]
    try:
        forward64(model, ids)
    finally:
        for h in handles:
            h.remove()
    return min(gaps)


def make(out, names):
    for i, (name, (cls, cfg)) in enumerate(VARIANTS.items()):
        if names and name not in names:
            continue
        torch.manual_seed(100 + i)
        model = cls(cfg).float().eval()
        # HF's init leaves norms at 1 and biases at 0, where a misplaced norm or bias would go
        # unnoticed: every parameter gets distinct random values.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname or "ln_" in pname:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif "embed" in pname or "wte" in pname or "wpe" in pname:
                    p.copy_(0.5 * torch.randn_like(p))
                elif "block_sparse_moe.gate" in pname:
                    p.copy_(ROUTER_STD * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        shard = {"max_shard_size": "60KB"} if name in SHARDED else {}
        model.save_pretrained(os.path.join(d, "hf"), safe_serialization=True, **shard)
        ids = torch.randint(0, cfg.vocab_size, (2, 12))
        ids[0, -1] = cfg.vocab_size - 1  # the last real row, next to the padding
        logits = forward64(model, ids)
        margin = router_margin(model, ids)
        if margin is not None and margin < MIN_ROUTER_MARGIN:
            sys.exit(f"{name}: router logits nearly tie (gap {margin:.3g}); change ROUTER_STD "
                     "or the seed")
        np.save(os.path.join(d, "input_ids.npy"), ids.numpy().astype(np.int64))
        np.save(os.path.join(d, "logits.npy"), logits.numpy())
    print("made", ", ".join(names or VARIANTS), "with transformers", transformers.__version__)


def safetensors_of(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index)
             else ["model.safetensors"])
    out = {}
    for f in files:
        out.update(load_file(os.path.join(d, f)))
    return out


def check(jobs_file):
    failures = []
    for job in json.load(open(jobs_file)):
        d = job["dir"]
        model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
        for k in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            if info[k]:
                failures.append(f"{d}: from_pretrained reports {k} {info[k]}")
        if type(model).__name__ != job["architecture"]:
            failures.append(f"{d}: loaded as {type(model).__name__}, "
                            f"expected {job['architecture']}")
        ids = torch.from_numpy(np.load(job["input_ids"]))
        logits = forward64(model.eval(), ids)
        np.save(job["logits_out"], logits.numpy())
        if job.get("tokenize"):
            tok = AutoTokenizer.from_pretrained(d)
            ids = tok(job["tokenize"]["text"], add_special_tokens=False)["input_ids"]
            json.dump(ids, open(job["tokenize"]["ids_out"], "w"))
        if job.get("router_margin_out"):
            json.dump(router_margin(model, torch.from_numpy(np.load(job["input_ids"]))),
                      open(job["router_margin_out"], "w"))
        if job.get("original"):
            exported, original = safetensors_of(d), safetensors_of(job["original"])
            if set(exported) != set(original):
                failures.append(f"{d}: tensor names differ from {job['original']}: only exported "
                                f"{sorted(set(exported) - set(original))}, only original "
                                f"{sorted(set(original) - set(exported))}")
            for k in sorted(set(exported) & set(original)):
                a, b = exported[k], original[k]
                if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                    failures.append(f"{d}: tensor {k} differs from the original "
                                    f"({a.dtype} {list(a.shape)} vs {b.dtype} {list(b.shape)})")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("checked", len(json.load(open(jobs_file))), "exported models")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        unknown = set(sys.argv[3:]) - set(VARIANTS)
        if unknown:
            sys.exit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
        make(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
