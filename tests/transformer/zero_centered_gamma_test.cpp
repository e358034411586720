// --apply-layernorm-1p through the model build: the flag reaches
// TransformerConfig.layernorm_zero_centered_gamma, and a GPT model built from that config
// (LayerNorm and RMSNorm, with QK-norm) starts every norm weight - input, pre-MLP, q/k and final
// - at zero, and computes the same loss and gradients as the plain model whose norm weights are
// one plus the zero-centred model's (float32: both add the one in float32, so the scales, and
// hence the results, agree to rounding).
#include <gtest/gtest.h>

#include <string>

#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/tensor/factory.h"
#include "mcore/training/arguments.h"
#include "mcore/training/training.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using namespace transformer;

bool is_norm_weight(const std::string& name) {
  return name.find("layernorm.weight") != std::string::npos;
}

TEST(ZeroCenteredGammaModel, FlagReachesTheTransformerConfig) {
  std::vector<std::string> argv = {"pretrain_gpt", "--num-layers",          "2", "--hidden-size",
                                   "64",           "--num-attention-heads", "4", "--normalization",
                                   "RMSNorm"};
  EXPECT_FALSE(training::transformer_config_from_args(training::parse_args(argv))
                   .layernorm_zero_centered_gamma);
  argv.push_back("--apply-layernorm-1p");
  EXPECT_TRUE(training::transformer_config_from_args(training::parse_args(argv))
                  .layernorm_zero_centered_gamma);
}

class ZeroCenteredGammaModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ZeroCenteredGammaModelTest, NormsStartAtZeroAndMatchThePlainModelWithOnePlusGamma) {
  TransformerConfig c = models::get_preset(GetParam()).config;
  c.hidden_dropout = c.attention_dropout = 0.0;
  c.qk_layernorm = true;
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  const TransformerLayerSpec spec = get_gpt_layer_local_spec(/*qk_layernorm=*/true);
  TransformerConfig zc_config = c;
  zc_config.layernorm_zero_centered_gamma = true;
  models::GPTModel zc(zc_config, spec, 256, 64, o);
  models::GPTModel plain(c, spec, 256, 64, o);

  auto zc_params = zc.named_parameters(), plain_params = plain.named_parameters();
  ASSERT_EQ(zc_params.size(), plain_params.size());
  int norms = 0;
  {
    NoGradGuard g;
    uint64_t stream = 1;
    for (size_t i = 0; i < zc_params.size(); ++i) {
      const auto& [name, p] = zc_params[i];
      ASSERT_EQ(name, plain_params[i].first);  // the same state-dict names
      if (!is_norm_weight(name)) {
        EXPECT_TENSOR_CLOSE(*p, *plain_params[i].second, 0, 0) << name;
        continue;
      }
      ++norms;
      EXPECT_EQ(testing::max_rel_error(*p, zeros(p->shape(), p->dtype())), 0) << name;
      EXPECT_TENSOR_CLOSE(*plain_params[i].second, ones(p->shape(), p->dtype()), 0, 0) << name;
      // A trained gamma around 0; the plain model gets 1 + gamma.
      normal_(*p, RandomSpec{7, stream++}, 0.0, 0.3);
      plain_params[i].second->copy_(F::add(*p, ones(p->shape(), p->dtype())));
    }
  }
  // Per layer: input, pre-MLP, q and k norms; plus the final norm.
  EXPECT_EQ(norms, 4 * c.num_layers + 1);

  Tensor ids = arange(0, 22, 1).view({2, 11});
  Tensor zc_loss = F::mean(zc.forward(ids, Tensor(), Tensor(), ids));
  Tensor plain_loss = F::mean(plain.forward(ids, Tensor(), Tensor(), ids));
  zc_loss.backward();
  plain_loss.backward();
  EXPECT_NEAR(zc_loss.item(), plain_loss.item(), 1e-6 * std::abs(plain_loss.item()));
  for (size_t i = 0; i < zc_params.size(); ++i) {
    SCOPED_TRACE(zc_params[i].first);
    EXPECT_LT(testing::max_rel_error(zc_params[i].second->grad(), plain_params[i].second->grad()),
              1e-5);
  }
  // The option changes the model: the plain model with the stored (zero-centred) weights differs.
  models::GPTModel ignored(c, spec, 256, 64, o);
  {
    NoGradGuard g;
    auto ignored_params = ignored.named_parameters();
    for (size_t i = 0; i < zc_params.size(); ++i)
      ignored_params[i].second->copy_(*zc_params[i].second);
  }
  NoGradGuard g;
  EXPECT_GT(
      std::abs(F::mean(ignored.forward(ids, Tensor(), Tensor(), ids)).item() - plain_loss.item()),
      1e-3);
}

INSTANTIATE_TEST_SUITE_P(Norms, ZeroCenteredGammaModelTest,
                         ::testing::Values("gpt2-tiny", "llama3-tiny"), [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) ch = ch == '-' ? '_' : ch;
                           return n;
                         });

}  // namespace
}  // namespace mcore
