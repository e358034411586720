// GPTModel's initial weights follow Megatron's init (megatron/core/transformer and
// models/gpt): every weight matrix and embedding ~ N(0, init_method_std), except linear_proj and
// linear_fc2, the layers that write into the residual stream, ~ N(0, init_method_std /
// sqrt(2 * num_layers)) (scaled_init_method_normal); biases zero; norm weights one, norm biases
// zero. Checked statistically on models big enough for tight estimates: a weight of n samples
// has a sample std within ~1/sqrt(2n) (0.3-0.6% here) of the true one, so 4% is a wide margin
// that still catches a wrong formula (the scaled std differs by 2.8-4x here).
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"

namespace mcore::models {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Moments {
  double mean = 0, std = 0, min = 0, max = 0;
};

Moments moments(const Tensor& t) {
  std::vector<double> v = to_vector<double>(t.to(DType::F64));
  Moments m;
  m.min = m.max = v.empty() ? 0 : v[0];
  for (double x : v) {
    m.mean += x;
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
  }
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.std += (x - m.mean) * (x - m.mean);
  m.std = std::sqrt(m.std / static_cast<double>(v.size()));
  return m;
}

void check_init(const std::string& preset, int64_t layers, int64_t hidden, int64_t ffn) {
  SCOPED_TRACE(preset);
  transformer::TransformerConfig c = get_preset(preset).config;
  c.num_layers = layers;
  c.hidden_size = hidden;
  c.ffn_hidden_size = ffn;
  c.kv_channels = 0;
  c.init_method_std = 0.02;
  c.finalize();
  const bool tied = get_preset(preset).share_embeddings_and_output_weights;
  GPTModelOptions o;
  o.share_embeddings_and_output_weights = tied;
  o.tp_group = comm::make_local_group();
  GPTModel model(c, transformer::get_gpt_layer_local_spec(), 2048, 512, o);
  const double plain = 0.02, scaled = 0.02 / std::sqrt(2.0 * static_cast<double>(layers));
  int weights = 0, scaled_weights = 0, ones = 0, zeros = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    const Moments m = moments(*p);
    const bool is_norm = name.find("layernorm") != std::string::npos;
    if (ends_with(name, ".bias")) {
      EXPECT_EQ(m.min, 0.0);
      EXPECT_EQ(m.max, 0.0);
      ++zeros;
    } else if (is_norm) {
      EXPECT_EQ(m.min, 1.0);
      EXPECT_EQ(m.max, 1.0);
      ++ones;
    } else {
      const bool residual_writer = name.find("linear_proj.") != std::string::npos ||
                                   name.find("linear_fc2.") != std::string::npos;
      const double want = residual_writer ? scaled : plain;
      EXPECT_NEAR(m.std, want, 0.04 * want);
      EXPECT_LT(std::abs(m.mean), 5.0 * want / std::sqrt(static_cast<double>(p->numel())));
      ++weights;
      scaled_weights += residual_writer;
    }
  }
  EXPECT_EQ(scaled_weights, 2 * layers);
  EXPECT_GT(weights, scaled_weights);
  EXPECT_GT(ones, 0);
  if (c.add_bias_linear) {
    EXPECT_GT(zeros, 0);
  }
}

TEST(GPTModelInit, MatchesMegatronInitGpt2Style) {
  check_init("gpt2-tiny", 4, 256, 1024);  // learned positions, biases, LayerNorm, tied
}

TEST(GPTModelInit, MatchesMegatronInitLlamaStyle) {
  check_init("llama3-tiny", 8, 256, 704);  // RoPE, RMSNorm, SwiGLU, GQA, untied, no biases
}

}  // namespace
}  // namespace mcore::models
