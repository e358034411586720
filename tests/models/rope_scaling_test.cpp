// models::RotaryEmbedding's scaled frequencies against megatron-core's own code
// (tests/reference/gen_rope_scaling.py): Llama 3.x rope_scaling (inverse frequencies and angle
// tables at positions past the original context) and YaRN (angle tables and the concentration
// factor that multiplies cos and sin), over every branch of both schemes.
#include <gtest/gtest.h>

#include "mcore/models/common/rotary_pos_embedding.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::models {
namespace {

using testing::load_ref;

constexpr const char* kGroup = "rope_scaling";

// Both sides compute inv_freq in float32 from a power of the base (libm powf vs PyTorch's pow:
// an ulp apart at most) and the angles as one float32 product position * inv_freq, so the
// tables agree to a few float32 ulps: rtol 2e-6. YaRN's factor is a double on both sides.
constexpr double kRtol = 2e-6;

transformer::TransformerConfig rope_config(int64_t kv_channels, double base) {
  transformer::TransformerConfig c;
  c.kv_channels = kv_channels;
  c.rotary_base = base;
  c.position_embedding_type = "rope";
  return c;
}

TEST(RopeScaling, Llama3MatchesMegatron) {
  struct Case {
    const char* name;
    int64_t kv;
    double base, factor;
    int64_t positions, offset;
  };
  // The cases of gen_rope_scaling.py (Llama 3.1 and 3.2 factors; megatron-core's defaults for
  // the band: low 1, high 4, original context 8192).
  for (const Case& k : {Case{"llama31", 128, 500000.0, 8.0, 16, 8180},
                        Case{"llama32", 64, 500000.0, 32.0, 12, 40000}}) {
    SCOPED_TRACE(k.name);
    transformer::TransformerConfig c = rope_config(k.kv, k.base);
    c.rope_scaling = true;
    c.rope_scaling_factor = k.factor;
    RotaryEmbedding rope(c);
    const std::vector<float>& inv = rope.inv_freq();
    Tensor inv_t = from_vector<float>(inv, {static_cast<int64_t>(inv.size())});
    EXPECT_TENSOR_CLOSE(inv_t, load_ref(kGroup, std::string(k.name) + "_inv_freq"), kRtol, 0);
    EXPECT_TENSOR_CLOSE(rope.forward(k.positions, k.offset),
                        load_ref(kGroup, std::string(k.name) + "_emb"), kRtol, 0);
    EXPECT_DOUBLE_EQ(rope.mscale(), 1.0);
  }
}

TEST(RopeScaling, Llama3ScalingChangesOnlyLowFrequencies) {
  // Without the reference: the highest frequency (wavelength 2 pi, far below 8192 / 4) is kept,
  // the lowest (wavelength > 8192) is divided by the factor.
  transformer::TransformerConfig c = rope_config(128, 500000.0);
  RotaryEmbedding plain(c);
  c.rope_scaling = true;
  RotaryEmbedding scaled(c);
  EXPECT_EQ(scaled.inv_freq().front(), plain.inv_freq().front());
  EXPECT_FLOAT_EQ(scaled.inv_freq().back(), plain.inv_freq().back() / 8.0f);
}

TEST(RopeScaling, YarnMatchesMegatron) {
  struct Case {
    const char* name;
    int64_t kv;
    double base, factor;
    int64_t original;
    double beta_fast, beta_slow, mscale, mscale_all_dim;
    bool round_to_int;
    int64_t positions, offset;
  };
  for (const Case& k :
       {Case{"yarn_ds", 64, 10000.0, 40.0, 4096, 32.0, 1.0, 1.0, 1.0, true, 12, 100000},
        Case{"yarn_qwen", 128, 1000000.0, 4.0, 32768, 32.0, 1.0, 1.0, 0.0, true, 10, 65000},
        Case{"yarn_unrounded", 32, 10000.0, 16.0, 2048, 24.0, 2.0, 0.707, 0.5, false, 9, 20000}}) {
    SCOPED_TRACE(k.name);
    transformer::TransformerConfig c = rope_config(k.kv, k.base);
    c.position_embedding_type = "yarn";
    c.yarn_rotary_scaling_factor = k.factor;
    c.yarn_original_max_position_embeddings = k.original;
    c.yarn_beta_fast = k.beta_fast;
    c.yarn_beta_slow = k.beta_slow;
    c.yarn_mscale = k.mscale;
    c.yarn_mscale_all_dim = k.mscale_all_dim;
    c.yarn_correction_range_round_to_int = k.round_to_int;
    RotaryEmbedding rope(c);
    EXPECT_TENSOR_CLOSE(rope.forward(k.positions, k.offset),
                        load_ref(kGroup, std::string(k.name) + "_emb"), kRtol, 0);
    const double want = to_vector<double>(load_ref(kGroup, std::string(k.name) + "_mscale"))[0];
    EXPECT_NEAR(rope.mscale(), want, 1e-12);
  }
}

}  // namespace
}  // namespace mcore::models
