// GeLU (erf and tanh), SiLU and SwiGLU: forward and backward against PyTorch in float32 and
// bfloat16, float64 gradient checks, edge values and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional.h"
#include "mcore/ops/activation.h"
#include "mcore/ops/elementwise.h"
#include "tests/common/gradcheck.h"
#include "tests/ops/act_norm_util.h"

namespace mcore::testing {
namespace {

using Fn = std::function<Tensor(const Tensor&)>;

struct ActCase {
  const char* name;
  Fn fn;
};

std::vector<ActCase> act_cases() {
  return {
      {"gelu_none", [](const Tensor& x) { return F::gelu(x, ops::GeluApproximate::kNone); }},
      {"gelu_tanh", [](const Tensor& x) { return F::gelu(x, ops::GeluApproximate::kTanh); }},
      {"silu", [](const Tensor& x) { return F::silu(x); }},
      {"swiglu", [](const Tensor& x) { return F::swiglu(x); }},
  };
}

// Runs the differentiable op forward and backward on PyTorch's inputs and compares output and
// input gradient (tolerances: tol_for in act_norm_util.h).
void check_against_torch(const ActCase& c, DType dtype) {
  const std::string p = std::string(c.name) + "_" + dtype_tag(dtype) + "_";
  Tensor x = act_norm_ref(p + "x", dtype);
  x.set_requires_grad(true);
  Tensor y = c.fn(x);
  ASSERT_EQ(y.dtype(), dtype);
  y.backward(act_norm_ref(p + "dy", dtype));
  Tol t = tol_for(dtype);
  EXPECT_TENSOR_CLOSE(y, act_norm_ref(p + "y", dtype), t.rtol, t.atol) << c.name << " forward";
  EXPECT_TENSOR_CLOSE(x.grad(), act_norm_ref(p + "dx", dtype), t.rtol, t.atol)
      << c.name << " backward";
}

TEST(Activation, MatchesTorchFloat32) {
  for (const ActCase& c : act_cases()) check_against_torch(c, DType::F32);
}

TEST(Activation, MatchesTorchBFloat16) {
  for (const ActCase& c : act_cases()) check_against_torch(c, DType::BF16);
}

TEST(Activation, GradcheckFloat64) {
  for (const ActCase& c : act_cases()) {
    for (const Shape& shape : {Shape{14}, Shape{3, 5, 6}, Shape{2, 1, 10}}) {
      Tensor x = random_tensor(shape, 11, DType::F64, 3.0);
      x.set_requires_grad(true);
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return c.fn(in[0]); }, {x}))
          << c.name << " " << shape_str(shape);
    }
  }
}

TEST(Activation, KnownValues) {
  Tensor x = from_vector<double>({-2.0, 0.0, 1.0});
  // gelu(1) = 0.5 (1 + erf(1/sqrt 2)) = Phi(1); gelu_tanh(1) by the formula.
  std::vector<double> g = to_vector<double>(ops::gelu_forward(x));
  EXPECT_NEAR(g[1], 0.0, 0);
  EXPECT_NEAR(g[2], 0.8413447460685429, 1e-15);
  EXPECT_NEAR(g[0], -2.0 * 0.022750131948179195, 1e-15);
  double t1 = 0.5 * (1 + std::tanh(std::sqrt(2 / M_PI) * (1 + 0.044715)));
  EXPECT_NEAR(to_vector<double>(ops::gelu_forward(x, ops::GeluApproximate::kTanh))[2], t1, 1e-15);
  EXPECT_NEAR(to_vector<double>(ops::silu_forward(x))[2], 1.0 / (1.0 + std::exp(-1.0)), 1e-15);
  // swiglu([gate | up]) = silu(gate) * up.
  Tensor s = ops::swiglu_forward(from_vector<double>({1.0, -2.0, 3.0, 0.5}, {1, 4}));
  ASSERT_EQ(s.shape(), (Shape{1, 2}));
  std::vector<double> sv = to_vector<double>(s);
  EXPECT_NEAR(sv[0], 3.0 / (1.0 + std::exp(-1.0)), 1e-15);
  EXPECT_NEAR(sv[1], 0.5 * -2.0 / (1.0 + std::exp(2.0)), 1e-15);
}

// Saturated inputs must give the limits, never NaN (exp overflow in the sigmoid).
TEST(Activation, LargeInputsStayFinite) {
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    Tensor x = from_vector<float>({-1000.f, -80.f, 80.f, 1000.f}).to(dt);
    Tensor dy = ones({4}, dt);
    for (auto y :
         {ops::gelu_forward(x), ops::gelu_forward(x, ops::GeluApproximate::kTanh),
          ops::silu_forward(x), ops::gelu_backward(dy, x),
          ops::gelu_backward(dy, x, ops::GeluApproximate::kTanh), ops::silu_backward(dy, x)}) {
      std::vector<double> v = to_vector<double>(y);
      for (double e : v) EXPECT_TRUE(std::isfinite(e)) << y.debug_string();
    }
    std::vector<double> s = to_vector<double>(ops::silu_forward(x));
    EXPECT_EQ(s[0], 0.0);
    EXPECT_EQ(s[3], 1000.0);
  }
}

TEST(Activation, NonContiguousInput) {
  Tensor x = random_tensor({6, 9}, 3, DType::F32, 2.0);
  Tensor xt = x.transpose(0, 1);  // [9, 6], strided
  EXPECT_TENSOR_CLOSE(ops::gelu_forward(xt), ops::gelu_forward(xt.contiguous()), 0, 0);
  EXPECT_TENSOR_CLOSE(ops::silu_backward(xt, xt),
                      ops::silu_backward(xt.contiguous(), xt.contiguous()), 0, 0);
  Tensor xs = x.narrow(1, 1, 8);  // rows of 8 with stride 9: [gate 4 | up 4]
  EXPECT_TENSOR_CLOSE(ops::swiglu_forward(xs), ops::swiglu_forward(xs.contiguous()), 0, 0);
}

// The fused op equals the unfused composition silu(gate) * up (in float32; in bf16 the
// composition would round twice).
TEST(Activation, SwigluMatchesComposition) {
  Tensor x = random_tensor({4, 3, 22}, 5, DType::F32, 3.0);
  Tensor gate = x.narrow(-1, 0, 11), up = x.narrow(-1, 11, 11);
  Tensor ref = ops::mul(ops::silu_forward(gate), up.contiguous());
  EXPECT_TENSOR_CLOSE(ops::swiglu_forward(x), ref, 1e-6, 1e-7);
}

TEST(Activation, BadInput) {
  Tensor odd = zeros({3, 5});
  std::string m = error_message([&] { ops::swiglu_forward(odd); });
  EXPECT_NE(m.find("[3, 5]"), std::string::npos) << m;
  EXPECT_NE(m.find("even"), std::string::npos) << m;

  m = error_message([&] { ops::gelu_backward(zeros({2, 3}), zeros({3, 2})); });
  EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find("[3, 2]"), std::string::npos) << m;

  m = error_message([&] { ops::silu_backward(zeros({4}, DType::F64), zeros({4})); });
  EXPECT_NE(m.find("float64"), std::string::npos) << m;
  EXPECT_NE(m.find("float32"), std::string::npos) << m;

  m = error_message([&] { ops::swiglu_backward(zeros({2, 4}), zeros({2, 6})); });
  EXPECT_NE(m.find("[2, 4]"), std::string::npos) << m;
  EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;

  m = error_message([&] { ops::gelu_forward(zeros({4}, DType::I64)); });
  EXPECT_NE(m.find("int64"), std::string::npos) << m;
}

}  // namespace
}  // namespace mcore::testing
