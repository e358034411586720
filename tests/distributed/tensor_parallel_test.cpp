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
    auto sum_over_ranks = [&](const Shape& s, uint64_t salt) {
      Tensor acc = zeros(s, DType::F32);
      for (int q = 0; q < n; ++q) acc = ops_add(acc, per_rank(s, q, salt));
      return acc;
    };
    (void)sum_over_ranks;
    auto cat_ranks = [&](const Shape& s, int64_t dim, uint64_t salt) {
      std::vector<Tensor> parts;
      for (int q = 0; q < n; ++q) parts.push_back(per_rank(s, q, salt));
      return F::cat(parts, dim);
    };
    auto sum_ranks = [&](const Shape& s, uint64_t salt) {
      std::vector<Tensor> parts;
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
