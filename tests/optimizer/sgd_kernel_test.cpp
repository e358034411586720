// ops::sgd_step_ beyond the torch trajectories of optimizer_test.cpp (momentum 0.9, no
// dampening): every option of torch.optim.SGD's formula (dampening, Nesterov, no momentum),
// checked in float64 against the formula written out, the mixed-precision form, and bad input.
#include <gtest/gtest.h>

#include "mcore/ops/sgd.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

TEST(SgdKernel, FollowsTorchSgdFormulaForEveryOption) {
  struct Case {
    double momentum, dampening, wd;
    bool nesterov;
  };
  for (const Case& c : {Case{0.0, 0.0, 0.0, false}, Case{0.0, 0.0, 0.05, false},
                        Case{0.9, 0.1, 0.01, false}, Case{0.8, 0.0, 0.02, true}}) {
    SCOPED_TRACE(std::to_string(c.momentum) + " " + std::to_string(c.dampening) + " " +
                 std::to_string(c.nesterov));
    ops::SgdConfig cfg;
    cfg.lr = 0.05;
    cfg.momentum = c.momentum;
    cfg.dampening = c.dampening;
    cfg.weight_decay = c.wd;
    cfg.nesterov = c.nesterov;
    Tensor p = random_tensor({5, 7}, 1), buf = zeros({5, 7}, DType::F64);
    Tensor ref_p = p.clone(), ref_buf = zeros({5, 7}, DType::F64);
    for (int step = 0; step < 4; ++step) {
      const Tensor g = random_tensor({5, 7}, 10 + step);
      ops::sgd_step_(p, g, buf, step == 0, cfg);
      for (int64_t i = 0; i < p.numel(); ++i) {
        double& rp = ref_p.data<double>()[i];
        double& rb = ref_buf.data<double>()[i];
        double d = g.data<double>()[i] + c.wd * rp;
        if (c.momentum != 0) {
          rb = step == 0 ? d : c.momentum * rb + (1 - c.dampening) * d;
          d = c.nesterov ? d + c.momentum * rb : rb;
        }
        rp -= cfg.lr * d;
      }
      ASSERT_TRUE(tensors_close(p, ref_p, 1e-14, 1e-15)) << "step " << step;
    }
  }
}

TEST(SgdKernel, MixedPrecisionWritesTheRoundedMainParam) {
  ops::SgdConfig cfg;
  cfg.lr = 0.1;
  cfg.momentum = 0.9;
  Tensor main = random_tensor({3, 11}, 2, DType::F32), model = main.to(DType::BF16);
  Tensor buf = zeros({3, 11}), twin = main.clone(), twin_buf = zeros({3, 11});
  for (int step = 0; step < 3; ++step) {
    const Tensor g = random_tensor({3, 11}, 20 + step, DType::F32);
    ops::sgd_step_with_main_(model, main, g, buf, step == 0, cfg);
    ops::sgd_step_(twin, g, twin_buf, step == 0, cfg);
    EXPECT_TENSOR_CLOSE(main, twin, 0, 0);
    EXPECT_TENSOR_CLOSE(model, main.to(DType::BF16), 0, 0);
  }
}

TEST(SgdKernel, RejectsBadInput) {
  ops::SgdConfig cfg;
  cfg.momentum = 0.9;
  Tensor p = zeros({4, 3}), buf = zeros({4, 3});
  auto expect_error = [](auto&& fn, const std::string& a, const std::string& b) {
    try {
      fn();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(a), std::string::npos) << msg;
      EXPECT_NE(msg.find(b), std::string::npos) << msg;
    }
  };
  Tensor g_bad = zeros({2, 5});
  expect_error([&] { ops::sgd_step_(p, g_bad, buf, true, cfg); }, "[4, 3]", "[2, 5]");
  Tensor buf_bad = zeros({7});
  expect_error([&] { ops::sgd_step_(p, zeros({4, 3}), buf_bad, true, cfg); }, "[7]", "[4, 3]");
  Tensor p16 = zeros({4, 3}, DType::BF16);
  expect_error(
      [&] {
        ops::sgd_step_(p16, zeros({4, 3}), buf, true, cfg);
      },
      "bfloat16", "sgd_step_with_main_");
  Tensor g_int = zeros({4, 3}, DType::F64);
  expect_error([&] { ops::sgd_step_(p, g_int, buf, true, cfg); }, "float64", "float32");
  cfg.nesterov = true;
  cfg.dampening = 0.5;
  expect_error([&] { ops::sgd_step_(p, zeros({4, 3}), buf, true, cfg); }, "Nesterov", "dampening");
}

}  // namespace
}  // namespace mcore::testing
