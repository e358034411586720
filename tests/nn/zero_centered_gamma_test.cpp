// LayerNorm / RMSNorm with zero_centered_gamma (Megatron's --apply-layernorm-1p): the stored
// weight starts at 0, and the module with weight w behaves exactly like the plain module with
// weight 1 + w - same output, same input gradient, and the same gradient w.r.t. its weight (the
// shift by one does not change it). Every check fails if the option is ignored: the init would be
// 1, and the forward would scale by w instead of 1 + w.
#include <gtest/gtest.h>

#include <type_traits>

#include "mcore/nn/functional.h"
#include "mcore/nn/norm.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;

constexpr int64_t kHidden = 10;

// Output and gradients of one module on x under the loss sum(y * r).
struct NormRun {
  Tensor y, dx, dweight, dbias;
};

template <class Norm>
NormRun run_norm(const Norm& norm, const Tensor& x_in, const Tensor& r) {
  Tensor x = x_in.detach().clone().set_requires_grad(true);
  Tensor y = norm.forward(x);
  F::sum(F::mul(y, r)).backward();
  NormRun out{y.detach(), x.grad(), norm.weight()->grad(), Tensor()};
  if constexpr (std::is_same_v<Norm, nn::LayerNorm>) out.dbias = norm.bias()->grad();
  return out;
}

void set(const nn::ParameterPtr& p, const Tensor& value) {
  NoGradGuard g;
  p->copy_(value);
}

TEST(ZeroCenteredGamma, WeightStartsAtZeroAndTheNormStartsAsIdentityAffine) {
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    nn::LayerNorm ln(kHidden, 1e-5, true, dt, /*zero_centered_gamma=*/true);
    nn::RMSNorm rms(kHidden, 1e-5, dt, /*zero_centered_gamma=*/true);
    EXPECT_TRUE(ln.zero_centered_gamma() && rms.zero_centered_gamma());
    EXPECT_EQ(ln.weight()->dtype(), dt);
    EXPECT_EQ(to_vector<float>(ln.weight()->to(DType::F32)), std::vector<float>(kHidden, 0.0f));
    EXPECT_EQ(to_vector<float>(ln.bias()->to(DType::F32)), std::vector<float>(kHidden, 0.0f));
    EXPECT_EQ(to_vector<float>(rms.weight()->to(DType::F32)), std::vector<float>(kHidden, 0.0f));
    // Still norm parameters: no weight decay (as the plain norms).
    EXPECT_TRUE(ln.weight()->no_weight_decay && ln.bias()->no_weight_decay);
    EXPECT_TRUE(rms.weight()->no_weight_decay);
    // The same names as the plain norms, so checkpoints keep Megatron's state-dict keys.
    EXPECT_EQ(ln.named_parameters().size(), 2u);
    EXPECT_EQ(rms.named_parameters().size(), 1u);

    // At init the scale is 1 + 0: the same output as a freshly built plain norm.
    nn::LayerNorm plain_ln(kHidden, 1e-5, true, dt);
    nn::RMSNorm plain_rms(kHidden, 1e-5, dt);
    Tensor x = random_tensor({3, kHidden}, 1, dt, 2.0);
    NoGradGuard g;
    EXPECT_TENSOR_CLOSE(ln.forward(x), plain_ln.forward(x), 0, 0);
    EXPECT_TENSOR_CLOSE(rms.forward(x), plain_rms.forward(x), 0, 0);
  }
}

TEST(ZeroCenteredGamma, LayerNormEqualsThePlainNormWithWeightOnePlusW) {
  for (DType dt : {DType::F64, DType::F32}) {
    SCOPED_TRACE(dtype_name(dt));
    const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
    Tensor w = random_tensor({kHidden}, 2, dt, 0.5), b = random_tensor({kHidden}, 3, dt, 0.5);
    Tensor x = random_tensor({2, 3, kHidden}, 4, dt, 3.0);
    Tensor r = random_tensor({2, 3, kHidden}, 5, dt);

    nn::LayerNorm zc(kHidden, 1e-5, true, dt, /*zero_centered_gamma=*/true);
    set(zc.weight(), w);
    set(zc.bias(), b);
    nn::LayerNorm plain(kHidden, 1e-5, true, dt);
    set(plain.weight(), F::add(w, ones({kHidden}, dt)));
    set(plain.bias(), b);

    const NormRun got = run_norm(zc, x, r), want = run_norm(plain, x, r);
    EXPECT_TENSOR_CLOSE(got.y, want.y, tol, tol);
    EXPECT_TENSOR_CLOSE(got.dx, want.dx, tol, tol);
    EXPECT_TENSOR_CLOSE(got.dweight, want.dweight, tol, tol);
    EXPECT_TENSOR_CLOSE(got.dbias, want.dbias, tol, tol);
    // The stored weight is still w (the forward does not write 1 + w back).
    EXPECT_TENSOR_CLOSE(*zc.weight(), w, 0, 0);
    // Not the plain norm with weight w: the option really changes the scale.
    EXPECT_GT(
        testing::max_rel_error(got.y, run_norm(nn::LayerNorm(kHidden, 1e-5, true, dt), x, r).y),
        1e-2);
  }
}

TEST(ZeroCenteredGamma, RMSNormEqualsThePlainNormWithWeightOnePlusW) {
  for (DType dt : {DType::F64, DType::F32}) {
    SCOPED_TRACE(dtype_name(dt));
    const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
    Tensor w = random_tensor({kHidden}, 6, dt, 0.5);
    Tensor x = random_tensor({4, kHidden}, 7, dt, 3.0), r = random_tensor({4, kHidden}, 8, dt);

    nn::RMSNorm zc(kHidden, 1e-5, dt, /*zero_centered_gamma=*/true);
    set(zc.weight(), w);
    nn::RMSNorm plain(kHidden, 1e-5, dt);
    set(plain.weight(), F::add(w, ones({kHidden}, dt)));

    const NormRun got = run_norm(zc, x, r), want = run_norm(plain, x, r);
    EXPECT_TENSOR_CLOSE(got.y, want.y, tol, tol);
    EXPECT_TENSOR_CLOSE(got.dx, want.dx, tol, tol);
    EXPECT_TENSOR_CLOSE(got.dweight, want.dweight, tol, tol);
    EXPECT_TENSOR_CLOSE(*zc.weight(), w, 0, 0);
  }
}

// The weight gradient reaches the parameter itself (a leaf), so the optimizer and DDP see it: the
// + 1 is part of the graph, not a copy made outside it.
TEST(ZeroCenteredGamma, WeightGradientAccumulatesOnTheParameter) {
  nn::RMSNorm zc(kHidden, 1e-5, DType::F64, /*zero_centered_gamma=*/true);
  Tensor x = random_tensor({4, kHidden}, 9, DType::F64);
  F::sum(zc.forward(x)).backward();
  ASSERT_TRUE(zc.weight()->grad().defined());
  const Tensor first = zc.weight()->grad().clone();
  F::sum(zc.forward(x)).backward();
  EXPECT_TENSOR_CLOSE(zc.weight()->grad(), F::add(first, first), 1e-12, 1e-12);
}

}  // namespace
}  // namespace mcore
