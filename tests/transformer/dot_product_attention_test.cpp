// DotProductAttention: the unfused path (taken in training with attention dropout) computes
// the same attention as the fused kernel. With attention_dropout = 1e-9 essentially no element
// is dropped and the kept ones scale by 1/(1 - 1e-9), so the two paths must agree to fp32
// rounding (1e-5 relative), outputs and q/k/v gradients, for GQA with causal and padding masks.
// And with real dropout, a recomputed forward (same RNG state) is bit-identical.
#include <gtest/gtest.h>

#include "mcore/base/rng_state.h"
#include "mcore/comm/local_backend.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"
#include "mcore/transformer/dot_product_attention.h"
#include "tests/common/test_util.h"

namespace mcore::transformer {
namespace {

Tensor leaf(const Shape& shape, uint64_t seed) {
  Tensor t = testing::random_tensor(shape, seed, DType::F32);
  t.set_requires_grad(true);
  return t;
}

struct Out {
  Tensor y, dq, dk, dv;
};

Out run(const DotProductAttention& attn, const Tensor& mask) {
  const int64_t s = 7, b = 2, np = 4, ng = 2, hn = 8;
  Tensor q = leaf({s, b, np, hn}, 1), k = leaf({s, b, ng, hn}, 2), v = leaf({s, b, ng, hn}, 3);
  Tensor y = attn.forward(q, k, v, mask);
  Tensor w = testing::random_tensor(y.shape(), 4, DType::F32);
  F::sum(F::mul(y, w)).backward();
  return {y.detach(), q.grad(), k.grad(), v.grad()};
}

TEST(DotProductAttention, UnfusedPathMatchesFusedKernel) {
  TransformerConfig c;
  c.num_layers = 1;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.attention_dropout = 1e-9;
  c.finalize();
  Tensor pad = zeros({2, 7}, DType::BOOL);
  pad.data<bool>()[7 + 5] = true;  // batch 1: keys 5 and 6 are padding
  pad.data<bool>()[7 + 6] = true;
  for (bool with_mask : {false, true}) {
    SCOPED_TRACE(with_mask ? "padding + causal" : "causal");
    CoreAttentionArgs a;
    a.config = &c;
    a.prefix = "decoder.layers.0.self_attention.core_attention";
    a.tp_group = comm::make_local_group();
    a.attn_mask_type = with_mask ? AttnMaskType::kPaddingCausal : AttnMaskType::kCausal;
    DotProductAttention attn(a);
    Tensor mask = with_mask ? pad : Tensor();
    attn.eval();
    Out fused = run(attn, mask);
    attn.train();
    Out unfused = run(attn, mask);
    EXPECT_LT(testing::max_rel_error(unfused.y, fused.y), 1e-5);
    EXPECT_LT(testing::max_rel_error(unfused.dq, fused.dq), 1e-5);
    EXPECT_LT(testing::max_rel_error(unfused.dk, fused.dk), 1e-5);
    EXPECT_LT(testing::max_rel_error(unfused.dv, fused.dv), 1e-5);
  }
}

TEST(DotProductAttention, DropoutIsKeyedByTheRngState) {
  TransformerConfig c;
  c.num_layers = 1;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.attention_dropout = 0.3;
  c.finalize();
  CoreAttentionArgs a;
  a.config = &c;
  a.tp_group = comm::make_local_group();
  DotProductAttention attn(a);
  set_rng_state({9, 1});
  Out first = run(attn, Tensor());
  set_rng_state({9, 1});
  Out again = run(attn, Tensor());
  EXPECT_EQ(testing::max_rel_error(again.y, first.y), 0.0);
  set_rng_state({9, 2});
  Out other = run(attn, Tensor());
  EXPECT_GT(testing::max_rel_error(other.y, first.y), 1e-3);
  attn.eval();
  Out eval = run(attn, Tensor());
  EXPECT_GT(testing::max_rel_error(eval.y, first.y), 1e-3);  // dropout really acted
}

}  // namespace
}  // namespace mcore::transformer
