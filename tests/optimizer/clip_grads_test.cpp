// Gradient norm and clipping against torch.nn.utils.clip_grad_norm_ on the same grads
// (L2, inf and p=3 norms; clipping active and not), Megatron's parameter filters, NaN/Inf
// handling and messages. The multi-rank rule (TP shards + replicas) is tested in
// tests/distributed/optimizer_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mcore/ops/multi_tensor.h"
#include "mcore/optimizer/clip_grads.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

using namespace mcore::optimizer;

std::vector<Tensor> load_grads() {
  std::vector<Tensor> gs;
  for (int i = 0; i < 4; ++i) gs.push_back(load_ref("optimizer", "clip_g" + std::to_string(i)));
  return gs;
}

TEST(ClipGrads, MatchesTorchClipGradNorm) {
  struct Case {
    const char* tag;
    double norm_type, max_norm;
  };
  const double inf = std::numeric_limits<double>::infinity();
  for (const Case& c : {Case{"l2", 2.0, 1.5}, Case{"inf", inf, 0.75}, Case{"l2_noclip", 2.0, 1e3},
                        Case{"p3", 3.0, 2.0}}) {
    SCOPED_TRACE(c.tag);
    std::vector<Tensor> grads = load_grads();
    const double norm = get_grad_norm_fp32(grads, c.norm_type);
    // Our norm accumulates in float64: it matches the exact value to float64 rounding, and
    // torch's (float32 per-tensor norms, then the norm of those) to float32 rounding.
    const double exact = load_ref("optimizer", std::string("clip_") + c.tag + "_exact").item();
    const double torch_total =
        load_ref("optimizer", std::string("clip_") + c.tag + "_total").item();
    EXPECT_NEAR(norm, exact, 1e-12 * exact);
    EXPECT_NEAR(norm, torch_total, 1e-6 * torch_total);
    clip_grad_by_total_norm_fp32(grads, c.max_norm, norm);
    // The clip factor is max_norm / (norm + 1e-6) in both, rounded to float32 before the
    // multiply; the norms differ in the last float32 bits, so the grads agree to ~1 ulp.
    for (int i = 0; i < 4; ++i) {
      EXPECT_TENSOR_CLOSE(
          grads[i], load_ref("optimizer", std::string("clip_") + c.tag + "_g" + std::to_string(i)),
          3e-7, 1e-9);
    }
  }
}

TEST(ClipGrads, ClipsOnlyAboveMaxNorm) {
  Tensor g = from_vector<float>({3.0f, 4.0f});  // norm 5
  std::vector<Tensor> gs{g};
  clip_grad_by_total_norm_fp32(gs, 10.0, 5.0);
  EXPECT_EQ(g.data<float>()[0], 3.0f);  // factor > 1: untouched
  clip_grad_by_total_norm_fp32(gs, 1.0, 5.0);
  EXPECT_FLOAT_EQ(g.data<float>()[0], 3.0f / (5.0f + 1e-6f));
  EXPECT_FLOAT_EQ(g.data<float>()[1], 4.0f / (5.0f + 1e-6f));
}

TEST(ClipGrads, NonFiniteGradsPropagateToTheNorm) {
  Tensor a = from_vector<float>({1.0f, 2.0f}), b = from_vector<float>({0.5f, 0.0f});
  b.data<float>()[1] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isinf(get_grad_norm_fp32({a, b})));
  b.data<float>()[1] = std::nanf("");
  EXPECT_TRUE(std::isnan(get_grad_norm_fp32({a, b})));
  // The inf-norm: NaN must win over any larger finite value, whatever the position.
  Tensor big = from_vector<float>({1e30f});
  EXPECT_TRUE(std::isnan(get_grad_norm_fp32({b, big}, std::numeric_limits<double>::infinity())));
  EXPECT_TRUE(std::isnan(get_grad_norm_fp32({big, b}, std::numeric_limits<double>::infinity())));
  EXPECT_EQ(get_grad_norm_fp32({}), 0.0);
  EXPECT_EQ(get_grad_norm_fp32({}, std::numeric_limits<double>::infinity()), 0.0);
}

TEST(ClipGrads, LargeTensorsUseTheParallelPaths) {
  // Past the serial threshold of ops/multi_tensor.cpp: same results as a plain loop.
  const int64_t n = 100003;
  Tensor g = random_tensor({n}, 5, DType::F32, 2.0);
  g.data<float>()[777] = 0.0f;
  g.data<float>()[n - 1] = -7.5f;
  double sumsq = 0, mx = 0;
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = g.data<float>()[i];
    sumsq += v * v;
    mx = std::max(mx, std::fabs(v));
    zeros += v == 0.0;
  }
  EXPECT_NEAR(get_grad_norm_fp32({g}), std::sqrt(sumsq), 1e-12 * std::sqrt(sumsq));
  EXPECT_EQ(get_grad_norm_fp32({g}, std::numeric_limits<double>::infinity()), 7.5);
  EXPECT_EQ(count_zeros_fp32({g}), zeros);
  std::vector<Tensor> gs{g};
  EXPECT_FALSE(ops::non_finite_check_and_unscale_(gs, 0.5f));
  EXPECT_EQ(g.data<float>()[n - 1], -3.75f);
  g.data<float>()[n / 2] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(ops::non_finite_check_and_unscale_(gs, 1.0f));
}

TEST(ClipGrads, MegatronParameterFilters) {
  nn::Parameter sharded(zeros({4})), replicated(zeros({4})), tied(zeros({4}));
  sharded.tensor_model_parallel = true;
  tied.shared = true;
  EXPECT_TRUE(param_is_not_tensor_parallel_duplicate(sharded, 1));
  EXPECT_TRUE(param_is_not_tensor_parallel_duplicate(replicated, 0));
  EXPECT_FALSE(param_is_not_tensor_parallel_duplicate(replicated, 1));
  EXPECT_TRUE(param_is_not_shared(sharded));
  EXPECT_FALSE(param_is_not_shared(tied));
}

TEST(ClipGrads, NanOrInfErrorNamesIterationAndRank) {
  EXPECT_NO_THROW(check_for_nan_or_inf(1.5, "grad norm", 3));
  try {
    check_for_nan_or_inf(std::nan(""), "grad norm", 42);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[rank 0] iteration 42: found NaN in grad norm"), std::string::npos) << msg;
  }
  try {
    check_for_nan_or_inf(std::numeric_limits<double>::infinity(), "lm loss", 7);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("iteration 7: found Inf in lm loss"), std::string::npos)
        << e.what();
  }
}

TEST(ClipGrads, RejectsNonFloatGrads) {
  try {
    get_grad_norm_fp32({zeros({3, 2}, DType::BF16)}, std::numeric_limits<double>::infinity());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mcore::testing
