// DistributedDataParallel in one process: the buffer layout (Megatron's bucket cutting and the
// distributed optimizer's padding, computed by hand below from Megatron's rules), main_grad
// views into the buffer, bucket assignment in reverse registration order, the gradient hook
// (grad moved into main_grad, accumulation across backward calls, zeroing), the dtype rules and
// the default bucket size. Gradients are compared bit for bit with plain autograd: with one
// data-parallel rank the scaling factor is 1 and the all-reduce is the identity.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mcore/comm/local_backend.h"
#include "mcore/distributed/distributed_data_parallel.h"
#include "mcore/distributed/finalize_model_grads.h"
#include "mcore/ops/reduction.h"
#include "tests/common/test_util.h"
#include "tests/distributed_unit/ddp_test_model.h"

namespace mcore::testing {
namespace {

using distributed::DistributedDataParallel;
using distributed::DistributedDataParallelConfig;

std::vector<nn::ParameterPtr> make_params(const std::vector<int64_t>& sizes) {
  std::vector<nn::ParameterPtr> out;
  for (int64_t n : sizes) out.push_back(std::make_shared<nn::Parameter>(zeros({n})));
  return out;
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(DdpLayout, BucketsCutInReverseRegistrationOrder) {
  // Registered a(10) b(20) c(30) d(5); laid out d, c, b, a. A bucket closes once it holds >= 25.
  auto params = make_params({10, 20, 30, 5});
  auto layout = distributed::compute_param_layout(params, 25, 1, false, false);
  ASSERT_EQ(layout.bucket_indices.size(), 2u);
  EXPECT_EQ(layout.bucket_indices[0], (std::pair<int64_t, int64_t>{0, 35}));
  EXPECT_EQ(layout.bucket_indices[1], (std::pair<int64_t, int64_t>{35, 65}));
  EXPECT_EQ(layout.per_bucket_numel_unpadded, (std::vector<int64_t>{35, 30}));
  const int64_t want[4][3] = {{55, 65, 1}, {35, 55, 1}, {5, 35, 0}, {0, 5, 0}};
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(layout.param_ranges[k].start, want[k][0]) << "param " << k;
    EXPECT_EQ(layout.param_ranges[k].end, want[k][1]) << "param " << k;
    EXPECT_EQ(layout.param_ranges[k].bucket_id, want[k][2]) << "param " << k;
  }
  EXPECT_EQ(layout.numel(), 65);
}

TEST(DdpLayout, NoBucketSizeMeansOneBucket) {
  auto params = make_params({10, 20, 30, 5});
  auto layout = distributed::compute_param_layout(params, std::nullopt, 4, false, false);
  ASSERT_EQ(layout.bucket_indices.size(), 1u);
  EXPECT_EQ(layout.numel(), 65);
  for (const auto& r : layout.param_ranges) EXPECT_EQ(r.bucket_id, 0);
}

TEST(DdpLayout, DistributedOptimizerPadding) {
  // Parameter starts on multiples of 64, bucket ends on multiples of lcm(dp=4, 128) = 128.
  auto params = make_params({10, 20, 30, 5});
  auto layout = distributed::compute_param_layout(params, 25, 4, true, false);
  ASSERT_EQ(layout.bucket_indices.size(), 2u);
  EXPECT_EQ(layout.bucket_indices[0], (std::pair<int64_t, int64_t>{0, 128}));
  EXPECT_EQ(layout.bucket_indices[1], (std::pair<int64_t, int64_t>{128, 256}));
  EXPECT_EQ(layout.per_bucket_numel_unpadded, (std::vector<int64_t>{94, 74}));
  EXPECT_EQ(layout.param_ranges[3].start, 0);                // d
  EXPECT_EQ(layout.param_ranges[2].start, 64);               // c
  EXPECT_EQ(layout.param_ranges[1].start, 128);              // b
  EXPECT_EQ(layout.param_ranges[0].start, 192);              // a
  EXPECT_EQ(distributed::pad_bucket_end(1, 3, false), 384);  // lcm(3, 128)
  EXPECT_EQ(distributed::pad_bucket_end(1, 2, true), 65536);
}

TEST(DdpLayout, SharedEmbeddingGetsItsOwnBucketWithDistributedOptimizer) {
  auto params = make_params({100, 8, 8});  // embedding first (registered first, laid out last)
  params[0]->shared_embedding = true;
  auto layout = distributed::compute_param_layout(params, std::nullopt, 2, true, false);
  ASSERT_EQ(layout.bucket_indices.size(), 2u);
  EXPECT_EQ(layout.param_ranges[0].bucket_id, 1);
  EXPECT_EQ(layout.param_ranges[1].bucket_id, 0);
  EXPECT_EQ(layout.param_ranges[2].bucket_id, 0);
  // Without the distributed optimizer the shared weight is not split off (as Megatron).
  auto plain = distributed::compute_param_layout(params, std::nullopt, 2, false, false);
  EXPECT_EQ(plain.bucket_indices.size(), 1u);
}

TEST(DdpBuffer, MainGradsAreViewsIntoTheBuffer) {
  auto model = std::make_shared<DdpTestMlp>(5, 7, 3);
  DistributedDataParallelConfig cfg;
  cfg.overlap_grad_reduce = true;
  cfg.bucket_size = 30;
  DistributedDataParallel ddp(model, cfg);
  ASSERT_EQ(ddp.buffers().size(), 1u);
  auto& buf = *ddp.buffers()[0];
  EXPECT_EQ(buf.grad_dtype(), DType::F32);
  EXPECT_EQ(buf.numel(), model->num_parameters());
  const auto params = model->parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    const auto& p = params[k];
    ASSERT_TRUE(p->main_grad.defined());
    EXPECT_EQ(p->main_grad.shape(), p->shape());
    EXPECT_EQ(p->main_grad.dtype(), DType::F32);
    EXPECT_TRUE(p->main_grad.storage() == buf.grad_data().storage());
    EXPECT_EQ(p->main_grad.offset(), buf.layout().param_ranges[k].start);
    // Writing through the view lands in the buffer.
    p->main_grad.fill_(static_cast<double>(k + 1));
    const float* d = buf.grad_data().data<float>();
    EXPECT_EQ(d[buf.layout().param_ranges[k].start], static_cast<float>(k + 1));
  }
  // The last layer's parameters sit in bucket 0 and fill first; the first layer's in the last.
  const auto& buckets = buf.buckets();
  ASSERT_GE(buckets.size(), 3u);
  EXPECT_TRUE(buckets.front().params.front().get() == model->layers[2]->bias().get());
  EXPECT_TRUE(buckets.back().params.back().get() == model->layers[0]->weight().get());
  for (size_t b = 0; b < buckets.size(); ++b) {
    for (const auto& p : buckets[b].params) {
      ASSERT_TRUE(ddp.bucket_group_of(p.get()) != nullptr);
      EXPECT_EQ(ddp.bucket_group_of(p.get())->buckets()[0], &buckets[b]);
    }
  }
  ddp.zero_grad_buffer();
  EXPECT_EQ(ops::multi_tensor_l2norm_squared({buf.grad_data()}), 0.0);
}

TEST(DdpBuffer, DtypeRules) {
  auto model = std::make_shared<DdpTestMlp>(4, 4, 2, DType::BF16);
  {
    DistributedDataParallelConfig cfg;
    cfg.grad_reduce_in_fp32 = true;  // --accumulate-allreduce-grads-in-fp32
    DistributedDataParallel ddp(model, cfg);
    EXPECT_EQ(ddp.buffers()[0]->param_dtype(), DType::BF16);
    EXPECT_EQ(ddp.buffers()[0]->grad_dtype(), DType::F32);
    EXPECT_EQ(model->layers[0]->weight()->main_grad.dtype(), DType::F32);
  }
  DistributedDataParallel ddp(model, {});
  EXPECT_EQ(ddp.buffers()[0]->grad_dtype(), DType::BF16);
}

TEST(DdpBuffer, DefaultBucketSizeFollowsMegatron) {
  auto model = std::make_shared<DdpTestMlp>(4, 4, 2);
  DistributedDataParallelConfig cfg;
  cfg.overlap_grad_reduce = true;
  EXPECT_EQ(DistributedDataParallel(model, cfg).bucket_size(), 40000000);
  cfg.overlap_grad_reduce = false;  // no overlap: one bucket
  EXPECT_FALSE(DistributedDataParallel(model, cfg).bucket_size().has_value());
  cfg.overlap_grad_reduce = true;
  cfg.bucket_size = 10;
  distributed::DistributedDataParallelOptions later_stage;
  later_stage.pipeline_model_parallel_rank = 1;  // not on the critical path: one bucket
  DistributedDataParallel ddp(model, cfg, later_stage);
  EXPECT_FALSE(ddp.bucket_size().has_value());
  EXPECT_EQ(ddp.bucket_groups().size(), 1u);
}

// Gradients that plain autograd computes for the model on (x, t), by parameter.
std::vector<Tensor> reference_grads(int64_t in, int64_t hidden, int64_t out, const Tensor& x,
                                    const Tensor& t, int repeats = 1) {
  DdpTestMlp ref(in, hidden, out);
  for (int i = 0; i < repeats; ++i) ref.loss(x, t).backward();
  std::vector<Tensor> grads;
  for (const auto& p : ref.parameters()) grads.push_back(p->grad().clone());
  return grads;
}

TEST(DdpBuffer, HookMovesGradIntoMainGradAndAccumulates) {
  const Tensor x = ddp_test_inputs(6, 5, 1, DType::F32);
  const Tensor t = ddp_test_inputs(6, 3, 2, DType::F32);
  for (bool overlap : {false, true}) {
    SCOPED_TRACE(overlap ? "overlap" : "no overlap");
    auto model = std::make_shared<DdpTestMlp>(5, 7, 3);
    DistributedDataParallelConfig cfg;
    cfg.overlap_grad_reduce = overlap;
    cfg.bucket_size = 20;
    DistributedDataParallel ddp(model, cfg);
    const auto once = reference_grads(5, 7, 3, x, t);
    const auto twice = reference_grads(5, 7, 3, x, t, 2);
    for (int step = 0; step < 3; ++step) {
      ddp.zero_grad_buffer();
      {
        auto guard = ddp.no_sync();
        model->loss(x, t).backward();
      }
      model->loss(x, t).backward();
      distributed::finalize_model_grads({&ddp});
      const auto params = model->parameters();
      for (size_t k = 0; k < params.size(); ++k) {
        EXPECT_FALSE(params[k]->grad().defined()) << "grad not dropped for param " << k;
        EXPECT_TENSOR_CLOSE(params[k]->main_grad, twice[k], 0, 0);
      }
    }
    ddp.zero_grad_buffer();
    model->loss(x, t).backward();
    ddp.finish_grad_sync();
    EXPECT_TENSOR_CLOSE(model->layers[1]->weight()->main_grad, once[2], 0, 0);
  }
}

TEST(DdpBuffer, OverlapLaunchesBucketsDuringBackwardFromTheSecondStep) {
  const Tensor x = ddp_test_inputs(4, 5, 1, DType::F32);
  const Tensor t = ddp_test_inputs(4, 3, 2, DType::F32);
  auto model = std::make_shared<DdpTestMlp>(5, 7, 3);
  DistributedDataParallelConfig cfg;
  cfg.overlap_grad_reduce = true;
  cfg.bucket_size = 1;  // one bucket per parameter
  DistributedDataParallel ddp(model, cfg);
  ASSERT_EQ(ddp.bucket_groups().size(), 6u);
  // When the first layer's weight reports, backward has finished with layers 2 and 3: count
  // how many of their four buckets were launched by then.
  int launched_when_first_layer_done = -1;
  auto later_layers_launched = [&] {
    int n = 0;
    for (int l : {1, 2})
      for (const auto& p : {model->layers[l]->weight(), model->layers[l]->bias()})
        n += ddp.bucket_group_of(p.get())->grad_sync_launched() ? 1 : 0;
    return n;
  };
  auto all_launched = [&] {
    int n = 0;
    for (const auto& g : ddp.bucket_groups()) n += g->grad_sync_launched() ? 1 : 0;
    return n;
  };
  model->layers[0]->weight()->register_post_accumulate_grad_hook(
      [&](Tensor&) { launched_when_first_layer_done = later_layers_launched(); });
  for (int step = 0; step < 2; ++step) {
    ddp.zero_grad_buffer();
    model->loss(x, t).backward();
    // First step: Megatron only counts the hook calls; the launch happens in finish.
    EXPECT_EQ(launched_when_first_layer_done, step == 0 ? 0 : 4) << "step " << step;
    EXPECT_EQ(all_launched(), step == 0 ? 0 : 6) << "step " << step;
    ddp.finish_grad_sync();
    EXPECT_EQ(all_launched(), 6);
  }
  // Under no_sync nothing launches, even after the first step.
  ddp.zero_grad_buffer();
  {
    auto guard = ddp.no_sync();
    model->loss(x, t).backward();
  }
  EXPECT_EQ(launched_when_first_layer_done, 0);
  EXPECT_EQ(all_launched(), 0);
  model->loss(x, t).backward();
  EXPECT_EQ(launched_when_first_layer_done, 4);
  EXPECT_EQ(all_launched(), 6);
  ddp.finish_grad_sync();
}

TEST(DdpBuffer, NanCheckNamesTheBucket) {
  auto model = std::make_shared<DdpTestMlp>(3, 3, 2);
  DistributedDataParallelConfig cfg;
  cfg.check_for_nan_in_grad = true;
  DistributedDataParallel ddp(model, cfg);
  ddp.zero_grad_buffer();
  model->layers[1]->weight()->main_grad.fill_(std::numeric_limits<double>::quiet_NaN());
  const std::string msg = error_of([&] { ddp.finish_grad_sync(); });
  EXPECT_NE(msg.find("NaN or Inf in the gradients of bucket 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 3]"), std::string::npos) << msg;
}

TEST(DdpBuffer, HooksOutliveTheWrapperHarmlessly) {
  auto model = std::make_shared<DdpTestMlp>(3, 3, 2);
  { DistributedDataParallel ddp(model, {}); }
  const Tensor x = ddp_test_inputs(2, 3, 1, DType::F32);
  const Tensor t = ddp_test_inputs(2, 2, 2, DType::F32);
  model->loss(x, t).backward();  // the dead hook does nothing: grad stays in .grad
  EXPECT_TRUE(model->layers[0]->weight()->grad().defined());
}

TEST(DdpBuffer, PerTokenScaling) {
  auto model = std::make_shared<DdpTestMlp>(3, 3, 2);
  DistributedDataParallel ddp(model, {});
  ddp.zero_grad_buffer();
  for (const auto& p : model->parameters()) p->main_grad.fill_(6.0);
  distributed::finalize_model_grads({&ddp}, /*num_tokens=*/4.0);
  EXPECT_EQ(model->layers[2]->bias()->main_grad.data<float>()[0], 1.5f);
}

}  // namespace
}  // namespace mcore::testing
