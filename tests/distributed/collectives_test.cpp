// Every collective of the world group on the launched number of ranks, for fp32, bf16 and
// int64, blocking and async. Expected values are computed on each rank from the fill formula
// (dist_util.h), never from another rank's data; all comparisons are exact because the
// formulas keep every partial sum exact in the dtype.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "mcore/comm/distributed.h"
#include "mcore/comm/mpi_backend.h"
#include "tests/distributed/dist_util.h"

namespace mcore::testing {
namespace {

using comm::ReduceOp;

const DType kDtypes[] = {DType::F32, DType::BF16, DType::I64};
const Shape kShapes[] = {{1}, {7}, {3, 5}, {1000}, {33, 129}};

double reduce_expected(DType d, ReduceOp op, int n, int64_t i, int salt = 0) {
  double acc = dist_value(d, 0, i, salt);
  for (int r = 1; r < n; ++r) {
    const double v = dist_value(d, r, i, salt);
    if (op == ReduceOp::kSum || op == ReduceOp::kAvg) acc += v;
    if (op == ReduceOp::kMax) acc = std::max(acc, v);
    if (op == ReduceOp::kMin) acc = std::min(acc, v);
  }
  if (op == ReduceOp::kAvg) {
    // The backend divides in the compute type: fp32 for fp32 and bf16.
    acc = static_cast<double>(static_cast<float>(acc) / static_cast<float>(n));
  }
  return acc;
}

class Collectives : public ::testing::Test {
 protected:
  comm::ProcessGroupPtr g = comm::world();
  int rank = g->rank();
  int n = g->size();
};

TEST_F(Collectives, WorldMatchesLauncher) {
  EXPECT_EQ(g->size(), comm::get_world_size());
  EXPECT_EQ(g->rank(), comm::get_rank());
  ASSERT_EQ(static_cast<int>(g->global_ranks().size()), n);
  for (int r = 0; r < n; ++r) EXPECT_EQ(g->global_ranks()[r], r);
  EXPECT_EQ(g->backend_name(), "mpi");
  EXPECT_EQ(comm::backend_name(), "mpi");
  EXPECT_NE(comm::launcher(), comm::Launcher::kNone);
  EXPECT_GE(comm::get_local_rank(), 0);
  EXPECT_LT(comm::get_local_rank(), comm::get_local_world_size());
  EXPECT_EQ(g->name(), "world");
}

TEST_F(Collectives, AllReduceEveryOpDtypeShape) {
  for (DType d : kDtypes) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg}) {
      if (op == ReduceOp::kAvg && d == DType::I64) continue;
      for (const Shape& shape : kShapes) {
        SCOPED_TRACE(dtype_trace(d) + " op " + comm::reduce_op_name(op) + " shape " +
                     shape_str(shape));
        Tensor t = dist_tensor(shape, d, rank);
        g->all_reduce(t, op);
        Tensor expected =
            formula_tensor(shape, d, [&](int64_t i) { return reduce_expected(d, op, n, i); });
        EXPECT_TENSOR_CLOSE(t, expected, 0, 0);
      }
    }
  }
}

TEST_F(Collectives, AllReduceAsyncManyInFlight) {
  // Several ops in flight at once, waited in reverse order.
  for (DType d : kDtypes) {
    SCOPED_TRACE(dtype_trace(d));
    std::vector<Tensor> ts;
    std::vector<comm::WorkPtr> works;
    for (int k = 0; k < 4; ++k) {
      ts.push_back(dist_tensor({257 + k}, d, rank, k));
      works.push_back(g->all_reduce_async(ts.back(), k % 2 ? ReduceOp::kMax : ReduceOp::kSum));
    }
    for (int k = 3; k >= 0; --k) works[k]->wait();
    for (int k = 0; k < 4; ++k) {
      EXPECT_TRUE(works[k]->is_completed());
      ReduceOp op = k % 2 ? ReduceOp::kMax : ReduceOp::kSum;
      Tensor expected =
          formula_tensor({257 + k}, d, [&](int64_t i) { return reduce_expected(d, op, n, i, k); });
      EXPECT_TENSOR_CLOSE(ts[k], expected, 0, 0);
    }
  }
}

TEST_F(Collectives, AllReduceIsCompletedPollingFinishes) {
  Tensor t = dist_tensor({100}, DType::F32, rank);
  auto w = g->all_reduce_async(t, ReduceOp::kAvg);
  while (!w->is_completed()) {
  }
  w->wait();  // a second completion is a no-op
  Tensor expected = formula_tensor({100}, DType::F32, [&](int64_t i) {
    return reduce_expected(DType::F32, ReduceOp::kAvg, n, i);
  });
  EXPECT_TENSOR_CLOSE(t, expected, 0, 0);
}

TEST_F(Collectives, DroppedWorkHandleStillCompletes) {
  // Dropping the handle without wait() must not free buffers MPI still writes: the destructor
  // waits (bounded by the timeout).
  Tensor t = dist_tensor({4096}, DType::F32, rank);
  Tensor base = dist_tensor({8, 3}, DType::F32, rank);
  Tensor view = base.transpose(0, 1);  // staged through a copy that the Work owns
  g->all_reduce_async(t);
  g->all_reduce_async(view, ReduceOp::kMax);
  Tensor expected = formula_tensor({4096}, DType::F32, [&](int64_t i) {
    return reduce_expected(DType::F32, ReduceOp::kSum, n, i);
  });
  EXPECT_TENSOR_CLOSE(t, expected, 0, 0);
  Tensor expected_max = formula_tensor({8, 3}, DType::F32, [&](int64_t i) {
    return reduce_expected(DType::F32, ReduceOp::kMax, n, i);
  });
  EXPECT_TENSOR_CLOSE(base, expected_max, 0, 0);
}

TEST_F(Collectives, AllReduceNonContiguousView) {
  // A transposed view: reduced through a staging copy and written back through the strides.
  Tensor base = dist_tensor({6, 4}, DType::F32, rank);
  Tensor view = base.transpose(0, 1);
  g->all_reduce(view);
  Tensor expected = formula_tensor({6, 4}, DType::F32, [&](int64_t i) {
    return reduce_expected(DType::F32, ReduceOp::kSum, n, i);
  });
  EXPECT_TENSOR_CLOSE(base, expected, 0, 0);
}

TEST_F(Collectives, AllReduceBf16RandomValuesWithinPairwiseRounding) {
  // Arbitrary bf16 values: each of the n - 1 pairwise sums is computed in fp32 and rounded once
  // to bf16, an error of at most half a bf16 ulp (2^-9 relative) of a partial sum, and every
  // partial sum is at most sum_r |x_r|. So |result - exact| <= (n - 1) 2^-9 sum_r |x_r|; the
  // test allows twice that.
  const int64_t m = 4099;
  auto values = [](int r) {
    return random_tensor({4099}, 100 + r, DType::F64, 1.0).to(DType::BF16);
  };
  std::vector<double> exact(m, 0.0), abs_sum(m, 0.0);
  for (int r = 0; r < n; ++r) {
    Tensor v = values(r).to(DType::F64);
    for (int64_t i = 0; i < m; ++i) {
      exact[i] += v.data<double>()[i];
      abs_sum[i] += std::abs(v.data<double>()[i]);
    }
  }
  Tensor t = values(rank);
  g->all_reduce(t);
  Tensor got = t.to(DType::F64);
  for (int64_t i = 0; i < m; ++i) {
    const double bound = std::ldexp(abs_sum[i], -8) * std::max(1, n - 1);
    ASSERT_LE(std::abs(got.data<double>()[i] - exact[i]), bound) << "element " << i;
  }
}

TEST_F(Collectives, AllReduceFp32ArbitraryValuesCloseToExact) {
  // Arbitrary fp32 values: the sum's order is MPI's, so compare to the float64 sum with a
  // tolerance of n fp32 ulps of the absolute sum.
  const int64_t m = 5003;
  Tensor t = random_tensor({m}, 7 + rank, DType::F64, 3.0).to(DType::F32);
  Tensor exact = zeros({m}, DType::F64);
  for (int r = 0; r < n; ++r) {
    Tensor v = random_tensor({m}, 7 + r, DType::F64, 3.0).to(DType::F32).to(DType::F64);
    for (int64_t i = 0; i < m; ++i) exact.data<double>()[i] += v.data<double>()[i];
  }
  g->all_reduce(t);
  EXPECT_TENSOR_CLOSE(t, exact, 1e-6, 3.0 * n * 1.2e-7);
}

TEST_F(Collectives, AllGatherIntoTensorSyncAndAsync) {
  for (DType d : kDtypes) {
    for (bool async : {false, true}) {
      SCOPED_TRACE(dtype_trace(d) + (async ? " async" : " sync"));
      Tensor in = dist_tensor({3, 5}, d, rank);
      Tensor out = zeros({3 * n, 5}, d);
      if (async) {
        auto w = g->all_gather_async(out, in);
        w->wait();
      } else {
        g->all_gather(out, in);
      }
      Tensor expected = formula_tensor({3 * n, 5}, d, [&](int64_t i) {
        return dist_value(d, static_cast<int>(i / 15), i % 15);
      });
      EXPECT_TENSOR_CLOSE(out, expected, 0, 0);
    }
  }
}

TEST_F(Collectives, AllGatherStackedAndListAndInPlace) {
  Tensor in = dist_tensor({4}, DType::F32, rank);
  Tensor stacked = zeros({n, 4}, DType::F32);
  g->all_gather(stacked, in);
  std::vector<Tensor> list;
  g->all_gather(list, in);
  ASSERT_EQ(static_cast<int>(list.size()), n);
  for (int r = 0; r < n; ++r) {
    Tensor expected = dist_tensor({4}, DType::F32, r);
    EXPECT_TENSOR_CLOSE(stacked.select(0, r), expected, 0, 0);
    EXPECT_TENSOR_CLOSE(list[r], expected, 0, 0);
  }
  // In place, as Megatron's distributed optimizer gathers parameter shards: the input is this
  // rank's chunk of the output buffer.
  Tensor buffer = zeros({n * 6}, DType::BF16);
  Tensor shard = buffer.narrow(0, rank * 6, 6);
  shard.copy_(dist_tensor({6}, DType::BF16, rank));
  g->all_gather(buffer, shard);
  Tensor expected = formula_tensor({n * 6}, DType::BF16, [&](int64_t i) {
    return dist_value(DType::BF16, static_cast<int>(i / 6), i % 6);
  });
  EXPECT_TENSOR_CLOSE(buffer, expected, 0, 0);
}

TEST_F(Collectives, ReduceScatterEveryOpSyncAndAsync) {
  for (DType d : kDtypes) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg}) {
      if (op == ReduceOp::kAvg && d == DType::I64) continue;
      for (bool async : {false, true}) {
        SCOPED_TRACE(dtype_trace(d) + " op " + comm::reduce_op_name(op) + (async ? " async" : ""));
        const int64_t chunk = 37;
        Tensor in = dist_tensor({n * chunk}, d, rank);
        Tensor out = zeros({chunk}, d);
        if (async) {
          g->reduce_scatter_async(out, in, op)->wait();
        } else {
          g->reduce_scatter(out, in, op);
        }
        Tensor expected = formula_tensor(
            {chunk}, d, [&](int64_t i) { return reduce_expected(d, op, n, rank * chunk + i); });
        EXPECT_TENSOR_CLOSE(out, expected, 0, 0);
      }
    }
  }
}

TEST_F(Collectives, ReduceScatterIntoOwnChunkOfInput) {
  // Megatron's distributed optimizer reduces the grad buffer into this rank's shard of it.
  const int64_t chunk = 9;
  Tensor buffer = dist_tensor({n * chunk, 2}, DType::F32, rank);
  Tensor shard = buffer.narrow(0, rank * chunk, chunk);
  g->reduce_scatter(shard, buffer);
  Tensor expected = formula_tensor({chunk, 2}, DType::F32, [&](int64_t i) {
    return reduce_expected(DType::F32, ReduceOp::kSum, n, rank * chunk * 2 + i);
  });
  EXPECT_TENSOR_CLOSE(shard, expected, 0, 0);
}

TEST_F(Collectives, BroadcastFromEveryRoot) {
  for (DType d : kDtypes) {
    for (int root = 0; root < n; ++root) {
      SCOPED_TRACE(dtype_trace(d) + " root " + std::to_string(root));
      Tensor t = dist_tensor({11, 3}, d, rank, 1);
      if (root % 2) {
        g->broadcast_async(t, root)->wait();
      } else {
        g->broadcast(t, root);
      }
      EXPECT_TENSOR_CLOSE(t, dist_tensor({11, 3}, d, root, 1), 0, 0);
    }
  }
}

TEST_F(Collectives, BroadcastNonContiguous) {
  Tensor base = dist_tensor({4, 6}, DType::F32, rank);
  Tensor view = base.narrow(1, 1, 3);
  g->broadcast(view, n - 1);
  Tensor expected_view = dist_tensor({4, 6}, DType::F32, n - 1).narrow(1, 1, 3);
  EXPECT_TENSOR_CLOSE(view, expected_view, 0, 0);
  // Columns outside the view are untouched.
  EXPECT_TENSOR_CLOSE(base.narrow(1, 0, 1), dist_tensor({4, 6}, DType::F32, rank).narrow(1, 0, 1),
                      0, 0);
}

// Row j of the block rank `src` sends to rank `dst` in all_to_all: one recognizable value per
// (src, dst, j, column).
int64_t a2a_value(int src, int dst, int64_t j, int64_t c) {
  return src * 1000 + dst * 100 + j * 4 + c;
}

TEST_F(Collectives, AllToAllSingleEqualSplits) {
  for (DType d : {DType::F32, DType::I64}) {
    for (bool async : {false, true}) {
      SCOPED_TRACE(dtype_trace(d) + (async ? " async" : ""));
      const int64_t rows = 2, cols = 3;
      Tensor in = formula_tensor({n * rows, cols}, d, [&](int64_t i) {
        const int64_t row = i / cols;
        return a2a_value(rank, static_cast<int>(row / rows), row % rows, i % cols);
      });
      Tensor out = zeros({n * rows, cols}, d);
      if (async) {
        g->all_to_all_single_async(out, in)->wait();
      } else {
        g->all_to_all_single(out, in);
      }
      Tensor expected = formula_tensor({n * rows, cols}, d, [&](int64_t i) {
        const int64_t row = i / cols;
        return a2a_value(static_cast<int>(row / rows), rank, row % rows, i % cols);
      });
      EXPECT_TENSOR_CLOSE(out, expected, 0, 0);
    }
  }
}

TEST_F(Collectives, AllToAllSingleUnevenSplitsWithEmptyParts) {
  // Rank s sends (s + d) % 3 rows to rank d: some blocks are empty, every rank differs (MoE's
  // token dispatch).
  auto rows = [](int s, int d) { return static_cast<int64_t>((s + d) % 3); };
  const int64_t cols = 4;
  for (DType d : kDtypes) {
    SCOPED_TRACE(dtype_trace(d));
    std::vector<int64_t> in_splits, out_splits;
    for (int p = 0; p < n; ++p) {
      in_splits.push_back(rows(rank, p));
      out_splits.push_back(rows(p, rank));
    }
    int64_t in_rows = 0, out_rows = 0;
    for (int p = 0; p < n; ++p) in_rows += in_splits[p], out_rows += out_splits[p];
    std::vector<double> in_vals, out_vals;
    for (int p = 0; p < n; ++p)
      for (int64_t j = 0; j < rows(rank, p); ++j)
        for (int64_t c = 0; c < cols; ++c)
          in_vals.push_back(static_cast<double>(a2a_value(rank, p, j, c) % 200 - 50));
    for (int p = 0; p < n; ++p)
      for (int64_t j = 0; j < rows(p, rank); ++j)
        for (int64_t c = 0; c < cols; ++c)
          out_vals.push_back(static_cast<double>(a2a_value(p, rank, j, c) % 200 - 50));
    // % 200 - 50 keeps values small integers, exact in bf16.
    Tensor in = formula_tensor({in_rows, cols}, d, [&](int64_t i) { return in_vals[i]; });
    Tensor out = full({out_rows, cols}, -99.0, d);
    g->all_to_all_single_async(out, in, out_splits, in_splits)->wait();
    Tensor expected = formula_tensor({out_rows, cols}, d, [&](int64_t i) { return out_vals[i]; });
    EXPECT_TENSOR_CLOSE(out, expected, 0, 0);
  }
}

TEST_F(Collectives, BarrierAndSequenceNumbers) {
  auto* mpi_group = dynamic_cast<comm::MpiProcessGroup*>(g.get());
  ASSERT_NE(mpi_group, nullptr);
  const uint64_t before = mpi_group->sequence();
  g->barrier();
  auto w = g->barrier_async();
  w->wait();
  Tensor t = ones({3}, DType::F32);
  g->all_reduce(t);
  EXPECT_EQ(mpi_group->sequence(), before + 3);
  // Every rank counted the same collectives.
  Tensor seq = from_vector<int64_t>({static_cast<int64_t>(mpi_group->sequence())});
  Tensor mx = seq.clone(), mn = seq.clone();
  g->all_reduce(mx, ReduceOp::kMax);
  g->all_reduce(mn, ReduceOp::kMin);
  EXPECT_EQ(mx.item<int64_t>(), mn.item<int64_t>());
}

TEST_F(Collectives, Float64Float16Uint8Int32AllReduce) {
  // The remaining dtypes once each (sum of small integers: exact everywhere).
  for (DType d : {DType::F64, DType::F16, DType::U8, DType::I32}) {
    SCOPED_TRACE(dtype_trace(d));
    Tensor t = formula_tensor({50}, d, [&](int64_t i) { return (rank + i) % 4; });
    g->all_reduce(t);
    Tensor expected = formula_tensor({50}, d, [&](int64_t i) {
      double s = 0;
      for (int r = 0; r < n; ++r) s += (r + i) % 4;
      return s;
    });
    EXPECT_TENSOR_CLOSE(t, expected, 0, 0);
  }
}

// Bad calls fail on every rank before anything is sent, so the ranks stay in step.
TEST_F(Collectives, BadCallsRaiseClearErrors) {
  Tensor in = zeros({3, 5}, DType::F32);
  Tensor wrong = zeros({3 * n + 1, 5}, DType::F32);
  try {
    g->all_gather(wrong, in);
    FAIL() << "expected mcore::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(shape_str(wrong.shape())), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(shape_str(in.shape())), std::string::npos) << e.what();
  }
  Tensor half = zeros({3 * n, 5}, DType::BF16);
  EXPECT_THROW(g->all_gather(half, in), Error);
  Tensor out = zeros({4}, DType::F32);
  EXPECT_THROW(g->reduce_scatter(out, zeros({4 * n + 1}, DType::F32)), Error);
  Tensor ints = zeros({4}, DType::I64);
  try {
    g->all_reduce(ints, ReduceOp::kAvg);
    FAIL() << "expected mcore::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int64"), std::string::npos) << e.what();
  }
  Tensor fp8 = zeros({4}, DType::F8E4M3);
  EXPECT_THROW(g->all_reduce(fp8), Error);
  EXPECT_THROW(g->broadcast(out, n), Error);
  EXPECT_THROW(g->send(out, n), Error);
  EXPECT_THROW(g->recv(out, -1), Error);
  EXPECT_THROW(g->send(out, 0, -5), Error);
  Tensor a2a_out = zeros({n, 2}, DType::F32);
  std::vector<int64_t> bad(n + 1, 0);
  EXPECT_THROW(g->all_to_all_single(a2a_out, zeros({n, 2}, DType::F32), bad, bad), Error);
  // The group still works afterwards.
  Tensor t = ones({2}, DType::F32);
  g->all_reduce(t);
  EXPECT_EQ(t.to(DType::F64).data<double>()[0], n);
}

TEST_F(Collectives, TimeoutComesFromEnvironment) {
  // CTest sets MCORE_DISTRIBUTED_TIMEOUT_SECONDS for the distributed tests.
  const char* env = std::getenv("MCORE_DISTRIBUTED_TIMEOUT_SECONDS");
  if (env) {
    EXPECT_EQ(comm::get_timeout().count(), std::atoll(env));
  }
  const auto saved = comm::get_timeout();
  comm::set_timeout(std::chrono::seconds(42));
  EXPECT_EQ(comm::get_timeout().count(), 42);
  comm::set_timeout(saved);
  EXPECT_THROW(comm::set_timeout(std::chrono::seconds(0)), Error);
}

}  // namespace
}  // namespace mcore::testing
