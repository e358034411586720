// Fused AdamW (mcore/ops/adam.h) against torch.optim.AdamW: 100 steps on the generator's random
// gradients, the parameter compared after every step; the mixed-precision form; bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/ops/adam.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

constexpr const char* kGroup = "numerics";

// gen_numerics.py: lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight_decay 0.1.
ops::AdamConfig torch_config() {
  ops::AdamConfig c;
  c.lr = 1e-2;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = 0.1;
  return c;
}

// Runs 100 steps in `dtype` and compares with the torch trajectory after each step.
// Tolerances: float32 rtol 1e-6: the update evaluates PyTorch's expression in PyTorch's order,
// so only FMA contraction differs (~1 ulp per step, not amplified: Adam's step is bounded by
// lr); float64: 1e-12.
void check_trajectory(DType dtype, double rtol, double atol) {
  Tensor p = load_ref(kGroup, "adam_p0").to(dtype);
  Tensor grads = load_ref(kGroup, "adam_grads").to(dtype);  // [100, 7, 13]
  std::string tag = dtype == DType::F32 ? "f32" : "f64";
  Tensor traj = load_ref(kGroup, "adam_traj_" + tag);
  Tensor m = zeros(p.shape(), dtype), v = zeros(p.shape(), dtype);
  const ops::AdamConfig cfg = torch_config();
  for (int64_t s = 0; s < grads.size(0); ++s) {
    ops::adam_step_(p, grads.select(0, s).contiguous(), m, v, s + 1, cfg);
    ASSERT_TRUE(tensors_close(p, traj.select(0, s), rtol, atol)) << "after step " << s + 1;
  }
  EXPECT_TENSOR_CLOSE(m, load_ref(kGroup, "adam_exp_avg_" + tag), rtol, atol);
  EXPECT_TENSOR_CLOSE(v, load_ref(kGroup, "adam_exp_avg_sq_" + tag), rtol, atol);
}

TEST(Adam, MatchesTorchAdamWFloat32) {
  check_trajectory(DType::F32, 1e-6, 1e-7);
}

TEST(Adam, MatchesTorchAdamWFloat64) {
  check_trajectory(DType::F64, 1e-12, 1e-14);
}

TEST(Adam, MixedPrecisionKeepsFp32MainParams) {
  Tensor p0 = load_ref(kGroup, "adam_p0");
  Tensor grads = load_ref(kGroup, "adam_grads");
  Tensor traj = load_ref(kGroup, "adam_traj_f32");
  for (DType model_dtype : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(model_dtype));
    Tensor main = p0.clone(), model = p0.to(model_dtype);
    Tensor m = zeros(p0.shape()), v = zeros(p0.shape());
    for (int64_t s = 0; s < grads.size(0); ++s) {
      ops::adam_step_with_main_(model, main, grads.select(0, s).contiguous(), m, v, s + 1,
                                torch_config());
      // The main copy follows fp32 AdamW exactly as adam_step_ does (same tolerance), and the
      // model parameter is the main parameter rounded once.
      ASSERT_TRUE(tensors_close(main, traj.select(0, s), 1e-6, 1e-7)) << "step " << s + 1;
      ASSERT_TRUE(tensors_close(model, main.to(model_dtype), 0, 0)) << "step " << s + 1;
    }
  }
}

TEST(Adam, LowPrecisionGradsAreReadAsFloat) {
  // A bf16 gradient gives exactly the update of its float32 value.
  Tensor g = load_ref(kGroup, "adam_grads").select(0, 0).contiguous().to(DType::BF16);
  Tensor p1 = load_ref(kGroup, "adam_p0"), p2 = p1.clone();
  Tensor m1 = zeros(p1.shape()), v1 = zeros(p1.shape()), m2 = zeros(p1.shape()),
         v2 = zeros(p1.shape());
  for (int64_t s = 1; s <= 3; ++s) {
    ops::adam_step_(p1, g, m1, v1, s, torch_config());
    ops::adam_step_(p2, g.to(DType::F32), m2, v2, s, torch_config());
  }
  EXPECT_TENSOR_CLOSE(p1, p2, 0, 0);
  EXPECT_TENSOR_CLOSE(v1, v2, 0, 0);
}

TEST(Adam, ClosedFormFirstStep) {
  // Step 1 with bias correction: m_hat = g, v_hat = g^2, so p <- p(1 - lr wd) - lr g / (|g| + eps).
  Tensor p = from_vector<double>({1.0, -2.0, 0.5, 3.0});
  Tensor g = from_vector<double>({0.5, -1e-3, 0.0, 4.0});
  Tensor m = zeros({4}, DType::F64), v = zeros({4}, DType::F64);
  ops::AdamConfig c;
  c.lr = 0.1;
  c.weight_decay = 0.01;
  c.eps = 1e-8;
  ops::adam_step_(p, g, m, v, 1, c);
  std::vector<double> pv = to_vector<double>(p), p0 = {1.0, -2.0, 0.5, 3.0},
                      gv = {0.5, -1e-3, 0.0, 4.0};
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(pv[i], p0[i] * (1 - 0.1 * 0.01) - 0.1 * gv[i] / (std::fabs(gv[i]) + 1e-8), 1e-14)
        << i;
  // Without bias correction the first step is (1 - b1) g / (sqrt(1 - b2) |g| + eps).
  Tensor q = from_vector<double>({1.0}), mq = zeros({1}, DType::F64), vq = zeros({1}, DType::F64);
  c.bias_correction = false;
  c.weight_decay = 0;
  ops::adam_step_(q, from_vector<double>({2.0}), mq, vq, 1, c);
  EXPECT_NEAR(to_vector<double>(q)[0], 1.0 - 0.1 * 0.1 * 2.0 / (std::sqrt(0.001) * 2.0 + 1e-8),
              1e-14);
}

TEST(Adam, LargeTensorUsesParallelPathIdentically) {
  // The OpenMP loop must give the same bits as element-wise updates of the pieces.
  Tensor p = random_tensor({70001}, 3, DType::F32), g = random_tensor({70001}, 4, DType::F32);
  Tensor m = zeros({70001}), v = zeros({70001});
  Tensor ps = p.narrow(0, 0, 100).clone(), gs = g.narrow(0, 0, 100).contiguous();
  Tensor ms = zeros({100}), vs = zeros({100});
  for (int64_t s = 1; s <= 2; ++s) {
    ops::adam_step_(p, g, m, v, s, torch_config());
    ops::adam_step_(ps, gs, ms, vs, s, torch_config());
  }
  EXPECT_TENSOR_CLOSE(p.narrow(0, 0, 100), ps, 0, 0);
}

TEST(Adam, BadInput) {
  Tensor p = zeros({4, 3}), m = zeros({4, 3}), v = zeros({4, 3});
  try {
    ops::adam_step_(p, zeros({3, 5}), m, v, 1, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[4, 3]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[3, 5]"), std::string::npos) << e.message();
  }
  Tensor mb = zeros({4, 3}, DType::BF16);
  EXPECT_THROW(ops::adam_step_(p, zeros({4, 3}), mb, v, 1, {}), Error);             // state dtype
  EXPECT_THROW(ops::adam_step_(p, zeros({4, 3}, DType::F64), m, v, 1, {}), Error);  // grad dtype
  Tensor pb = zeros({4, 3}, DType::BF16);
  EXPECT_THROW(ops::adam_step_(pb, zeros({4, 3}), m, v, 1, {}), Error);  // bf16 param needs main
  EXPECT_THROW(ops::adam_step_(p, zeros({4, 3}), m, v, 0, {}), Error);   // step from 1
  Tensor pt = zeros({3, 4}).transpose(0, 1);
  EXPECT_THROW(ops::adam_step_(pt, zeros({4, 3}), m, v, 1, {}), Error);  // non-contiguous
  Tensor model = zeros({5}, DType::BF16);
  try {
    ops::adam_step_with_main_(model, p, zeros({4, 3}), m, v, 1, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[5]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[4, 3]"), std::string::npos) << e.message();
  }
  Tensor model32 = zeros({4, 3});
  EXPECT_THROW(ops::adam_step_with_main_(model32, p, zeros({4, 3}), m, v, 1, {}), Error);
}

}  // namespace
}  // namespace mcore::testing
