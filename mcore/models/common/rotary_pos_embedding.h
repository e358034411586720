// Rotary position embedding angles (Megatron's RotaryEmbedding / YarnRotaryEmbedding in
// models/common/embeddings): inv_freq = 1 / base^(arange(0, dim, 2) / dim) over the rotary
// dimension dim = int(kv_channels * rotary_percent), optionally rescaled
//   - Llama-3.x style (rope_scaling): low frequencies divided by the factor, high ones kept,
//     a smooth ramp between (HF's _compute_llama3_parameters, Megatron's _apply_scaling);
//   - YaRN (position_embedding_type "yarn"): a ramp between interpolated and extrapolated
//     frequencies over the correction range, plus the attention scale ("mscale") that
//     multiplies cos and sin;
// then the angles outer(positions, inv_freq) laid out for F::apply_rotary_pos_emb as
// [S, 1, 1, dim] (rotate-half: cat(freqs, freqs); interleaved: each frequency twice).
// Computed in float32 as Megatron does; a constant (no parameters, no gradient).
#pragma once

#include <map>
#include <tuple>

#include "mcore/tensor/tensor.h"
#include "mcore/transformer/transformer_config.h"

namespace mcore::models {

class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const transformer::TransformerConfig& config);

  // Angles for positions offset .. offset + max_seq_len - 1: [max_seq_len, 1, 1, dim] float32,
  // on `device`. Tables for offset 0 (every training step) are cached per (device, length), so
  // a GPU model does not rebuild and upload them each forward.
  Tensor forward(int64_t max_seq_len, int64_t offset = 0, Device device = Device::cpu()) const;
  // The factor multiplying cos/sin (YaRN's concentration factor; 1 otherwise).
  double mscale() const { return mscale_; }
  int64_t dim() const { return dim_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  int64_t dim_;
  bool interleaved_;
  double interpolation_factor_;
  double mscale_ = 1.0;
  std::vector<float> inv_freq_;                                    // dim / 2 entries
  mutable std::map<std::tuple<int, int, int64_t>, Tensor> cache_;  // (device, length) -> table
};

}  // namespace mcore::models
