// A user-defined autograd::Function, as a framework developer writes one: saved tensors and
// saved values, several tensor inputs and outputs, an input that needs no gradient
// (needs_input_grad), an output whose gradient never arrives (given as zeros), and a float64
// gradient check of the whole.
#include <gtest/gtest.h>

#include "mcore/autograd/function.h"
#include "mcore/nn/functional.h"
#include "mcore/ops/elementwise.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

// (u, v) = (a * b * s, a + b) with a scalar s saved in the context. Counts the backward calls
// that computed b's gradient, so a test can see needs_input_grad skip it.
int g_b_grads_computed = 0;

struct MulAdd : autograd::Function<MulAdd> {
  static std::vector<Tensor> forward(autograd::AutogradContext* ctx, const Tensor& a,
                                     const Tensor& b, double s) {
    ctx->save_for_backward({a, b});
    ctx->save("s", s);
    return {ops::scale(ops::mul(a, b), s), ops::add(a, b)};
  }
  static std::vector<Tensor> backward(autograd::AutogradContext* ctx, std::vector<Tensor> g) {
    const Tensor& a = ctx->saved_tensors()[0];
    const Tensor& b = ctx->saved_tensors()[1];
    const double s = ctx->get<double>("s");
    Tensor ga = ops::add(ops::scale(ops::mul(g[0], b), s), g[1]);
    Tensor gb;
    if (ctx->needs_input_grad(1)) {
      gb = ops::add(ops::scale(ops::mul(g[0], a), s), g[1]);
      ++g_b_grads_computed;
    }
    return {ga, gb};
  }
};

TEST(CustomFunction, GradcheckBothOutputs) {
  Tensor a = testing::random_tensor({3, 4}, 41).set_requires_grad(true);
  Tensor b = testing::random_tensor({3, 4}, 42).set_requires_grad(true);
  auto fn = [](const std::vector<Tensor>& in) {
    std::vector<Tensor> out = MulAdd::apply(in[0], in[1], 1.5);
    return F::add(F::mul(out[0], out[0]), out[1]);  // both outputs reach the loss
  };
  EXPECT_TRUE(testing::gradcheck(fn, {a, b}));
}

TEST(CustomFunction, UnusedOutputAndNoGradInput) {
  Tensor a = testing::random_tensor({5}, 43).set_requires_grad(true);
  Tensor b = testing::random_tensor({5}, 44);  // needs no gradient
  std::vector<Tensor> out = MulAdd::apply(a, b, 2.0);
  ASSERT_TRUE(out[0].requires_grad());
  g_b_grads_computed = 0;
  F::sum(out[0]).backward();  // out[1]'s gradient never arrives: zeros
  EXPECT_TENSOR_CLOSE(a.grad(), ops::scale(b, 2.0), 0, 0);
  EXPECT_FALSE(b.grad().defined());
  EXPECT_EQ(g_b_grads_computed, 0) << "needs_input_grad(1) was true for an input without grad";
  // With b requiring grad the same function computes it.
  Tensor b2 = b.clone().set_requires_grad(true);
  F::sum(MulAdd::apply(a, b2, 2.0)[0]).backward();
  EXPECT_EQ(g_b_grads_computed, 1);
  EXPECT_TENSOR_CLOSE(b2.grad(), ops::scale(a, 2.0), 0, 0);
}

TEST(CustomFunction, NoGradGuardRecordsNothing) {
  Tensor a = testing::random_tensor({2}, 45).set_requires_grad(true);
  NoGradGuard guard;
  std::vector<Tensor> out = MulAdd::apply(a, a, 1.0);
  EXPECT_FALSE(out[0].requires_grad());
}

}  // namespace
}  // namespace mcore
