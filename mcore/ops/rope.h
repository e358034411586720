// Rotary position embedding (RoPE) in Megatron's sbhd form (`_apply_rotary_pos_emb_bshd`):
// t [S, B, H, D] is rotated by angles freqs [S, 1, 1, rot_dim] (or [S, B, 1, rot_dim] for
// per-sample positions). Only the first rot_dim channels rotate (rotary_percent < 1); the tail
// passes through unchanged. Two channel pairings, as Megatron's `rotary_interleaved`:
//   rotate-half (default): channel i pairs with i + rot_dim/2 (GPT-NeoX / LLaMA),
//   interleaved:           channel 2i pairs with 2i + 1 (GPT-J).
// out = t * cos(freqs) * mscale + rotate_half(t) * sin(freqs) * mscale. freqs are angles (not
// cos/sin); they may differ per channel (the kernel reads every channel's own angle), and are
// treated as constants (no gradient). bf16/fp16 inputs compute in float32 and round once, where
// Megatron rounds cos/sin and each product to the input dtype: results agree to bf16 precision.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// Megatron's RotaryEmbedding(kv_channels, rotary_percent, rotary_interleaved,
// seq_len_interpolation_factor, rotary_base).forward(max_seq_len, offset), in float32:
//   dim = int(kv_channels * rotary_percent), inv_freq = 1 / base^(arange(0, dim, 2) / dim),
//   freqs = outer(arange(max_seq_len) + offset [/ interpolation factor], inv_freq),
//   emb = cat(freqs, freqs) (rotate-half) or each frequency repeated twice (interleaved),
// returned as [max_seq_len, 1, 1, dim].
struct RotaryEmbeddingOptions {
  double rotary_percent = 1.0;
  double rotary_base = 10000.0;
  bool rotary_interleaved = false;
  double seq_len_interpolation_factor = 0.0;  // 0: none
  int64_t offset = 0;
};
Tensor rotary_embedding_freqs(int64_t kv_channels, int64_t max_seq_len,
                              const RotaryEmbeddingOptions& options = {});

// Forward: the rotated copy of t (t's dtype, contiguous).
Tensor apply_rotary_pos_emb(const Tensor& t, const Tensor& freqs, bool rotary_interleaved = false,
                            double mscale = 1.0);
// Backward: the rotation is orthogonal per pair, so the input gradient is the output gradient
// rotated by the transposed (inverse, when mscale == 1) rotation.
Tensor apply_rotary_pos_emb_backward(const Tensor& grad_out, const Tensor& freqs,
                                     bool rotary_interleaved = false, double mscale = 1.0);

}  // namespace mcore::ops
