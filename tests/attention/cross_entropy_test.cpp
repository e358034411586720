// Fused cross-entropy (mcore/ops/cross_entropy.h): forward and backward against
// torch.nn.functional.cross_entropy(reduction='none') (computed in float64 from the same
// inputs), float64 gradient checks, and input validation.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional/cross_entropy.h"
#include "mcore/tensor/factory.h"
#include "tests/attention/attention_util.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using testing::expect_error_naming;
using testing::gradcheck;
using testing::leaf;
using testing::load_ref;
using testing::random_tensor;

constexpr const char* kGroup = "attention";

void run_reference(const std::string& n, DType dtype, bool with_mask, double loss_rtol,
                   double loss_atol, double grad_rtol, double grad_atol) {
  Tensor logits = leaf(load_ref(kGroup, n + "_logits").to(dtype));
  Tensor target = load_ref(kGroup, n + "_target");
  Tensor mask = with_mask ? load_ref(kGroup, n + "_mask") : Tensor();
  Tensor loss = F::cross_entropy(logits, target, mask);
  EXPECT_EQ(loss.dtype(), DType::F32);
  EXPECT_EQ(loss.shape(), target.shape());
  loss.backward(load_ref(kGroup, n + "_grad"));
  EXPECT_TENSOR_CLOSE(loss, load_ref(kGroup, n + "_loss"), loss_rtol, loss_atol);
  EXPECT_EQ(logits.grad().dtype(), dtype);
  EXPECT_TENSOR_CLOSE(logits.grad(), load_ref(kGroup, n + "_dlogits"), grad_rtol, grad_atol);
}

// float32: logsumexp over <= 37 logits of magnitude <= ~10 in float32 (a few ulp of a value of
// ~5) and softmax entries exp(x - lse): rtol 1e-5, atol 1e-6 for losses and gradients near 0.
TEST(CrossEntropy, ReferenceSbvWithMaskF32) {
  run_reference("ce_sbv", DType::F32, true, 1e-5, 1e-6, 1e-5, 1e-6);
}
// ignore_index (-100) targets give zero loss and zero gradient, as in PyTorch.
TEST(CrossEntropy, ReferenceIgnoreIndexF32) {
  run_reference("ce_ignore", DType::F32, false, 1e-5, 1e-6, 1e-5, 1e-6);
}
// bf16 logits: the loss is computed and returned in float32 from exact bf16 values, so it keeps
// the float32 tolerance; the logits gradient is rounded to bf16 once (2^-9 relative): rtol 1e-2,
// atol 1e-4 for tiny softmax entries.
TEST(CrossEntropy, ReferenceBf16) {
  run_reference("ce_bf16", DType::BF16, true, 1e-5, 1e-6, 1e-2, 1e-4);
}

// float64 gradient check on an odd [S, B, V] shape with a loss mask and an ignored target.
TEST(CrossEntropy, Gradcheck) {
  Tensor logits = leaf(random_tensor({3, 5, 7}, 1, DType::F64, 3.0));
  std::vector<int64_t> t(15);
  for (int i = 0; i < 15; ++i) t[i] = (i * 5 + 2) % 7;
  t[4] = -100;
  Tensor target = from_vector<int64_t>(t, {3, 5});
  Tensor mask = random_tensor({3, 5}, 2, DType::F64);
  auto fn = [&](const std::vector<Tensor>& in) { return F::cross_entropy(in[0], target, mask); };
  EXPECT_TRUE(gradcheck(fn, {logits}));
}

TEST(CrossEntropy, Int32TargetsMatchInt64) {
  Tensor logits = random_tensor({6, 11}, 3, DType::F32, 2.0);
  Tensor t64 = from_vector<int64_t>({0, 10, 3, 3, 7, 1});
  auto a = ops::cross_entropy_forward(logits, t64);
  auto b = ops::cross_entropy_forward(logits, t64.to(DType::I32));
  EXPECT_TENSOR_CLOSE(a.loss, b.loss, 0, 0);
  Tensor g = ones({6});
  EXPECT_TENSOR_CLOSE(ops::cross_entropy_backward(g, logits, t64, a.logsumexp),
                      ops::cross_entropy_backward(g, logits, t64.to(DType::I32), b.logsumexp), 0,
                      0);
}

// Large logits must not overflow: the max is subtracted before exp. The loss is lse - x[t] with
// both near 1000, where a float32 ulp is 6.1e-5, so 2 ulp of tolerance.
TEST(CrossEntropy, LargeLogitsAreStable) {
  Tensor logits = from_vector<float>({1000.f, 0.f, -1000.f, 999.f}, {1, 4});
  auto r = ops::cross_entropy_forward(logits, from_vector<int64_t>({3}));
  EXPECT_NEAR(r.loss.item(), std::log1p(std::exp(-1.0)) + 1.0, 1.3e-4);
}

TEST(CrossEntropy, BadInputsNameShapes) {
  Tensor logits = zeros({4, 3, 10});
  expect_error_naming(
      [&] {
        ops::cross_entropy_forward(logits, zeros({4, 2}, DType::I64));
      },
      {"[4, 2]", "[4, 3, 10]"});
  Tensor t = zeros({4, 3}, DType::I64);
  t.data<int64_t>()[5] = 10;
  expect_error_naming([&] { ops::cross_entropy_forward(logits, t); },
                      {"target 10", "[0, 10)", "[4, 3, 10]"});
  expect_error_naming(
      [&] {
        ops::cross_entropy_forward(logits, zeros({4, 3}));
      },
      {"float32", "[4, 3]"});
  expect_error_naming(
      [&] {
        ops::cross_entropy_forward(logits, zeros({4, 3}, DType::I64), zeros({3, 4}));
      },
      {"[3, 4]", "[4, 3]"});
  auto r = ops::cross_entropy_forward(logits, zeros({4, 3}, DType::I64));
  expect_error_naming(
      [&] {
        ops::cross_entropy_backward(zeros({4}), logits, zeros({4, 3}, DType::I64), r.logsumexp);
      },
      {"[4]", "[4, 3]"});
}

}  // namespace
}  // namespace mcore
