#include <gtest/gtest.h>

#include "mcore/autograd/checkpoint.h"
#include "mcore/base/rng_state.h"
#include "mcore/nn/dropout.h"
#include "mcore/nn/embedding.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/nn/linear.h"
#include "mcore/nn/norm.h"
#include "tests/common/test_util.h"

namespace mcore {

TEST(Layers, NormsStartAsIdentityAffine) {
  nn::LayerNorm ln(6);
  nn::RMSNorm rms(6);
  EXPECT_EQ(to_vector<float>(*ln.weight()), std::vector<float>(6, 1.0f));
  EXPECT_EQ(to_vector<float>(*ln.bias()), std::vector<float>(6, 0.0f));
  EXPECT_TRUE(ln.weight()->no_weight_decay && rms.weight()->no_weight_decay);
  Tensor x = testing::random_tensor({3, 6}, 1, DType::F32);
  NoGradGuard g;
  EXPECT_TENSOR_CLOSE(ln.forward(x), F::layer_norm(x, ones({6}), zeros({6})), 0, 0);
  EXPECT_EQ(rms.named_parameters().size(), 1u);
}

TEST(Layers, EmbeddingLooksUpRows) {
  nn::Embedding emb(11, 4);
  Tensor ids = from_vector<int64_t>({3, 0, 10, 3}, {2, 2});
  NoGradGuard g;
  Tensor out = emb.forward(ids);
  EXPECT_EQ(out.shape(), (Shape{2, 2, 4}));
  std::vector<float> w = to_vector<float>(*emb.weight()), o = to_vector<float>(out);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(o[j], w[3 * 4 + j]);
    EXPECT_EQ(o[2 * 4 + j], w[10 * 4 + j]);
  }
  EXPECT_THROW(emb.forward(from_vector<int64_t>({11})), Error);
}

TEST(Layers, DropoutFollowsModeAndRngStep) {
  nn::Dropout drop(0.5, nn::stream_for_name("layer.dropout"));
  Tensor x = ones({64, 64});
  set_rng_state({42, 0});
  Tensor a = drop.forward(x);
  Tensor a2 = drop.forward(x);
  EXPECT_EQ(to_vector<float>(a), to_vector<float>(a2)) << "same key, same mask";
  set_rng_state({42, 1});
  Tensor b = drop.forward(x);
  EXPECT_NE(to_vector<float>(a), to_vector<float>(b)) << "next microbatch, new mask";
  drop.eval();
  EXPECT_TRUE(drop.forward(x).is_same(x));
  EXPECT_THROW(nn::Dropout(1.0, 0), Error);
}

TEST(Layers, CheckpointWithDropoutReplaysTheSameMask) {
  nn::Linear fc(8, 8);
  nn::Dropout drop(0.3, 7);
  Tensor x = testing::random_tensor({5, 8}, 3, DType::F32).set_requires_grad(true);
  auto block = [&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{drop.forward(F::gelu(fc.forward(in[0])))};
  };
  set_rng_state({1, 5});
  F::sum(F::mul(block({x})[0], block({x})[0])).backward();
  Tensor gx = x.grad(), gw = fc.weight()->grad();
  x.set_grad(Tensor());
  fc.zero_grad();
  set_rng_state({1, 5});
  std::vector<Tensor> out = autograd::checkpoint(block, {x});
  set_rng_state({1, 6});  // the step moves on before backward, as in a pipeline schedule
  F::sum(F::mul(out[0], out[0])).backward();
  EXPECT_EQ(to_vector<float>(gx), to_vector<float>(x.grad()));
  EXPECT_EQ(to_vector<float>(gw), to_vector<float>(fc.weight()->grad()));
}

}  // namespace mcore
