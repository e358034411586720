// tensor_parallel/ under MPI (2 and 4 ranks): for every tensor-parallel size that divides the
// world (TP in {1, 2, 4}, the rest data-parallel) and sequence parallelism on and off, each
// parallel layer and mapping must give the outputs and the (gathered) gradients of the
// unsharded computation, which every rank computes locally with plain F:: ops on the full
// weights. fp32 tolerance 1e-5 relative: only the order of float sums differs (partial GEMMs
// summed across ranks). The init is checked bit for bit: the gathered sharded weight equals
// the full weight nn::init_normal draws.
#include <gtest/gtest.h>

#include <string>

#include "mcore/comm/distributed.h"
#include "mcore/comm/local_backend.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor_parallel/cross_entropy.h"
#include "mcore/tensor_parallel/init.h"
#include "mcore/tensor_parallel/layers.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/tensor_parallel/utils.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

namespace tp = tensor_parallel;
namespace ps = parallel_state;

constexpr double kTol = 1e-5;

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

Tensor leaf(const Tensor& t) {
  Tensor x = t.detach().clone();
  x.set_requires_grad(true);
  return x;
}

void assign(const nn::ParameterPtr& p, const Tensor& v) {
  NoGradGuard g;
  Tensor t = *p;
  t.copy_(v);
}

// Contiguous chunk r of n along dim (what a rank of a split holds).
Tensor chunk(const Tensor& t, int64_t dim, int r, int n) {
  const int64_t c = t.size(dim) / n;
  return t.detach().narrow(dim, r * c, c).contiguous();
}

// Runs body(tp_size) for every tensor-parallel size dividing the world, with parallel_state
// initialized for it (the remaining ranks form data-parallel replicas).
template <class Body>
void for_each_tp(Body&& body) {
  const int world = comm::get_world_size();
  for (int t : {1, 2, 4}) {
    if (world % t != 0) continue;
    ps::initialize_model_parallel(t, 1);
    {
      SCOPED_TRACE("tp " + std::to_string(t) + " of world " + std::to_string(world));
      body(t);
    }
    ps::destroy_model_parallel();
  }
}

TEST(TensorParallelDist, MappingsForwardAndBackward) {
  for_each_tp([](int n) {
    auto g = ps::get_tensor_model_parallel_group();
    const int r = ps::get_tensor_model_parallel_rank();
    ASSERT_EQ(g->size(), n);
    const Shape full{8, 3, 12};  // [s, b, h]: s and h divide by 1, 2, 4
    // Per-rank tensors of one shape and the list every rank could have sent.
    auto per_rank = [](const Shape& s, int rank, uint64_t salt) {
      return random_tensor(s, 1000 * salt + rank, DType::F32);
    };
    auto cat_ranks = [&](const Shape& s, int64_t dim, uint64_t salt) {
      std::vector<Tensor> parts;
      for (int q = 0; q < n; ++q) parts.push_back(per_rank(s, q, salt));
      return F::cat(parts, dim);
    };
    auto sum_ranks = [&](const Shape& s, uint64_t salt) {
      Tensor acc = per_rank(s, 0, salt);
      for (int q = 1; q < n; ++q) acc = F::add(acc, per_rank(s, q, salt));
      return acc;
    };
    const Shape last_split{8, 3, 12 / n}, seq_split{8 / n, 3, 12};

    {  // copy_to: identity, grad all-reduced.
      Tensor x = leaf(per_rank(full, 0, 1));
      Tensor y = tp::copy_to_tensor_model_parallel_region(x);
      EXPECT_TENSOR_CLOSE(y, x.detach(), 0, 0);
      y.backward(per_rank(full, r, 2));
      EXPECT_TENSOR_CLOSE(x.grad(), sum_ranks(full, 2), kTol, 1e-6);
    }
    {  // reduce_from: all-reduce, grad identity.
      Tensor x = leaf(per_rank(full, r, 3));
      Tensor y = tp::reduce_from_tensor_model_parallel_region(x);
      EXPECT_TENSOR_CLOSE(y, sum_ranks(full, 3), kTol, 1e-6);
      Tensor gy = per_rank(full, 0, 4);
      y.backward(gy);
      EXPECT_TENSOR_CLOSE(x.grad(), gy, 0, 0);
    }
    {  // scatter_to: split last dim, grad all-gathered.
      Tensor x = leaf(per_rank(full, 0, 5));
      Tensor y = tp::scatter_to_tensor_model_parallel_region(x);
      EXPECT_TENSOR_CLOSE(y, chunk(x, 2, r, n), 0, 0);
      y.backward(per_rank(last_split, r, 6));
      EXPECT_TENSOR_CLOSE(x.grad(), cat_ranks(last_split, 2, 6), 0, 0);
    }
    {  // gather_from: all-gather last dim, grad split.
      Tensor x = leaf(per_rank(last_split, r, 7));
      Tensor y = tp::gather_from_tensor_model_parallel_region(x);
      EXPECT_TENSOR_CLOSE(y, cat_ranks(last_split, 2, 7), 0, 0);
      Tensor gy = per_rank(full, 0, 8);
      y.backward(gy);
      EXPECT_TENSOR_CLOSE(x.grad(), chunk(gy, 2, r, n), 0, 0);
    }
    {  // scatter_to_sequence_parallel: split dim 0, grad all-gathered.
      Tensor x = leaf(per_rank(full, 0, 9));
      Tensor y = tp::scatter_to_sequence_parallel_region(x);
      EXPECT_TENSOR_CLOSE(y, chunk(x, 0, r, n), 0, 0);
      y.backward(per_rank(seq_split, r, 10));
      EXPECT_TENSOR_CLOSE(x.grad(), cat_ranks(seq_split, 0, 10), 0, 0);
    }
    for (bool tp_grad : {true, false}) {  // gather_from_sequence_parallel
      Tensor x = leaf(per_rank(seq_split, r, 11));
      Tensor y = tp::gather_from_sequence_parallel_region(x, tp_grad);
      EXPECT_TENSOR_CLOSE(y, cat_ranks(seq_split, 0, 11), 0, 0);
      if (tp_grad) {  // partial grads of the whole sequence: reduce-scatter
        y.backward(per_rank(full, r, 12));
        EXPECT_TENSOR_CLOSE(x.grad(), chunk(sum_ranks(full, 12), 0, r, n), kTol, 1e-6);
      } else {  // complete grad: split
        Tensor gy = per_rank(full, 0, 13);
        y.backward(gy);
        EXPECT_TENSOR_CLOSE(x.grad(), chunk(gy, 0, r, n), 0, 0);
      }
    }
    {  // reduce_scatter_to_sequence_parallel: reduce-scatter dim 0, grad all-gathered.
      Tensor x = leaf(per_rank(full, r, 14));
      Tensor y = tp::reduce_scatter_to_sequence_parallel_region(x);
      EXPECT_TENSOR_CLOSE(y, chunk(sum_ranks(full, 14), 0, r, n), kTol, 1e-6);
      y.backward(per_rank(seq_split, r, 15));
      EXPECT_TENSOR_CLOSE(x.grad(), cat_ranks(seq_split, 0, 15), 0, 0);
    }
    // Raw last-dim reduce-scatter (used by layers managing their own backward).
    Tensor rs = tp::reduce_scatter_along_dim(per_rank(full, r, 16), -1, g);
    EXPECT_TENSOR_CLOSE(rs, chunk(sum_ranks(full, 16), 2, r, n), kTol, 1e-6);
  });
}

// ColumnParallelLinear -> GeLU -> RowParallelLinear (Megatron's MLP), SP on and off, against
// F::linear on the full weights. Also checks the init: gathered weights == full init, exactly.
TEST(TensorParallelDist, ParallelMlpMatchesUnsharded) {
  const int64_t s = 8, b = 2, h = 6, ffn = 12;
  const nn::InitSpec init1{5, 1, 0.4}, init2{5, 2, 0.3};
  const Tensor w1 = nn::init_normal({ffn, h}, init1), w2 = nn::init_normal({h, ffn}, init2);
  const Tensor b1 = random_tensor({ffn}, 21, DType::F32), b2 = random_tensor({h}, 22, DType::F32);
  const Tensor x_full = random_tensor({s, b, h}, 23, DType::F32);
  const Tensor gy_full = random_tensor({s, b, h}, 24, DType::F32);
  // The unsharded reference.
  Tensor xr = leaf(x_full), w1r = leaf(w1), w2r = leaf(w2), b1r = leaf(b1), b2r = leaf(b2);
  Tensor yr = F::linear(F::gelu(F::linear(xr, w1r, b1r)), w2r, b2r);
  yr.backward(gy_full);

  for (bool sp : {false, true}) {
    for_each_tp([&](int n) {
      SCOPED_TRACE(sp ? "sequence parallel" : "no sequence parallel");
      auto g = ps::get_tensor_model_parallel_group();
      const int r = ps::get_tensor_model_parallel_rank();
      tp::ColumnParallelLinearOptions co;
      co.init = init1;
      co.sequence_parallel = sp;
      tp::ColumnParallelLinear fc1(h, ffn, co);
      tp::RowParallelLinearOptions ro;
      ro.init = init2;
      ro.sequence_parallel = sp;
      tp::RowParallelLinear fc2(ffn, h, ro);
      ASSERT_EQ(fc1.weight()->shape(), (Shape{ffn / n, h}));
      ASSERT_EQ(fc2.weight()->shape(), (Shape{h, ffn / n}));
      EXPECT_EQ(fc2.bias()->sequence_parallel, sp);
      // Layout-invariant init, bit for bit.
      EXPECT_TENSOR_CLOSE(tp::gather_tensor_model_parallel_param(*fc1.weight()), w1, 0, 0);
      EXPECT_TENSOR_CLOSE(tp::gather_tensor_model_parallel_param(*fc2.weight()), w2, 0, 0);
      assign(fc1.bias(), chunk(b1, 0, r, n));
      assign(fc2.bias(), b2);

      Tensor x = leaf(sp ? chunk(x_full, 0, r, n) : x_full);
      auto [h1, h1_bias] = fc1.forward(x);
      EXPECT_FALSE(h1_bias.defined());
      ASSERT_EQ(h1.shape(), (Shape{s, b, ffn / n}));
      auto [y, y_bias] = fc2.forward(F::gelu(h1));
      EXPECT_FALSE(y_bias.defined());
      EXPECT_TENSOR_CLOSE(y, sp ? chunk(yr, 0, r, n) : yr.detach(), kTol, 1e-6);
      y.backward(sp ? chunk(gy_full, 0, r, n) : gy_full);

      EXPECT_TENSOR_CLOSE(x.grad(), sp ? chunk(xr.grad(), 0, r, n) : xr.grad(), kTol, 1e-6);
      EXPECT_TENSOR_CLOSE(tp::gather_like_param(fc1.weight()->grad(), *fc1.weight()), w1r.grad(),
                          kTol, 1e-6);
      EXPECT_TENSOR_CLOSE(tp::gather_like_param(fc1.bias()->grad(), *fc1.bias()), b1r.grad(), kTol,
                          1e-6);
      EXPECT_TENSOR_CLOSE(tp::gather_like_param(fc2.weight()->grad(), *fc2.weight()), w2r.grad(),
                          kTol, 1e-6);
      // Under SP each rank saw a part of the sequence: the bias grad (marked sequence_parallel)
      // is partial until all-reduced over TP, as finalize_model_grads does.
      Tensor gb2 = fc2.bias()->grad().clone();
      if (fc2.bias()->sequence_parallel) g->all_reduce(gb2);
      EXPECT_TENSOR_CLOSE(gb2, b2r.grad(), kTol, 1e-6);
    });
  }
}

// gather_output, skip_bias_add and input_is_parallel=false: the layers alone equal F::linear.
TEST(TensorParallelDist, LinearVariantsMatchUnsharded) {
  const int64_t s = 4, b = 3, in = 8, out = 12;
  const nn::InitSpec init{9, 3, 0.5};
  const Tensor w = nn::init_normal({out, in}, init);
  const Tensor wt = nn::init_normal({in, out}, init);  // for the row layer ([out=in, in=out])
  const Tensor bias = random_tensor({out}, 31, DType::F32);
  const Tensor bias_t = random_tensor({in}, 32, DType::F32);
  const Tensor x_full = random_tensor({s, b, in}, 33, DType::F32);
  const Tensor g_full = random_tensor({s, b, out}, 34, DType::F32);
  for_each_tp([&](int n) {
    const int r = ps::get_tensor_model_parallel_rank();
    {  // Column, gather_output + skip_bias_add.
      tp::ColumnParallelLinearOptions o;
      o.init = init;
      o.gather_output = true;
      o.skip_bias_add = true;
      tp::ColumnParallelLinear layer(in, out, o);
      assign(layer.bias(), chunk(bias, 0, r, n));
      Tensor x = leaf(x_full), xr = leaf(x_full), wr = leaf(w);
      auto [y, yb] = layer.forward(x);
      ASSERT_TRUE(yb.defined());
      EXPECT_EQ(yb.shape(), (Shape{out / n}));
      Tensor yr = F::linear(xr, wr);
      EXPECT_TENSOR_CLOSE(y, yr, kTol, 1e-6);
      y.backward(g_full);
      yr.backward(g_full);
      EXPECT_TENSOR_CLOSE(x.grad(), xr.grad(), kTol, 1e-6);
      EXPECT_TENSOR_CLOSE(tp::gather_like_param(layer.weight()->grad(), *layer.weight()), wr.grad(),
                          kTol, 1e-6);
      EXPECT_FALSE(layer.bias()->grad().defined());  // the caller owns the bias add
    }
    {  // Row, input_is_parallel = false (scatters the full input itself).
      tp::RowParallelLinearOptions o;
      o.init = init;
      o.input_is_parallel = false;
      tp::RowParallelLinear layer(out, in, o);
      assign(layer.bias(), bias_t);
      EXPECT_TENSOR_CLOSE(tp::gather_tensor_model_parallel_param(*layer.weight()), wt, 0, 0);
      Tensor x = leaf(g_full), xr = leaf(g_full), wr = leaf(wt), br = leaf(bias_t);
      auto [y, yb] = layer.forward(x);
      Tensor yr = F::linear(xr, wr, br);
      EXPECT_TENSOR_CLOSE(y, yr, kTol, 1e-6);
      y.backward(x_full);
      yr.backward(x_full);
      EXPECT_TENSOR_CLOSE(x.grad(), xr.grad(), kTol, 1e-6);
      EXPECT_TENSOR_CLOSE(tp::gather_like_param(layer.weight()->grad(), *layer.weight()), wr.grad(),
                          kTol, 1e-6);
      EXPECT_TENSOR_CLOSE(layer.bias()->grad(), br.grad(), kTol, 1e-6);
    }
  });
}

// A padded vocabulary (50 real ids, padded to 56), lookups from every shard, all-reduce or
// (SP) reduce-scatter into [s/tp, b, h].
TEST(TensorParallelDist, VocabParallelEmbeddingMatchesUnsharded) {
  const int64_t vocab = tp::vocab_size_with_padding(50, 2, 4), h = 5, b = 2, s = 8;
  ASSERT_EQ(vocab, 56);
  const nn::InitSpec init{11, 5, 1.0};
  const Tensor w = nn::init_normal({vocab, h}, init);
  std::vector<int64_t> idv;
  for (int64_t i = 0; i < b * s; ++i) idv.push_back((i * 37 + 3) % 50);
  idv[0] = 49;
  idv[1] = 0;
  const Tensor ids = from_vector<int64_t>(idv, {b, s});
  Tensor wr = leaf(w);
  Tensor yr = F::embedding(ids, wr);  // [b, s, h]
  const Tensor gy = random_tensor({b, s, h}, 41, DType::F32);
  yr.backward(gy);
  const Tensor yr_sbh = yr.detach().transpose(0, 1).contiguous();
  const Tensor gy_sbh = gy.transpose(0, 1).contiguous();

  for (bool rs : {false, true}) {
    for_each_tp([&](int n) {
      SCOPED_TRACE(rs ? "reduce_scatter_embeddings" : "all-reduce");
      const int r = ps::get_tensor_model_parallel_rank();
      tp::VocabParallelEmbeddingOptions o;
      o.init = init;
      o.reduce_scatter_embeddings = rs;
      tp::VocabParallelEmbedding emb(vocab, h, o);
      EXPECT_EQ(emb.vocab_start_index(), r * vocab / n);
      EXPECT_EQ(emb.num_embeddings_per_partition(), vocab / n);
      EXPECT_TENSOR_CLOSE(tp::gather_tensor_model_parallel_param(*emb.weight()), w, 0, 0);
      Tensor y = emb.forward(ids);
      if (rs) {
        ASSERT_EQ(y.shape(), (Shape{s / n, b, h}));
        // Exactly one shard contributes each row: the sums add zeros only, so exact.
        EXPECT_TENSOR_CLOSE(y, chunk(yr_sbh, 0, r, n), 0, 0);
        y.backward(chunk(gy_sbh, 0, r, n));
      } else {
        EXPECT_TENSOR_CLOSE(y, yr, 0, 0);
        y.backward(gy);
      }
      EXPECT_TENSOR_CLOSE(tp::gather_like_param(emb.weight()->grad(), *emb.weight()), wr.grad(), 0,
                          0);
    });
  }
}

// Logits split along the vocabulary: the loss and the gathered gradient equal
// F::cross_entropy on the full logits; with label smoothing (no full-vocab op to compare
// with), every tp gives the tp = 1 result.
TEST(TensorParallelDist, VocabParallelCrossEntropyMatchesUnsharded) {
  const int64_t s = 5, b = 3, vocab = 56;
  const Tensor logits = random_tensor({s, b, vocab}, 51, DType::F32, 6.0);
  std::vector<int64_t> tv;
  for (int64_t i = 0; i < s * b; ++i) tv.push_back((i * 13 + 5) % vocab);
  tv[0] = 0;
  tv[1] = vocab - 1;
  tv[2] = vocab / 2 - 1;
  tv[3] = vocab / 2;
  const Tensor target = from_vector<int64_t>(tv, {s, b});
  const Tensor mask = random_tensor({s, b}, 52, DType::F32);
  const Tensor gl = random_tensor({s, b}, 53, DType::F32);
  for (double ls : {0.0, 0.1}) {
    Tensor lr = leaf(logits);
    Tensor loss_r = ls == 0.0 ? F::cross_entropy(lr, target, mask)
                              : tp::vocab_parallel_cross_entropy(lr, target, ls, mask,
                                                                 comm::make_local_group(0));
    loss_r.backward(gl);
    for_each_tp([&](int n) {
      SCOPED_TRACE("label_smoothing " + std::to_string(ls));
      const int r = ps::get_tensor_model_parallel_rank();
      Tensor x = leaf(chunk(logits, 2, r, n));
      Tensor loss = tp::vocab_parallel_cross_entropy(x, target, ls, mask);
      EXPECT_TENSOR_CLOSE(loss, loss_r, kTol, 1e-6);
      loss.backward(gl);
      EXPECT_TENSOR_CLOSE(tp::gather_shards(x.grad(), 2, 1), lr.grad(), kTol, 1e-6);
    });
  }
}

// Stride-2 shards (a fused [gate; up] weight): every rank holds its slice of both halves, and
// gathering restores the full init exactly, along dim 0 and dim 1.
TEST(TensorParallelDist, StridedShardsGatherToFullInit) {
  const nn::InitSpec init{3, 8, 1.0};
  for_each_tp([&](int n) {
    const int r = ps::get_tensor_model_parallel_rank();
    for (int dim : {0, 1}) {
      const Shape gs = dim == 0 ? Shape{16, 3} : Shape{5, 24};
      const Tensor full = nn::init_normal(gs, init);
      Tensor local = tp::init_normal_shard(gs, dim, 2, r, n, init);
      EXPECT_TENSOR_CLOSE(tp::gather_shards(local, dim, 2), full, 0, 0);
      // Rank r's first half is chunk r of the first half (the gate slice).
      const int64_t c = gs[dim] / (2 * n);
      EXPECT_TENSOR_CLOSE(local.narrow(dim, 0, c), full.narrow(dim, r * c, c), 0, 0);
      EXPECT_TENSOR_CLOSE(local.narrow(dim, c, c), full.narrow(dim, (n + r) * c, c), 0, 0);
    }
    tp::ColumnParallelLinearOptions o;
    o.init = init;
    o.partition_stride = 2;
    tp::ColumnParallelLinear fc1(3, 16, o);
    EXPECT_EQ(fc1.weight()->partition_stride, 2);
    EXPECT_TENSOR_CLOSE(tp::gather_tensor_model_parallel_param(*fc1.weight()),
                        nn::init_normal({16, 3}, init), 0, 0);
  });
}

// Sequence-parallel ColumnParallelLinear whose input needs no gradient (the weight gradient
// still needs the re-gathered input) and one whose weight needs none.
TEST(TensorParallelDist, SequenceParallelColumnPartialGrads) {
  const int64_t s = 8, b = 2, in = 4, out = 8;
  const nn::InitSpec init{4, 4, 0.5};
  const Tensor x_full = random_tensor({s, b, in}, 61, DType::F32);
  const Tensor gy = random_tensor({s, b, out}, 62, DType::F32);
  Tensor xr = leaf(x_full), wr = leaf(nn::init_normal({out, in}, init));
  F::linear(xr, wr).backward(gy);
  for_each_tp([&](int n) {
    const int r = ps::get_tensor_model_parallel_rank();
    tp::ColumnParallelLinearOptions o;
    o.init = init;
    o.bias = false;
    o.sequence_parallel = true;
    tp::ColumnParallelLinear layer(in, out, o);
    auto y = layer.forward(chunk(x_full, 0, r, n)).output;
    y.backward(chunk(gy, 2, r, n));
    EXPECT_TENSOR_CLOSE(tp::gather_like_param(layer.weight()->grad(), *layer.weight()), wr.grad(),
                        kTol, 1e-6);
    Tensor x = leaf(chunk(x_full, 0, r, n));
    Tensor w = layer.weight()->detach();
    auto y2 = layer.forward(x, w).output;
    y2.backward(chunk(gy, 2, r, n));
    EXPECT_TENSOR_CLOSE(x.grad(), chunk(xr.grad(), 0, r, n), kTol, 1e-6);
  });
}

// Sizes that do not split fail on every rank, before any collective, naming the numbers.
TEST(TensorParallelDist, BadSizesNameTheNumbers) {
  if (comm::get_world_size() != 4) GTEST_SKIP() << "needs 4 ranks (tp 4)";
  ps::initialize_model_parallel(4, 1);
  std::string msg = error_of([] { tp::ColumnParallelLinear(8, 10); });
  EXPECT_NE(msg.find("output_size 10"), std::string::npos) << msg;
  EXPECT_NE(msg.find("size 4"), std::string::npos) << msg;
  msg = error_of([] { tp::RowParallelLinear(6, 8); });
  EXPECT_NE(msg.find("input_size 6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("size 4"), std::string::npos) << msg;
  msg = error_of([] { tp::VocabParallelEmbedding(50, 8); });
  EXPECT_NE(msg.find("num_embeddings 50"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab_size_with_padding"), std::string::npos) << msg;
  EXPECT_NE(msg.find("52"), std::string::npos) << msg;  // the padded size it suggests
  Tensor x = random_tensor({6, 2, 4}, 1, DType::F32);
  msg = error_of([&] { tp::reduce_scatter_to_sequence_parallel_region(x); });
  EXPECT_NE(msg.find("6 is not divisible by 4"), std::string::npos) << msg;
  Tensor x2 = random_tensor({4, 2, 6}, 1, DType::F32);
  msg = error_of([&] { tp::scatter_to_tensor_model_parallel_region(x2); });
  EXPECT_NE(msg.find("[4, 2, 6]"), std::string::npos) << msg;
  // An id beyond the padded vocabulary is an error, not a silent zero row.
  tp::VocabParallelEmbedding emb(52, 4);
  msg = error_of([&] { emb.forward(from_vector<int64_t>({3, 52})); });
  EXPECT_NE(msg.find("id 52"), std::string::npos) << msg;
  ps::destroy_model_parallel();
}

}  // namespace
}  // namespace mcore::testing
