// Broadcasting arithmetic against PyTorch: y = (a + b) * b - a / b * 0.5 for bias, per-row
// scale, outer-product and same-shape broadcasts, forward and both gradients (fp32; the only
// differences are in the order the broadcast gradients are summed: rtol 1e-5, atol 1e-6).
#include <gtest/gtest.h>

#include "mcore/nn/functional.h"
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

TEST(ElementwiseReference, DivGradcheck) {
  Tensor a = testing::random_tensor({3, 4}, 21).set_requires_grad(true);
  Tensor b = F::add(testing::random_tensor({4}, 22), scalar_tensor(2.0, DType::F64)).detach();
  b.set_requires_grad(true);
  EXPECT_TRUE(
      testing::gradcheck([](const std::vector<Tensor>& in) { return expr(in[0], in[1]); }, {a, b}));
}

}  // namespace mcore
