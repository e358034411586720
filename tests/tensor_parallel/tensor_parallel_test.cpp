// tensor_parallel/ on one process (TP=1 over the local backend): every layer must equal the
// plain op it parallelizes (F::linear, F::embedding, F::cross_entropy) bit for bit or to the
// stated tolerance, the sharded init must be a slice of the full init for any tp/stride, and
// bad sizes must fail naming the numbers. The multi-rank cases are in
// tests/distributed/tensor_parallel_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "mcore/comm/local_backend.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor_parallel/cross_entropy.h"
#include "mcore/tensor_parallel/init.h"
#include "mcore/tensor_parallel/layers.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/tensor_parallel/utils.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

namespace tp = tensor_parallel;

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

class TensorParallelSingle : public ::testing::Test {
 protected:
  void SetUp() override {
    parallel_state::initialize_model_parallel(parallel_state::ModelParallelOptions{},
                                              comm::make_local_group(0));
  }
  void TearDown() override { parallel_state::destroy_model_parallel(); }
};

// Sets a parameter's values (e.g. a non-zero bias) outside autograd.
void assign(const nn::ParameterPtr& p, const Tensor& v) {
  NoGradGuard g;
  Tensor t = *p;
  t.copy_(v);
}

Tensor leaf(const Tensor& t) {
  Tensor x = t.clone();
  x.set_requires_grad(true);
  return x;
}

TEST_F(TensorParallelSingle, MappingsAreIdentitiesOnOneRank) {
  Tensor x = leaf(random_tensor({4, 2, 3}, 1, DType::F32));
  EXPECT_TRUE(tp::copy_to_tensor_model_parallel_region(x).is_same(x));
  EXPECT_TRUE(tp::reduce_from_tensor_model_parallel_region(x).is_same(x));
  EXPECT_TRUE(tp::scatter_to_tensor_model_parallel_region(x).is_same(x));
  EXPECT_TRUE(tp::gather_from_tensor_model_parallel_region(x).is_same(x));
  EXPECT_TRUE(tp::scatter_to_sequence_parallel_region(x).is_same(x));
  EXPECT_TRUE(tp::gather_from_sequence_parallel_region(x).is_same(x));
  EXPECT_TRUE(tp::reduce_scatter_to_sequence_parallel_region(x).is_same(x));
}

TEST_F(TensorParallelSingle, MappingsNeedAGroup) {
  parallel_state::destroy_model_parallel();
  Tensor x = random_tensor({2, 2}, 1, DType::F32);
  EXPECT_NE(error_of([&] {
              tp::copy_to_tensor_model_parallel_region(x);
            }).find("initialize_model_parallel"),
            std::string::npos);
  // An explicit group works without parallel_state.
  EXPECT_TRUE(tp::copy_to_tensor_model_parallel_region(x, comm::make_local_group(0)).is_same(x));
  SetUp();
}

TEST_F(TensorParallelSingle, ColumnParallelLinearEqualsLinear) {
  for (bool skip_bias_add : {false, true}) {
    for (bool gather_output : {false, true}) {
      tp::ColumnParallelLinearOptions o;
      o.init = {7, 11, 0.5};
      o.skip_bias_add = skip_bias_add;
      o.gather_output = gather_output;
      tp::ColumnParallelLinear layer(7, 5, o);
      ASSERT_EQ(layer.weight()->shape(), (Shape{5, 7}));
      EXPECT_TRUE(layer.weight()->tensor_model_parallel);
      EXPECT_EQ(layer.weight()->partition_dim, 0);
      EXPECT_TRUE(layer.bias()->tensor_model_parallel);
      // Layout-invariant init at tp = 1 is exactly the unsharded init.
      EXPECT_TENSOR_CLOSE(*layer.weight(), nn::init_normal({5, 7}, o.init), 0, 0);
      const Tensor b = random_tensor({5}, 3, DType::F32);
      assign(layer.bias(), b);
      auto names = layer.named_parameters();
      ASSERT_EQ(names.size(), 2u);
      EXPECT_EQ(names[0].first, "weight");
      EXPECT_EQ(names[1].first, "bias");

      Tensor x = leaf(random_tensor({3, 2, 7}, 2, DType::F32));
      Tensor x_ref = leaf(x.detach());
      Tensor w_ref = leaf(*layer.weight());
      Tensor b_ref = leaf(b);
      auto [y, y_bias] = layer.forward(x);
      if (skip_bias_add) {
        ASSERT_TRUE(y_bias.defined());
        EXPECT_TRUE(y_bias.is_same(*layer.bias()));
        y = F::add(y, y_bias);
      } else {
        EXPECT_FALSE(y_bias.defined());
      }
      Tensor y_ref = F::linear(x_ref, w_ref, b_ref);
      // Same GEMM, same bias add: bit-identical.
      EXPECT_TENSOR_CLOSE(y, y_ref, 0, 0);
      Tensor g = random_tensor(y.shape(), 4, DType::F32);
      y.backward(g);
      y_ref.backward(g);
      EXPECT_TENSOR_CLOSE(x.grad(), x_ref.grad(), 0, 0);
      EXPECT_TENSOR_CLOSE(layer.weight()->grad(), w_ref.grad(), 0, 0);
      EXPECT_TENSOR_CLOSE(layer.bias()->grad(), b_ref.grad(), 0, 0);
    }
  }
}

TEST_F(TensorParallelSingle, ColumnParallelLinearExternalWeight) {
  tp::ColumnParallelLinearOptions o;
  o.bias = false;
  o.skip_weight_param_allocation = true;
  tp::ColumnParallelLinear layer(4, 6, o);
  EXPECT_EQ(layer.weight(), nullptr);
  EXPECT_TRUE(layer.named_parameters().empty());
  Tensor x = random_tensor({2, 3, 4}, 1, DType::F32);
  EXPECT_NE(error_of([&] { layer.forward(x); }).find("skip_weight_param_allocation"),
            std::string::npos);
  Tensor w = leaf(random_tensor({6, 4}, 2, DType::F32));
  auto out = layer.forward(x, w);
  EXPECT_TENSOR_CLOSE(out.output, F::linear(x, w.detach()), 0, 0);
  std::string msg = error_of([&] { layer.forward(x, random_tensor({5, 4}, 2, DType::F32)); });
  EXPECT_NE(msg.find("[5, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[6, 4]"), std::string::npos) << msg;
}

TEST_F(TensorParallelSingle, RowParallelLinearEqualsLinear) {
  for (bool input_is_parallel : {true, false}) {
    for (bool skip_bias_add : {false, true}) {
      tp::RowParallelLinearOptions o;
      o.init = {9, 2, 0.3};
      o.input_is_parallel = input_is_parallel;
      o.skip_bias_add = skip_bias_add;
      tp::RowParallelLinear layer(6, 3, o);
      EXPECT_EQ(layer.weight()->partition_dim, 1);
      EXPECT_FALSE(layer.bias()->tensor_model_parallel);
      EXPECT_TENSOR_CLOSE(*layer.weight(), nn::init_normal({3, 6}, o.init), 0, 0);
      const Tensor b = random_tensor({3}, 5, DType::F32);
      assign(layer.bias(), b);
      Tensor x = leaf(random_tensor({5, 1, 6}, 6, DType::F32));
      Tensor x_ref = leaf(x.detach()), w_ref = leaf(*layer.weight()), b_ref = leaf(b);
      auto [y, y_bias] = layer.forward(x);
      if (skip_bias_add) y = F::add(y, y_bias);
      Tensor y_ref = F::linear(x_ref, w_ref, b_ref);
      // The layer adds its bias after the (here trivial) reduction, F::linear inside the GEMM
      // epilogue: the same float add, so still exact.
      EXPECT_TENSOR_CLOSE(y, y_ref, 0, 0);
      Tensor g = random_tensor(y.shape(), 7, DType::F32);
      y.backward(g);
      y_ref.backward(g);
      EXPECT_TENSOR_CLOSE(x.grad(), x_ref.grad(), 0, 0);
      EXPECT_TENSOR_CLOSE(layer.weight()->grad(), w_ref.grad(), 0, 0);
      // Bias grad: a column sum either way; summation order may differ (fp32 rounding only).
      EXPECT_TENSOR_CLOSE(layer.bias()->grad(), b_ref.grad(), 1e-6, 1e-6);
    }
  }
}

TEST_F(TensorParallelSingle, ParallelLinearGradcheckF64) {
  tp::ColumnParallelLinearOptions co;
  co.dtype = DType::F64;
  co.init = {1, 1, 0.5};
  tp::ColumnParallelLinear fc1(5, 6, co);
  tp::RowParallelLinearOptions ro;
  ro.dtype = DType::F64;
  ro.init = {1, 2, 0.5};
  tp::RowParallelLinear fc2(6, 3, ro);
  assign(fc1.bias(), random_tensor({6}, 9));
  assign(fc2.bias(), random_tensor({3}, 10));
  // The layers own their weights: check the input gradient and, through a second pass, that the
  // weight gradients agree with finite differences of the weights passed as inputs.
  auto f = [&](const std::vector<Tensor>& in) {
    return fc2.forward(F::gelu(fc1.forward(in[0]).output)).output;
  };
  Tensor x = random_tensor({3, 2, 5}, 11);
  x.set_requires_grad(true);
  EXPECT_TRUE(gradcheck(f, {x}));
  auto fw = [&](const std::vector<Tensor>& in) {
    tp::ColumnParallelLinearOptions o = co;
    o.skip_weight_param_allocation = true;
    o.bias = false;
    tp::ColumnParallelLinear ext(5, 6, o);
    return ext.forward(in[0], in[1]).output;
  };
  Tensor w = random_tensor({6, 5}, 12);
  w.set_requires_grad(true);
  EXPECT_TRUE(gradcheck(fw, {x, w}));
}

TEST_F(TensorParallelSingle, VocabParallelEmbeddingEqualsEmbedding) {
  tp::VocabParallelEmbeddingOptions o;
  o.init = {3, 4, 1.0};
  tp::VocabParallelEmbedding emb(13, 6, o);
  EXPECT_EQ(emb.vocab_start_index(), 0);
  EXPECT_EQ(emb.vocab_end_index(), 13);
  EXPECT_TENSOR_CLOSE(*emb.weight(), nn::init_normal({13, 6}, o.init), 0, 0);
  Tensor ids = from_vector<int64_t>({0, 12, 5, 5, 3, 12, 7, 0}, {2, 4});
  Tensor w_ref = leaf(*emb.weight());
  Tensor y = emb.forward(ids);
  Tensor y_ref = F::embedding(ids, w_ref);
  EXPECT_TENSOR_CLOSE(y, y_ref, 0, 0);
  Tensor g = random_tensor(y.shape(), 5, DType::F32);
  y.backward(g);
  y_ref.backward(g);
  EXPECT_TENSOR_CLOSE(emb.weight()->grad(), w_ref.grad(), 0, 0);
  // int32 ids give the same.
  EXPECT_TENSOR_CLOSE(emb.forward(ids.to(DType::I32)), y_ref, 0, 0);

  std::string msg = error_of([&] { emb.forward(from_vector<int64_t>({1, 13})); });
  EXPECT_NE(msg.find("id 13"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0, 13)"), std::string::npos) << msg;
}

TEST_F(TensorParallelSingle, VocabParallelEmbeddingReduceScatterTransposes) {
  tp::VocabParallelEmbeddingOptions o;
  o.reduce_scatter_embeddings = true;
  tp::VocabParallelEmbedding emb(10, 4, o);
  Tensor ids = from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {2, 3});  // [b, s]
  Tensor y = emb.forward(ids);
  ASSERT_EQ(y.shape(), (Shape{3, 2, 4}));
  Tensor ref = F::embedding(ids, emb.weight()->detach()).transpose(1, 0).contiguous();
  EXPECT_TENSOR_CLOSE(y, ref, 0, 0);
}

TEST_F(TensorParallelSingle, VocabSizeWithPadding) {
  EXPECT_EQ(tp::vocab_size_with_padding(50257, 128, 1), 50304);
  EXPECT_EQ(tp::vocab_size_with_padding(50257, 128, 8), 51200);
  EXPECT_EQ(tp::vocab_size_with_padding(32000, 128, 1), 32000);
  EXPECT_EQ(tp::vocab_size_with_padding(101, 1, 4), 104);
  EXPECT_EQ(tp::vocab_size_with_padding(100, 1, 4), 100);
  EXPECT_THROW(tp::vocab_size_with_padding(0, 128, 1), Error);
  auto r = tp::vocab_range_from_global_vocab_size(104, 2, 4);
  EXPECT_EQ(r.first, 52);
  EXPECT_EQ(r.second, 78);
  EXPECT_NE(error_of([] { tp::vocab_range_from_global_vocab_size(101, 0, 4); }).find("101"),
            std::string::npos);
}

// Targets covering the first, last and middle ids, shapes [s, b] with odd sizes.
Tensor targets(const Shape& shape, int64_t vocab, uint64_t seed) {
  Tensor u = random_tensor(shape, seed);
  std::vector<int64_t> v(u.numel());
  const double* p = u.data<double>();
  for (int64_t i = 0; i < u.numel(); ++i) {
    v[i] = std::min<int64_t>(vocab - 1, static_cast<int64_t>((p[i] + 1) / 2 * vocab));
  }
  v[0] = 0;
  v.back() = vocab - 1;
  return from_vector<int64_t>(v, shape);
}

TEST_F(TensorParallelSingle, CrossEntropyEqualsCrossEntropy) {
  for (DType d : {DType::F32, DType::F64, DType::BF16}) {
    for (bool with_mask : {false, true}) {
      Tensor logits = leaf(random_tensor({5, 3, 11}, 1, d, 4.0));
      Tensor ref_logits = leaf(logits.detach());
      Tensor t = targets({5, 3}, 11, 2);
      Tensor mask = with_mask ? random_tensor({5, 3}, 3, DType::F32) : Tensor();
      Tensor loss = tp::vocab_parallel_cross_entropy(logits, t, 0.0, mask);
      Tensor ref = F::cross_entropy(ref_logits, t, mask);
      EXPECT_EQ(loss.dtype(), d == DType::F64 ? DType::F64 : DType::F32);
      // Same math, different order of the max/sum passes: float rounding only (bf16 logits
      // are read exactly into float32, so the bound is fp32's, not bf16's). The gradient is
      // stored in the logits' dtype, so bf16 gradients may differ by one bf16 ulp (2^-8).
      const double rtol = d == DType::F64 ? 1e-12 : 1e-6;
      EXPECT_TENSOR_CLOSE(loss, ref, rtol, rtol);
      Tensor g = random_tensor({5, 3}, 4, loss.dtype());
      loss.backward(g);
      ref.backward(g);
      const double gtol = d == DType::BF16 ? 8e-3 : rtol;
      EXPECT_TENSOR_CLOSE(logits.grad(), ref_logits.grad(), gtol, gtol);
    }
  }
}

// Megatron's label smoothing in float64 by hand: (1 - sm) * nll - sm * mean_j log p_j with
// sm = ls * V / (V - 1).
TEST_F(TensorParallelSingle, CrossEntropyLabelSmoothing) {
  const int64_t V = 7;
  const double ls = 0.1, sm = ls * V / (V - 1);
  Tensor logits = random_tensor({4, 2, V}, 1, DType::F64, 3.0);
  Tensor t = targets({4, 2}, V, 2);
  Tensor loss = tp::vocab_parallel_cross_entropy(logits, t, ls);
  const double* x = logits.data<double>();
  const int64_t* tt = t.data<int64_t>();
  for (int64_t n = 0; n < 8; ++n) {
    double mx = -1e300, s = 0, mean_logp = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, x[n * V + j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(x[n * V + j] - mx);
    const double lse = mx + std::log(s);
    for (int64_t j = 0; j < V; ++j) mean_logp += (x[n * V + j] - lse) / V;
    const double expect = (1 - sm) * (lse - x[n * V + tt[n]]) - sm * mean_logp;
    EXPECT_NEAR(loss.data<double>()[n], expect, 1e-12) << "token " << n;
  }
}

TEST_F(TensorParallelSingle, CrossEntropyGradcheckF64) {
  for (double ls : {0.0, 0.2}) {
    Tensor logits = random_tensor({3, 3, 9}, 7, DType::F64, 2.0);
    logits.set_requires_grad(true);
    Tensor t = targets({3, 3}, 9, 8);
    Tensor mask = random_tensor({3, 3}, 9);
    auto f = [&](const std::vector<Tensor>& in) {
      return tp::vocab_parallel_cross_entropy(in[0], t, ls, mask);
    };
    EXPECT_TRUE(gradcheck(f, {logits})) << "label_smoothing " << ls;
  }
}

// When the logits are an intermediate nothing else holds (the training step's case), the
// backward writes their gradient over them (autograd::saved_tensor_reusable). The gradient
// reaching the leaf must be bitwise what the out-of-place path gives (the same logits held by
// the test, so they cannot be reused); with retain_graph the logits must stay intact, so a
// second backward gives the same gradient again. Label smoothing and a mask exercise the
// target element's separate update, and the bf16 case the narrow store.
TEST_F(TensorParallelSingle, CrossEntropyInPlaceGradientMatchesOutOfPlace) {
  for (DType d : {DType::F32, DType::BF16}) {
    for (double ls : {0.0, 0.1}) {
      Tensor x = leaf(random_tensor({6, 2, 37}, 11, d, 3.0));
      Tensor t = targets({6, 2}, 37, 12);
      Tensor mask = random_tensor({6, 2}, 13, DType::F32);
      Tensor g = random_tensor({6, 2}, 14, DType::F32);
      // In place: the logits (x * 2) exist only inside the graph.
      tp::vocab_parallel_cross_entropy(F::scale(x, 2.0), t, ls, mask).backward(g);
      Tensor in_place = x.grad().clone();
      x.set_grad(Tensor());
      // Out of place: the test keeps a reference to the logits.
      Tensor held = F::scale(x, 2.0);
      tp::vocab_parallel_cross_entropy(held, t, ls, mask).backward(g);
      EXPECT_TENSOR_CLOSE(in_place, x.grad(), 0, 0);
      // retain_graph: both backwards see the original logits.
      x.set_grad(Tensor());
      Tensor loss = tp::vocab_parallel_cross_entropy(F::scale(x, 2.0), t, ls, mask);
      loss.backward(g, /*retain_graph=*/true);
      Tensor first = x.grad().clone();
      x.set_grad(Tensor());
      loss.backward(g);
      EXPECT_TENSOR_CLOSE(first, x.grad(), 0, 0);
      EXPECT_TENSOR_CLOSE(first, in_place, 0, 0);
    }
  }
}

TEST_F(TensorParallelSingle, CrossEntropyBadInputs) {
  Tensor logits = random_tensor({4, 2, 5}, 1, DType::F32);
  std::string msg = error_of([&] {
    tp::vocab_parallel_cross_entropy(logits, targets({4, 3}, 5, 1));
  });
  EXPECT_NE(msg.find("[4, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 2, 5]"), std::string::npos) << msg;
  Tensor bad = targets({4, 2}, 5, 1);
  bad.data<int64_t>()[3] = 5;
  msg = error_of([&] { tp::vocab_parallel_cross_entropy(logits, bad); });
  EXPECT_NE(msg.find("target 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0, 5)"), std::string::npos) << msg;
  EXPECT_THROW(tp::vocab_parallel_cross_entropy(logits, targets({4, 2}, 5, 1).to(DType::F32)),
               Error);
  EXPECT_THROW(tp::vocab_parallel_cross_entropy(logits, targets({4, 2}, 5, 1), 1.0), Error);
}

// The sharded init is a slice of the full init, for any tp, partition dim and stride, and
// shard_tensor is its exact inverse: checked here without communication for tp up to 4.
TEST(TensorParallelInit, ShardIsSliceOfFullInit) {
  const nn::InitSpec spec{42, 17, 0.02};
  const Shape shapes[] = {{8, 6}, {12, 5}, {4, 12}, {16, 3}};
  for (const Shape& gs : shapes) {
    const Tensor full = nn::init_normal(gs, spec);
    for (int dim : {0, 1}) {
      for (int stride : {1, 2}) {
        for (int ws : {1, 2, 4}) {
          if (gs[dim] % (ws * stride) != 0) continue;
          for (int r = 0; r < ws; ++r) {
            Tensor shard = tp::init_normal_shard(gs, dim, stride, r, ws, spec);
            EXPECT_EQ(shard.shape(), tp::shard_shape(gs, dim, stride, ws));
            EXPECT_TENSOR_CLOSE(shard, tp::shard_tensor(full, dim, stride, r, ws), 0, 0)
                << shape_str(gs) << " dim " << dim << " stride " << stride << " rank " << r << "/"
                << ws;
          }
        }
      }
    }
  }
  // Stride 2 on dim 0 with tp 2: rank 0 holds rows [0,2) and [4,6) of 8 ([gate_0; up_0]).
  const Tensor full = nn::init_normal({8, 3}, spec);
  Tensor s0 = tp::shard_tensor(full, 0, 2, 0, 2);
  EXPECT_TENSOR_CLOSE(s0.narrow(0, 0, 2), full.narrow(0, 0, 2), 0, 0);
  EXPECT_TENSOR_CLOSE(s0.narrow(0, 2, 2), full.narrow(0, 4, 2), 0, 0);
  std::string msg = error_of([&] { tp::init_normal_shard({10, 3}, 0, 1, 0, 4, spec); });
  EXPECT_NE(msg.find("10"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4"), std::string::npos) << msg;
}

TEST_F(TensorParallelSingle, GatherOnOneRankIsACopy) {
  tp::ColumnParallelLinear layer(3, 4);
  Tensor full = tp::gather_tensor_model_parallel_param(*layer.weight());
  EXPECT_TENSOR_CLOSE(full, *layer.weight(), 0, 0);
  EXPECT_FALSE(full.storage() == layer.weight()->storage());
}

TEST_F(TensorParallelSingle, BadSizesNameTheNumbers) {
  tp::ColumnParallelLinearOptions o;
  o.partition_stride = 2;
  std::string msg = error_of([&] { tp::ColumnParallelLinear(4, 5, o); });
  EXPECT_NE(msg.find("output_size 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("partition_stride 2"), std::string::npos) << msg;
  tp::RowParallelLinearOptions ro;
  ro.sequence_parallel = true;
  ro.input_is_parallel = false;
  msg = error_of([&] { tp::RowParallelLinear(4, 4, ro); });
  EXPECT_NE(msg.find("input_is_parallel"), std::string::npos) << msg;
  tp::ColumnParallelLinear c(4, 6);
  msg = error_of([&] { c.forward(random_tensor({2, 5}, 1, DType::F32)); });
  EXPECT_NE(msg.find("[2, 5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input_size 4"), std::string::npos) << msg;
}

}  // namespace
}  // namespace mcore::testing
