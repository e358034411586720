// optimizer/ under MPI (2 and 4 ranks), for every (TP, PP) layout that fits the world (the
// rest data-parallel): a model whose stages hold tensor-parallel shards (split along dim 0 and
// dim 1), replicated params (biases, norms), the word embedding on the first stage and its tied
// copy (`shared`) on the last. Every rank builds its local part from a formula of the global
// index, so it can compute the unsharded answer itself: the global grad norm (L2 and inf), the
// zero count and the clipped grads must equal those of the full model, each element counted
// once; an overflow on one rank makes every rank skip the step. Values are multiples of 1/8,
// so the float64 sums are exact and the norms are compared to 1e-12.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "mcore/comm/distributed.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/parallel_state/parallel_state.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

namespace ps = parallel_state;
using namespace mcore::optimizer;
using Named = std::vector<std::pair<std::string, nn::ParameterPtr>>;

// One parameter of the full (unsharded) model.
struct FullParam {
  std::string name;
  Shape shape;
  int split_dim;  // -1: replicated on every TP rank
  int key;        // selects the value formula (the tied copy uses its embedding's key)
  bool shared = false;
};

double value(int key, int64_t i) {
  return static_cast<double>((key * 37 + i * 13) % 29 - 14) / 8.0;
}

std::vector<FullParam> stage_params(int stage, int pp) {
  std::vector<FullParam> ps = {{"col", {8, 5}, 0, 10 * stage + 1},
                               {"row", {5, 12}, 1, 10 * stage + 2},
                               {"bias", {7}, -1, 10 * stage + 3},
                               {"ln", {3, 3}, -1, 10 * stage + 4}};
  if (stage == 0) ps.push_back({"emb", {8, 4}, 0, 99});
  if (stage == pp - 1 && pp > 1) ps.push_back({"output", {8, 4}, 0, 99, /*shared=*/true});
  return ps;
}

Tensor full_grad(const FullParam& p) {
  Tensor t = empty(p.shape, DType::F64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = value(p.key, i);
  return t;
}

Tensor local_part(const Tensor& full, int split_dim, int tp_rank, int tp) {
  if (split_dim < 0) return full.clone();
  const int64_t c = full.size(split_dim) / tp;
  return full.narrow(split_dim, tp_rank * c, c).contiguous();
}

struct Local {
  Named named;
  std::vector<Tensor> full_grads;  // per local param, the full tensor it was cut from
  std::vector<FullParam> specs;
};

Local build_local() {
  const int tp = ps::get_tensor_model_parallel_world_size(),
            r = ps::get_tensor_model_parallel_rank();
  const int stage = ps::get_pipeline_model_parallel_rank();
  const int pp = ps::get_pipeline_model_parallel_world_size();
  Local l;
  for (const FullParam& f : stage_params(stage, pp)) {
    const Tensor full = full_grad(f);
    const Tensor grad = local_part(full, f.split_dim, r, tp).to(DType::F32);
    auto p = std::make_shared<nn::Parameter>(zeros(grad.shape()));
    p->tensor_model_parallel = f.split_dim >= 0;
    p->partition_dim = f.split_dim;
    p->shared = f.shared;
    p->set_grad(grad);
    l.named.push_back({f.name, p});
    l.full_grads.push_back(full);
    l.specs.push_back(f);
  }
  return l;
}

// The unsharded model's sum of squares over every stage, the tied copy counted once.
double expected_sumsq(int pp) {
  double s = 0;
  for (int stage = 0; stage < pp; ++stage) {
    for (const FullParam& f : stage_params(stage, pp)) {
      if (f.shared) continue;
      const Tensor g = full_grad(f);
      for (int64_t i = 0; i < g.numel(); ++i) s += g.data<double>()[i] * g.data<double>()[i];
    }
  }
  return s;
}

template <class Body>
void for_each_layout(Body&& body) {
  const int world = comm::get_world_size();
  for (int tp : {1, 2, 4}) {
    for (int pp : {1, 2, 4}) {
      if (world % (tp * pp) != 0) continue;
      ps::initialize_model_parallel(tp, pp);
      {
        SCOPED_TRACE("tp " + std::to_string(tp) + " pp " + std::to_string(pp) + " of world " +
                     std::to_string(world));
        body(tp, pp);
      }
      ps::destroy_model_parallel();
    }
  }
}

TEST(OptimizerDist, GradNormAndClippingEqualTheUnshardedModel) {
  for_each_layout([](int, int pp) {
    Local l = build_local();
    OptimizerConfig c;
    c.optimizer = "sgd";
    c.clip_grad = 1.0;
    c.log_num_zeros_in_grad = true;
    auto opt = get_megatron_optimizer(c, l.named);  // groups and TP rank from parallel_state
    const double expected = std::sqrt(expected_sumsq(pp));
    const StepResult r = opt->step();
    ASSERT_TRUE(r.success);
    EXPECT_NEAR(*r.grad_norm, expected, 1e-12 * expected);
    // Every local grad (replicas and the tied copy included) was scaled by the same factor.
    const float f = static_cast<float>(1.0 / (expected + 1e-6));
    for (size_t i = 0; i < l.named.size(); ++i) {
      const Tensor want =
          local_part(l.full_grads[i], l.specs[i].split_dim, ps::get_tensor_model_parallel_rank(),
                     ps::get_tensor_model_parallel_world_size())
              .to(DType::F32);
      float* w = want.data<float>();
      for (int64_t j = 0; j < want.numel(); ++j) w[j] *= f;
      EXPECT_TENSOR_CLOSE(l.named[i].second->grad(), want, 0, 0) << l.named[i].first;
    }
    // value() hits 0 once every 29 indices: count the full model's zeros (tied copy once).
    int64_t zeros_expected = 0;
    for (int stage = 0; stage < pp; ++stage) {
      for (const FullParam& fp : stage_params(stage, pp)) {
        if (fp.shared) continue;
        const Tensor g = full_grad(fp);
        for (int64_t i = 0; i < g.numel(); ++i) zeros_expected += g.data<double>()[i] == 0.0;
      }
    }
    ASSERT_GT(zeros_expected, 0);
    EXPECT_EQ(*r.num_zeros_in_grad, zeros_expected);
  });
}

TEST(OptimizerDist, InfNormIgnoresDuplicatesAndTheTiedCopy) {
  for_each_layout([](int tp, int pp) {
    Local l = build_local();
    const int r = ps::get_tensor_model_parallel_rank();
    const int stage = ps::get_pipeline_model_parallel_rank();
    // A replica on a TP rank other than 0 and the tied copy carry huge values: not counted.
    for (auto& [name, p] : l.named) {
      if ((name == "bias" && r != 0) || name == "output") p->grad().data<float>()[0] = 1000.0f;
    }
    // The true maximum sits in a shard of the last TP rank on the last stage.
    if (r == tp - 1 && stage == pp - 1) l.named[1].second->grad().data<float>()[0] = -42.0f;
    auto opt = get_megatron_optimizer(OptimizerConfig{}, l.named);
    opt->prepare_grads();
    const double norm =
        get_grad_norm_fp32(opt->get_main_grads_for_grad_norm(),
                           std::numeric_limits<double>::infinity(), ps::get_model_parallel_group());
    EXPECT_EQ(norm, 42.0);
  });
}

TEST(OptimizerDist, OverflowOnOneRankSkipsTheStepEverywhere) {
  for_each_layout([](int tp, int pp) {
    Local l = build_local();
    OptimizerConfig c;
    c.optimizer = "adam";
    auto opt =
        std::make_unique<Adam>(get_param_groups(l.named), c,
                               std::make_unique<DynamicGradScaler>(1024, 1, 2.0, 0.5, 10, 1));
    const bool culprit = ps::get_tensor_model_parallel_rank() == tp - 1 &&
                         ps::get_pipeline_model_parallel_rank() == pp - 1;
    if (culprit) l.named[0].second->grad().data<float>()[1] = std::nanf("");
    const StepResult r = opt->step();
    EXPECT_FALSE(r.success);
    EXPECT_EQ(opt->get_loss_scale(), 512.0f);  // hysteresis 1: every rank backs off
    for (auto& [name, p] : l.named) {
      EXPECT_EQ(p->data<float>()[0], 0.0f) << name << " was updated";
    }
  });
}

}  // namespace
}  // namespace mcore::testing
