"""Reference rotary angles from megatron-core's own RotaryEmbedding (Llama 3.x rope_scaling)
and YarnRotaryEmbedding (PyPI megatron-core, run on the CPU; see megatron_core_import.py), for
mcore's models::RotaryEmbedding (tests/models/rope_scaling_test.cpp).

Each case saves the inverse frequencies, the angle table get_emb(S, offset) [S, 1, 1, dim] at a
large offset (positions past the original context, where the scaling matters), and for YaRN the
concentration factor ("mscale") that multiplies cos and sin. The cases cover every branch: with
kv_channels 128 and base 500000 the Llama 3 wavelengths fall below, inside and above the
[old_len / high, old_len / low] band; the YaRN cases ramp over a correction range with and
without rounding to integers, and with mscale_all_dim 0 and 1.
"""
import numpy as np
import torch

from megatron_core_import import cuda_device_is_cpu, import_megatron_rope
from refutil import save

G = "rope_scaling"

# name, kv_channels, base, factor (Llama 3.1: 8, Llama 3.2: 32), positions, offset
LLAMA3 = [("llama31", 128, 500000.0, 8.0, 16, 8180),
          ("llama32", 64, 500000.0, 32.0, 12, 40000)]

# name, kv_channels, base, factor, original max positions, beta_fast, beta_slow, mscale,
# mscale_all_dim, round to int, positions, offset
YARN = [("yarn_ds", 64, 10000.0, 40.0, 4096, 32.0, 1.0, 1.0, 1.0, True, 12, 100000),
        ("yarn_qwen", 128, 1000000.0, 4.0, 32768, 32.0, 1.0, 1.0, 0.0, True, 10, 65000),
        ("yarn_unrounded", 32, 10000.0, 16.0, 2048, 24.0, 2.0, 0.707, 0.5, False, 9, 20000)]


def yarn_without_init(cls, kv, base, factor, orig, fast, slow, mscale, mscale_all_dim, round_int):
    """A YarnRotaryEmbedding with the attributes its __init__ sets, set here: that __init__ opens
    a `with torch.device(...)` block, which needs torch >= 2.0. Its two frequency tables are the
    plain and the factor-divided RoPE frequencies; everything the test is about (the correction
    range, the ramp between the tables, the concentration factor) runs in megatron-core's
    unmodified get_emb and module functions."""
    r = cls.__new__(cls)
    torch.nn.Module.__init__(r)
    r.dim, r.rotary_base, r.scaling_factor = kv, base, factor
    r.original_max_position_embeddings, r.beta_fast, r.beta_slow = orig, fast, slow
    r.mscale, r.mscale_all_dim, r.correction_range_round_to_int = mscale, mscale_all_dim, round_int
    r.rotary_interleaved = False
    exponents = torch.arange(0, kv, 2, dtype=torch.float32) / kv
    r.inv_freq_extra = 1.0 / (base ** exponents)
    r.inv_freq_inter = 1.0 / (factor * base ** exponents)
    return r


def generate(out):
    rope = import_megatron_rope()
    with cuda_device_is_cpu():
        for name, kv, base, factor, s, offset in LLAMA3:
            r = rope.RotaryEmbedding(kv_channels=kv, rotary_percent=1.0, rotary_base=base,
                                     rope_scaling=True, rope_scaling_factor=factor,
                                     use_cpu_initialization=True)
            save(out, G, f"{name}_inv_freq", r.inv_freq)
            save(out, G, f"{name}_emb", r.get_emb(s, offset))
        for (name, kv, base, factor, orig, fast, slow, mscale, mscale_all_dim, round_int, s,
             offset) in YARN:
            r = yarn_without_init(rope.YarnRotaryEmbedding, kv, base, factor, orig, fast, slow,
                                  mscale, mscale_all_dim, round_int)
            emb, concentration = r.get_emb(s, offset)
            save(out, G, f"{name}_emb", emb)
            save(out, G, f"{name}_mscale", np.array([concentration], dtype=np.float64))
