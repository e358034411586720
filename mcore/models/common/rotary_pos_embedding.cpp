#include "mcore/models/common/rotary_pos_embedding.h"

#include <algorithm>
#include <cmath>

#include "mcore/tensor/factory.h"

namespace mcore::models {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Megatron's _apply_scaling (Llama 3.x), elementwise on float32 inverse frequencies.
void apply_llama3_scaling(std::vector<float>& inv_freq, const transformer::TransformerConfig& c) {
  const float factor = static_cast<float>(c.rope_scaling_factor);
  const float low = static_cast<float>(c.rope_scaling_low_freq_factor);
  const float high = static_cast<float>(c.rope_scaling_high_freq_factor);
  const float old_len = static_cast<float>(c.rope_scaling_original_max_position_embeddings);
  const float low_freq_wavelen = old_len / low;
  const float high_freq_wavelen = old_len / high;
  for (float& f : inv_freq) {
    const float wavelen = 2.0f * static_cast<float>(kPi) / f;
    float scaled = wavelen > low_freq_wavelen ? f / factor : f;
    if (!(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen)) {
      const float smooth = (old_len / wavelen - low) / (high - low);
      scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
    }
    f = scaled;
  }
}

double yarn_correction_dim(double num_rotations, int64_t dim, double base, double max_pos) {
  return (static_cast<double>(dim) * std::log(max_pos / (num_rotations * 2.0 * kPi))) /
         (2.0 * std::log(base));
}

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

RotaryEmbedding::RotaryEmbedding(const transformer::TransformerConfig& c)
    : interleaved_(c.rotary_interleaved), interpolation_factor_(c.seq_len_interpolation_factor) {
  dim_ = c.kv_channels;
  if (c.rotary_percent < 1.0) dim_ = static_cast<int64_t>(dim_ * c.rotary_percent);
  const int64_t half = dim_ / 2;
  inv_freq_.resize(half);
  if (c.position_embedding_type == "yarn") {
    // YaRN computes over the full kv_channels (Megatron's YarnRotaryEmbedding sets dim so).
    dim_ = c.kv_channels;
    inv_freq_.assign(dim_ / 2, 0.0f);
    const double base = c.rotary_base, s = c.yarn_rotary_scaling_factor;
    const double max_pos = static_cast<double>(c.yarn_original_max_position_embeddings);
    double low = yarn_correction_dim(c.yarn_beta_fast, dim_, base, max_pos);
    double high = yarn_correction_dim(c.yarn_beta_slow, dim_, base, max_pos);
    if (c.yarn_correction_range_round_to_int) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim_ - 1));
    if (low == high) high += 0.001;  // as Megatron: avoid a zero-width ramp
    for (int64_t i = 0; i < dim_ / 2; ++i) {
      const float e = static_cast<float>(2 * i) / static_cast<float>(dim_);
      const float extra = 1.0f / std::pow(static_cast<float>(base), e);
      const float inter = 1.0f / (static_cast<float>(s) * std::pow(static_cast<float>(base), e));
      const float ramp = std::clamp(static_cast<float>((i - low) / (high - low)), 0.0f, 1.0f);
      const float mask = 1.0f - ramp;  // 1: extrapolate (keep), 0: interpolate
      inv_freq_[i] = inter * (1.0f - mask) + extra * mask;
    }
    mscale_ = yarn_get_mscale(s, c.yarn_mscale) / yarn_get_mscale(s, c.yarn_mscale_all_dim);
    return;
  }
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim_);
    inv_freq_[i] = 1.0f / std::pow(static_cast<float>(c.rotary_base), e);
  }
  if (c.rope_scaling) apply_llama3_scaling(inv_freq_, c);
}

Tensor RotaryEmbedding::forward(int64_t max_seq_len, int64_t offset, Device device) const {
  MCORE_CHECK(max_seq_len > 0) << "RotaryEmbedding: max_seq_len must be positive, got "
                               << max_seq_len;
  const auto key = std::make_tuple(static_cast<int>(device.type), device.index, max_seq_len);
  if (offset == 0) {
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  const int64_t half = dim_ / 2;
  Tensor out = empty({max_seq_len, 1, 1, dim_}, DType::F32);
  float* p = out.data<float>();
  for (int64_t s = 0; s < max_seq_len; ++s) {
    float pos = static_cast<float>(s + offset);
    if (interpolation_factor_ > 0) pos *= 1.0f / static_cast<float>(interpolation_factor_);
    float* row = p + s * dim_;
    for (int64_t i = 0; i < half; ++i) {
      const float a = pos * inv_freq_[i];
      if (interleaved_) {
        row[2 * i] = a;
        row[2 * i + 1] = a;
      } else {
        row[i] = a;
        row[i + half] = a;
      }
    }
  }
  out = out.to(device);
  // Decoding steps (offset > 0) each need another table: only offset 0 is worth keeping.
  if (offset == 0) cache_[key] = out;
  return out;
}

}  // namespace mcore::models
