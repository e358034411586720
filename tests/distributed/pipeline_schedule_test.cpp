// The pipeline schedules against one process doing the same work. Every rank holds one pipeline
// stage (with virtual stages: several chunks) of a toy model - virtual stage v maps x to
// gelu(x W_v) - and the schedule runs several microbatches through the whole pipeline. Each
// rank also runs the entire model alone (all virtual stages, all microbatches, one backward) and
// checks that its own chunks' gradients and the losses equal that reference: in float64 the
// only difference is the order of a few additions. It also counts the activations a stage holds
// at once, and checks forward-only, variable sequence lengths and the schedule's argument
// errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "mcore/comm/distributed.h"
#include "mcore/nn/functional.h"
#include "mcore/ops/elementwise.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/pipeline_parallel/schedules.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

namespace ps = parallel_state;
namespace pp = pipeline_parallel;

constexpr int64_t kSeq = 3, kBatch = 2, kHidden = 5;

Tensor stage_weight(int virtual_stage) {
  Tensor w = randn({kHidden, kHidden}, {1234, static_cast<uint64_t>(virtual_stage)}, DType::F64);
  return ops::scale(w, 0.6).set_requires_grad(true);
}

int64_t seq_of(int64_t microbatch, bool variable) {
  return variable ? kSeq + microbatch % 3 : kSeq;
}

Tensor microbatch_input(int64_t microbatch, bool variable) {
  return randn({seq_of(microbatch, variable), kBatch, kHidden},
               {99, static_cast<uint64_t>(microbatch)}, DType::F64);
}

Tensor stage_forward(const Tensor& x, const Tensor& w) {
  const int64_t s = x.size(0);
  Tensor y = F::gelu(F::matmul(F::reshape(x, {s * kBatch, kHidden}), w));
  return F::reshape(y, {s, kBatch, kHidden});
}

Tensor loss_of(const Tensor& y) {
  return F::mean(F::mul(y, y));
}

struct Case {
  int vpp = 1;
  int64_t num_microbatches = 1;
  bool forward_only = false;
  int group = 0;
  bool variable = false;
};

std::string describe(const Case& c) {
  return "vpp " + std::to_string(c.vpp) + ", " + std::to_string(c.num_microbatches) +
         " microbatches" + (c.forward_only ? ", forward only" : "") +
         (c.group ? ", group " + std::to_string(c.group) : "") +
         (c.variable ? ", variable lengths" : "");
}

void run_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  const int P = comm::get_world_size(), r = comm::get_rank();
  const int V = P * c.vpp;
  const int64_t M = c.num_microbatches;

  // This rank's chunks: chunk k is virtual stage k * P + r.
  std::vector<Tensor> weights;
  for (int k = 0; k < c.vpp; ++k) weights.push_back(stage_weight(k * P + r));

  pp::ForwardStepFunc forward_step = [&](int64_t mb, int chunk, const Tensor& input,
                                         bool last) -> pp::ForwardStepOutput {
    EXPECT_EQ(last, r == P - 1 && chunk == c.vpp - 1);
    EXPECT_EQ(input.defined(), !(r == 0 && chunk == 0));
    Tensor x = input.defined() ? input : microbatch_input(mb, c.variable);
    Tensor y = stage_forward(x, weights[static_cast<size_t>(chunk)]);
    if (!last) return {y, {}, 0.0};
    Tensor loss = loss_of(y);
    return {loss, {{"loss", loss.item()}, {"microbatch", static_cast<double>(mb)}}, 1.0};
  };
  pp::ScheduleConfig sc;
  sc.num_microbatches = M;
  sc.num_model_chunks = c.vpp;
  sc.forward_only = c.forward_only;
  sc.microbatch_group_size_per_vp_stage = c.group;
  sc.p2p.tensor_shape = {kSeq, kBatch, kHidden};
  sc.p2p.pipeline_dtype = DType::F64;
  sc.p2p.variable_seq_lengths = c.variable;
  pp::ForwardBackwardResult res = [&] {
    if (c.forward_only) {
      NoGradGuard no_grad;
      return pp::get_forward_backward_func(c.vpp)(forward_step, sc);
    }
    return pp::get_forward_backward_func(c.vpp)(forward_step, sc);
  }();

  // The reference: the whole model in this process.
  std::vector<Tensor> ref_w;
  for (int v = 0; v < V; ++v) ref_w.push_back(stage_weight(v));
  std::vector<double> ref_loss;
  Tensor total;
  for (int64_t m = 0; m < M; ++m) {
    Tensor x = microbatch_input(m, c.variable);
    for (int v = 0; v < V; ++v) x = stage_forward(x, ref_w[static_cast<size_t>(v)]);
    Tensor l = loss_of(x);
    ref_loss.push_back(l.item());
    Tensor part = F::scale(l, 1.0 / static_cast<double>(M));
    total = total.defined() ? F::add(total, part) : part;
  }
  total.backward();

  EXPECT_EQ(res.stats.forward_steps, M * c.vpp);
  if (r == P - 1) {
    ASSERT_EQ(res.losses_reduced.size(), static_cast<size_t>(M));
    for (const auto& rec : res.losses_reduced) {
      const auto m = static_cast<size_t>(rec.at(1).second);
      EXPECT_NEAR(rec.at(0).second, ref_loss.at(m), 1e-13 * std::abs(ref_loss.at(m)));
    }
    EXPECT_DOUBLE_EQ(res.num_tokens, static_cast<double>(M));
  } else {
    EXPECT_TRUE(res.losses_reduced.empty());
  }
  if (c.forward_only) {
    EXPECT_EQ(res.stats.backward_steps, 0);
    for (const Tensor& w : weights) EXPECT_FALSE(w.grad().defined());
    return;
  }
  EXPECT_EQ(res.stats.backward_steps, M * c.vpp);
  for (int k = 0; k < c.vpp; ++k) {
    const Tensor& g = weights[static_cast<size_t>(k)].grad();
    ASSERT_TRUE(g.defined()) << "chunk " << k;
    EXPECT_TENSOR_CLOSE(g, ref_w[static_cast<size_t>(k * P + r)].grad(), 1e-11, 1e-14);
  }
  // Activations held at once. 1F1B: stage r warms up with P - r - 1 forwards, then alternates,
  // so it holds P - r (stage 0: P) - never more than the microbatches there are.
  if (c.vpp == 1) {
    EXPECT_EQ(res.stats.max_live_microbatches, std::min<int64_t>(P - r, M));
  } else {
    const int64_t group = c.group ? c.group : P;
    const int64_t warmup = std::min<int64_t>((P - r - 1) * 2 + (c.vpp - 1) * group, M * c.vpp);
    EXPECT_LE(res.stats.max_live_microbatches, std::min<int64_t>(warmup + 1, M * c.vpp));
    EXPECT_GE(res.stats.max_live_microbatches, std::min<int64_t>(warmup, M * c.vpp));
  }
}

class PipelineScheduleTest : public ::testing::Test {
 protected:
  void SetUp() override { ps::initialize_model_parallel(1, comm::get_world_size()); }
  void TearDown() override { ps::destroy_model_parallel(); }
};

TEST_F(PipelineScheduleTest, OneFOneBMatchesOneProcess) {
  const int P = comm::get_world_size();
  for (int64_t m : {int64_t{1}, int64_t{P}, int64_t{2 * P + 1}}) run_case({1, m});
  run_case({1, 2 * static_cast<int64_t>(P), true});
  run_case({1, static_cast<int64_t>(P) + 1, false, 0, /*variable=*/true});
}

TEST_F(PipelineScheduleTest, InterleavedMatchesOneProcess) {
  const int P = comm::get_world_size();
  if (P < 2) GTEST_SKIP() << "the interleaved schedule needs two or more pipeline stages";
  for (int64_t m : {int64_t{P}, int64_t{2 * P}, int64_t{3 * P}}) run_case({2, m});
  run_case({3, 2 * static_cast<int64_t>(P)});
  run_case({2, 3 * static_cast<int64_t>(P), false, 2 * P});  // groups of 2P, a tail of P
  run_case({2, 2 * static_cast<int64_t>(P), true});
  run_case({2, 2 * static_cast<int64_t>(P), false, 0, /*variable=*/true});
}

TEST_F(PipelineScheduleTest, InterleavedArgumentErrors) {
  const int P = comm::get_world_size();
  if (P < 2) GTEST_SKIP() << "the interleaved schedule needs two or more pipeline stages";
  pp::ForwardStepFunc never = [](int64_t, int, const Tensor&, bool) -> pp::ForwardStepOutput {
    ADD_FAILURE() << "no forward step may run";
    return {};
  };
  pp::ScheduleConfig sc;
  sc.num_model_chunks = 2;
  sc.p2p.tensor_shape = {kSeq, kBatch, kHidden};
  sc.num_microbatches = P - 1;  // fewer microbatches than stages
  EXPECT_THROW(pp::forward_backward_pipelining_with_interleaving(never, sc), Error);
  sc.num_microbatches = 2 * P + 1;  // leaves a last group of 1
  EXPECT_THROW(pp::forward_backward_pipelining_with_interleaving(never, sc), Error);
}

}  // namespace
}  // namespace mcore
