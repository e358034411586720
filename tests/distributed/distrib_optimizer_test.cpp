// optimizer/distrib_optimizer under MPI (2 and 4 ranks, all data-parallel): the distributed
// optimizer's shards and its whole-tensor state.
//   - Every element of every parameter is owned by exactly one rank, with one bucket and with
//     many (bucket boundaries inside parameters), and each rank's optimizer holds only its part.
//   - After Adam steps on the small MLP (each rank's own batch slice), the weights on every rank
//     equal those of the non-distributed optimizer given the same all-reduced gradients, and
//     state_dict() gives the whole tensors that optimizer saves (bitwise: the update is
//     elementwise on the same reduced values). A state loaded back continues identically.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "mcore/comm/distributed.h"
#include "mcore/distributed/distributed_data_parallel.h"
#include "mcore/distributed/finalize_model_grads.h"
#include "mcore/optimizer/distrib_optimizer.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/distributed_unit/ddp_test_model.h"

namespace mcore::testing {
namespace {

namespace ps = parallel_state;
using distributed::DistributedDataParallel;
using distributed::DistributedDataParallelConfig;
using optimizer::DistributedOptimizerShards;

constexpr int64_t kIn = 6, kHidden = 10, kOut = 3, kBatch = 8;

struct Trained {
  std::shared_ptr<DdpTestMlp> model;
  std::unique_ptr<DistributedDataParallel> ddp;
  std::shared_ptr<DistributedOptimizerShards> shards;
  std::unique_ptr<optimizer::MegatronOptimizer> opt;
};

Trained build(bool distributed, std::optional<int64_t> bucket_size) {
  Trained t;
  t.model = std::make_shared<DdpTestMlp>(kIn, kHidden, kOut);
  DistributedDataParallelConfig c;
  c.use_distributed_optimizer = distributed;
  c.overlap_grad_reduce = bucket_size.has_value();
  c.bucket_size = bucket_size;
  t.ddp = std::make_unique<DistributedDataParallel>(t.model, c);
  if (distributed)
    t.shards = std::make_shared<DistributedOptimizerShards>(
        std::vector<DistributedDataParallel*>{t.ddp.get()});
  optimizer::OptimizerConfig oc;
  oc.lr = 1e-2;
  oc.weight_decay = 0.1;
  t.opt = optimizer::get_megatron_optimizer(oc, t.model->named_parameters(),
                                            distributed ? comm::world() : nullptr, 0, t.shards);
  return t;
}

// One step on this rank's slice of the batch.
void step(Trained& t, int iteration) {
  const int dp = comm::get_world_size(), r = comm::get_rank();
  const Tensor x = ddp_test_inputs(kBatch, kIn, 100 + iteration, DType::F32);
  const Tensor y = ddp_test_inputs(kBatch, kOut, 200 + iteration, DType::F32);
  const int64_t rows = kBatch / dp;
  t.ddp->zero_grad_buffer();
  t.model->loss(x.narrow(0, r * rows, rows), y.narrow(0, r * rows, rows)).backward();
  distributed::finalize_model_grads({t.ddp.get()});
  ASSERT_TRUE(t.opt->step().success);
}

void expect_bitwise(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.numel(), b.numel()) << what;
  const Tensor x = a.contiguous(), y = b.contiguous();
  EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << what;
}

TEST(DistributedOptimizerShards, EveryElementHasExactlyOneOwner) {
  ps::initialize_model_parallel(1, 1);
  for (std::optional<int64_t> bucket : {std::optional<int64_t>(), std::optional<int64_t>(40)}) {
    Trained t = build(true, bucket);
    ASSERT_GT(t.ddp->buffers().front()->buckets().size(), bucket ? 1u : 0u);
    int64_t held = 0, total = 0;
    for (const auto& [name, p] : t.model->named_parameters()) {
      const auto r = t.shards->local_range(*p);
      ASSERT_LE(0, r.begin);
      ASSERT_LE(r.begin, r.end);
      ASSERT_LE(r.end, p->numel());
      // Count owners per element across ranks.
      Tensor owners = zeros({p->numel()}, DType::F32);
      for (int64_t i = r.begin; i < r.end; ++i) owners.data<float>()[i] = 1.0f;
      comm::world()->all_reduce(owners);
      for (int64_t i = 0; i < p->numel(); ++i)
        ASSERT_EQ(owners.data<float>()[i], 1.0f) << name << " element " << i;
      EXPECT_EQ(t.opt->main_param(*p).numel(), r.size()) << name;
      held += r.size();
      total += p->numel();
    }
    // A rank's share: about 1/dp of the elements (buckets are split evenly, padding aside).
    const int dp = comm::get_world_size();
    EXPECT_LE(held, total / dp + 64 * 8) << "bucket " << (bucket ? *bucket : -1);
  }
  ps::destroy_model_parallel();
}

TEST(DistributedOptimizerShards, StepsAndStateMatchTheUnshardedOptimizer) {
  ps::initialize_model_parallel(1, 1);
  Trained plain = build(false, std::nullopt), dist = build(true, int64_t(40));
  for (int it = 0; it < 3; ++it) {
    step(plain, it);
    step(dist, it);
  }
  const auto pp = plain.model->named_parameters(), dpm = dist.model->named_parameters();
  ASSERT_EQ(pp.size(), dpm.size());
  for (size_t i = 0; i < pp.size(); ++i)
    expect_bitwise(*dpm[i].second, *pp[i].second, "weight " + pp[i].first);
  const auto sp = plain.opt->state_dict(), sd = dist.opt->state_dict();
  ASSERT_EQ(sp.tensors.size(), sd.tensors.size());
  ASSERT_EQ(sp.tensors.size(), 2 * pp.size());  // exp_avg and exp_avg_sq of each
  for (const auto& [key, t] : sp.tensors) {
    ASSERT_TRUE(sd.tensors.count(key)) << key;
    EXPECT_EQ(sd.tensors.at(key).shape(), t.shape()) << key;
    expect_bitwise(sd.tensors.at(key), t, key);
  }
  // The whole state loads into a fresh distributed optimizer (each rank takes its part) and the
  // next step is the same as the uninterrupted one's.
  Trained resumed = build(true, int64_t(40));
  {
    NoGradGuard g;
    for (size_t i = 0; i < pp.size(); ++i) {
      Tensor w = *resumed.model->named_parameters()[i].second;
      w.copy_(*pp[i].second);
    }
  }
  resumed.opt->load_state_dict(sp);
  step(resumed, 3);
  step(dist, 3);
  const auto rp = resumed.model->named_parameters();
  for (size_t i = 0; i < rp.size(); ++i)
    expect_bitwise(*rp[i].second, *dpm[i].second, "resumed weight " + rp[i].first);
  ps::destroy_model_parallel();
}

}  // namespace
}  // namespace mcore::testing
