// Broadcasting arithmetic against PyTorch: y = (a + b) * b - a / b * 0.5 and the axpy
// a + alpha * b for bias, per-row scale, outer-product and same-shape broadcasts, forward and both
// gradients (fp32; the only differences are in the order the broadcast gradients are summed:
// rtol 1e-5, atol 1e-6).
#include <gtest/gtest.h>

#include "mcore/nn/functional.h"
#include "mcore/ops/elementwise.h"
#include "mcore/tensor/factory.h"
#include "tests/attention/attention_util.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore {

using testing::load_ref;

namespace {
Tensor expr(const Tensor& a, const Tensor& b) {
  return F::sub(F::mul(F::add(a, b), b), F::scale(F::div(a, b), 0.5));
}
}  // namespace

TEST(ElementwiseReference, BroadcastForwardBackward) {
  for (std::string name : {"bias", "rowscale", "outer", "same"}) {
    SCOPED_TRACE(name);
    Tensor a = load_ref("elementwise", name + "_a").set_requires_grad(true);
    Tensor b = load_ref("elementwise", name + "_b").set_requires_grad(true);
    Tensor y = expr(a, b);
    EXPECT_TENSOR_CLOSE(y, load_ref("elementwise", name + "_y"), 1e-5, 1e-6);
    y.backward(load_ref("elementwise", name + "_gy"));
    EXPECT_TENSOR_CLOSE(a.grad(), load_ref("elementwise", name + "_ga"), 1e-5, 1e-6);
    EXPECT_TENSOR_CLOSE(b.grad(), load_ref("elementwise", name + "_gb"), 1e-5, 1e-6);
  }
}

// axpy: z = a + alpha * b (torch.add(a, b, alpha=-0.75)) with b broadcast as a bias, a per-row
// scale, an outer factor or the same shape; F::axpy and the raw in-place ops::axpy_ (same-shape
// case) against PyTorch. One rounding of a product and a sum per element: rtol 1e-6.
TEST(ElementwiseReference, AxpyForwardBackward) {
  constexpr double kAlpha = -0.75;  // AXPY_ALPHA in gen_elementwise.py
  for (std::string name : {"bias", "rowscale", "outer", "same"}) {
    SCOPED_TRACE(name);
    Tensor a = load_ref("elementwise", name + "_a").set_requires_grad(true);
    Tensor b = load_ref("elementwise", name + "_b").set_requires_grad(true);
    Tensor z = F::axpy(kAlpha, b, a);
    EXPECT_TENSOR_CLOSE(z, load_ref("elementwise", name + "_axpy_y"), 1e-6, 1e-7);
    z.backward(load_ref("elementwise", name + "_axpy_gy"));
    EXPECT_TENSOR_CLOSE(a.grad(), load_ref("elementwise", name + "_axpy_ga"), 1e-6, 1e-7);
    EXPECT_TENSOR_CLOSE(b.grad(), load_ref("elementwise", name + "_axpy_gb"), 1e-5, 1e-6);
  }
  Tensor y = load_ref("elementwise", "same_a").clone();
  ops::axpy_(y, kAlpha, load_ref("elementwise", "same_b"));
  EXPECT_TENSOR_CLOSE(y, load_ref("elementwise", "same_axpy_y"), 1e-6, 1e-7);
  Tensor wrong = zeros({7, 8});
  testing::expect_error_naming([&] { ops::axpy_(y, 1.0, wrong); }, {"axpy_", "[7, 9]", "[7, 8]"});
}

TEST(ElementwiseReference, AxpyGradcheck) {
  Tensor y = testing::random_tensor({3, 4}, 23).set_requires_grad(true);
  Tensor x = testing::random_tensor({4}, 24).set_requires_grad(true);  // a bias
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return F::axpy(1.5, in[1], in[0]); }, {y, x}));
}

TEST(ElementwiseReference, DivGradcheck) {
  Tensor a = testing::random_tensor({3, 4}, 21).set_requires_grad(true);
  Tensor b = F::add(testing::random_tensor({4}, 22), scalar_tensor(2.0, DType::F64)).detach();
  b.set_requires_grad(true);
  EXPECT_TRUE(
      testing::gradcheck([](const std::vector<Tensor>& in) { return expr(in[0], in[1]); }, {a, b}));
}

}  // namespace mcore
