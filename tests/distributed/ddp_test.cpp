// DistributedDataParallel under MPI (1, 2 and 4 ranks). For every data-parallel size that
// divides the world (DP in {1, 2, 4}; the other ranks form tensor-parallel replicas of the same
// small MLP), each DP rank takes its slice of one global batch, and the averaged main_grads must
// equal the gradients one process computes on the whole batch - with overlap on and off, with
// several buckets, with gradient accumulation over microbatches under no_sync, and with the
// distributed optimizer's reduce-scatter (local shard only). Tolerances: fp64 1e-12 relative;
// fp32 rtol 1e-6 plus atol 1e-6 x max|grad| - only the order of the float sums differs (a
// rank's partial batch sum, then the cross-rank sum), and elements that nearly cancel need the
// absolute term. Also: buckets are launched while backward still runs, and finalize_model_grads
// all-reduces sequence-parallel grads over TP and the tied embedding over the embedding group.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "mcore/comm/distributed.h"
#include "mcore/distributed/distributed_data_parallel.h"
#include "mcore/distributed/finalize_model_grads.h"
#include "mcore/ops/reduction.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/distributed_unit/ddp_test_model.h"

namespace mcore::testing {
namespace {

namespace ps = parallel_state;
using distributed::DistributedDataParallel;
using distributed::DistributedDataParallelConfig;

constexpr int64_t kIn = 6, kHidden = 10, kOut = 3, kBatch = 8;

template <class Body>
void for_each_dp(Body&& body) {
  const int world = comm::get_world_size();
  for (int dp : {1, 2, 4}) {
    if (world % dp != 0) continue;
    ps::initialize_model_parallel(world / dp, 1);
    {
      SCOPED_TRACE("dp " + std::to_string(dp) + " of world " + std::to_string(world));
      ASSERT_EQ(ps::get_data_parallel_world_size(), dp);
      body(dp);
    }
    ps::destroy_model_parallel();
  }
}

// Full-batch gradients from plain autograd in one process.
std::vector<Tensor> reference_grads(const Tensor& x, const Tensor& t, DType dtype) {
  DdpTestMlp ref(kIn, kHidden, kOut, dtype);
  ref.loss(x, t).backward();
  std::vector<Tensor> g;
  for (const auto& p : ref.parameters()) g.push_back(p->grad().clone());
  return g;
}

void expect_close(const Tensor& actual, const Tensor& expected, DType dtype) {
  if (dtype == DType::F64) {
    EXPECT_TENSOR_CLOSE(actual, expected, 1e-12, 1e-14);
  } else {
    const double scale = std::sqrt(ops::multi_tensor_l2norm_squared({expected}) /
                                   static_cast<double>(expected.numel()));
    EXPECT_TENSOR_CLOSE(actual, expected, 1e-6, 1e-6 * (scale + 1e-30) * 4);
  }
}

struct Case {
  DType dtype;
  bool overlap;
  std::optional<int64_t> bucket;
  int microbatches;
  std::string name() const {
    return std::string(dtype_name(dtype)) + (overlap ? " overlap" : " no-overlap") + " bucket " +
           (bucket ? std::to_string(*bucket) : "none") + " microbatches " +
           std::to_string(microbatches);
  }
};

// Trains `steps` steps of zero-grad/forward/backward/finalize on this rank's slice and checks
// main_grads after each.
void run_case(const Case& c, int dp) {
  SCOPED_TRACE(c.name());
  const Tensor x = ddp_test_inputs(kBatch, kIn, 1, c.dtype);
  const Tensor t = ddp_test_inputs(kBatch, kOut, 2, c.dtype);
  const auto expected = reference_grads(x, t, c.dtype);

  auto model = std::make_shared<DdpTestMlp>(kIn, kHidden, kOut, c.dtype);
  DistributedDataParallelConfig cfg;
  cfg.overlap_grad_reduce = c.overlap;
  cfg.bucket_size = c.bucket;
  DistributedDataParallel ddp(model, cfg);
  if (c.overlap && c.bucket) {
    EXPECT_GE(ddp.bucket_groups().size(), 3u);
  }
  const int r = ps::get_data_parallel_rank();
  const int64_t local = kBatch / dp, mb = local / c.microbatches;
  for (int step = 0; step < 2; ++step) {
    ddp.zero_grad_buffer();
    for (int m = 0; m < c.microbatches; ++m) {
      const int64_t row = r * local + m * mb;
      // Megatron divides each microbatch's loss by the number of microbatches.
      auto run = [&] {
        F::scale(model->loss(x.narrow(0, row, mb), t.narrow(0, row, mb)), 1.0 / c.microbatches)
            .backward();
      };
      if (m + 1 < c.microbatches) {
        auto guard = ddp.no_sync();
        run();
      } else {
        run();
      }
    }
    distributed::finalize_model_grads({&ddp});
    const auto params = model->parameters();
    for (size_t k = 0; k < params.size(); ++k) {
      SCOPED_TRACE("step " + std::to_string(step) + " param " + std::to_string(k));
      EXPECT_FALSE(params[k]->grad().defined());
      expect_close(params[k]->main_grad, expected[k], c.dtype);
    }
  }
}

TEST(DdpDist, AveragedGradsEqualSingleProcessFullBatch) {
  for_each_dp([](int dp) {
    for (DType dtype : {DType::F32, DType::F64})
      for (bool overlap : {false, true})
        for (std::optional<int64_t> bucket : {std::optional<int64_t>{}, std::optional<int64_t>{40}})
          run_case({dtype, overlap, bucket, 1}, dp);
  });
}

TEST(DdpDist, GradientAccumulationWithNoSync) {
  for_each_dp([](int dp) {
    for (bool overlap : {false, true}) run_case({DType::F32, overlap, 40, 2}, dp);
  });
}

TEST(DdpDist, BucketsLaunchBeforeBackwardEnds) {
  for_each_dp([](int dp) {
    const Tensor x = ddp_test_inputs(kBatch, kIn, 1, DType::F32);
    const Tensor t = ddp_test_inputs(kBatch, kOut, 2, DType::F32);
    auto model = std::make_shared<DdpTestMlp>(kIn, kHidden, kOut);
    DistributedDataParallelConfig cfg;
    cfg.overlap_grad_reduce = true;
    cfg.bucket_size = 1;  // one bucket per parameter
    DistributedDataParallel ddp(model, cfg);
    ASSERT_EQ(ddp.bucket_groups().size(), 6u);
    // Record, in the first layer's weight hook (the last layer backward reaches), how many of
    // the later layers' buckets were already launched.
    std::vector<int> seen;
    model->layers[0]->weight()->register_post_accumulate_grad_hook([&](Tensor&) {
      int n = 0;
      for (int l : {1, 2})
        for (const auto& p : {model->layers[l]->weight(), model->layers[l]->bias()})
          n += ddp.bucket_group_of(p.get())->grad_sync_launched() ? 1 : 0;
      seen.push_back(n);
    });
    const int r = ps::get_data_parallel_rank();
    const int64_t local = kBatch / dp;
    for (int step = 0; step < 3; ++step) {
      ddp.zero_grad_buffer();
      model->loss(x.narrow(0, r * local, local), t.narrow(0, r * local, local)).backward();
      ddp.finish_grad_sync();
    }
    // Step 0 only counts (Megatron); from step 1 on the 4 later buckets are in flight or done.
    EXPECT_EQ(seen, (std::vector<int>{0, 4, 4}));
    const auto expected = reference_grads(x, t, DType::F32);
    expect_close(model->layers[2]->weight()->main_grad, expected[4], DType::F32);
  });
}

TEST(DdpDist, DistributedOptimizerReduceScattersTheLocalShard) {
  for_each_dp([](int dp) {
    const Tensor x = ddp_test_inputs(kBatch, kIn, 1, DType::F32);
    const Tensor t = ddp_test_inputs(kBatch, kOut, 2, DType::F32);
    const auto expected = reference_grads(x, t, DType::F32);
    auto model = std::make_shared<DdpTestMlp>(kIn, kHidden, kOut);
    DistributedDataParallelConfig cfg;
    cfg.overlap_grad_reduce = true;
    cfg.use_distributed_optimizer = true;
    cfg.bucket_size = 40;
    DistributedDataParallel ddp(model, cfg);
    const auto& buf = *ddp.buffers()[0];
    ASSERT_EQ(buf.numel() % dp, 0);
    // The expected reduced buffer: each reference grad at its parameter's range.
    Tensor want = zeros({buf.numel()});
    const auto params = model->parameters();
    for (size_t k = 0; k < params.size(); ++k) {
      const auto& rg = buf.layout().param_ranges[k];
      want.narrow(0, rg.start, rg.end - rg.start).copy_(expected[k].flatten());
    }
    const int r = ps::get_data_parallel_rank();
    const int64_t local = kBatch / dp;
    for (int step = 0; step < 2; ++step) {
      ddp.zero_grad_buffer();
      model->loss(x.narrow(0, r * local, local), t.narrow(0, r * local, local)).backward();
      distributed::finalize_model_grads({&ddp});
      for (const auto& b : buf.buckets()) {
        const int64_t shard = b.grad_data.numel() / dp;
        expect_close(b.grad_data.narrow(0, r * shard, shard),
                     want.narrow(0, b.offset + r * shard, shard), DType::F32);
      }
    }
  });
}

// Two parameters whose flags the test sets.
class TwoParams : public nn::Module {
 public:
  TwoParams() {
    a = register_parameter("a", zeros({5}));
    b = register_parameter("b", zeros({3}));
  }
  nn::ParameterPtr a, b;
};

TEST(DdpDist, FinalizeAllReducesSequenceParallelGradsOverTensorParallel) {
  const int world = comm::get_world_size();
  ps::initialize_model_parallel(world, 1);  // all ranks in one TP group, DP 1
  auto m = std::make_shared<TwoParams>();
  m->a->sequence_parallel = true;
  DistributedDataParallel ddp(m, {});
  ddp.zero_grad_buffer();
  const int rank = comm::get_rank();
  m->a->main_grad.fill_(rank + 1);
  m->b->main_grad.fill_(rank + 1);
  distributed::finalize_model_grads({&ddp});
  EXPECT_TENSOR_CLOSE(m->a->main_grad, full({5}, world * (world + 1) / 2.0), 0, 0);
  EXPECT_TENSOR_CLOSE(m->b->main_grad, full({3}, rank + 1.0), 0, 0);
  ps::destroy_model_parallel();
}

TEST(DdpDist, FinalizeAllReducesTiedEmbeddingOverFirstAndLastStage) {
  const int world = comm::get_world_size();
  ps::initialize_model_parallel(1, world);  // one pipeline of `world` stages
  auto m = std::make_shared<TwoParams>();
  const bool edge = ps::is_pipeline_first_stage() || ps::is_pipeline_last_stage();
  m->a->shared_embedding = edge;  // the word embedding (first stage) / output layer (last stage)
  DistributedDataParallel ddp(m, {});
  ddp.zero_grad_buffer();
  const int rank = comm::get_rank();
  m->a->main_grad.fill_(rank + 1);
  m->b->main_grad.fill_(rank + 1);
  distributed::finalize_model_grads({&ddp});
  // First stage is rank 0 (value 1), last is rank world-1 (value world).
  const double tied = world > 1 ? 1.0 + world : 1.0;
  EXPECT_TENSOR_CLOSE(m->a->main_grad, full({5}, edge ? tied : rank + 1.0), 0, 0);
  EXPECT_TENSOR_CLOSE(m->b->main_grad, full({3}, rank + 1.0), 0, 0);
  ps::destroy_model_parallel();
}

}  // namespace
}  // namespace mcore::testing
