// Products over an empty inner dimension (K = 0), as an expert that received no token computes:
// the result is zeros (beta 0 never reads the output, which may hold anything), and the weight
// gradient of a linear layer fed zero rows is zeros, not the allocator's leftovers.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mcore/nn/functional.h"
#include "mcore/ops/matmul.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

TEST(MatmulEmptyInner, ZerosWhateverTheOutputHeld) {
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    SCOPED_TRACE(shape_str({static_cast<int64_t>(dt)}));
    const Tensor a = zeros({5, 0}, dt), b = zeros({0, 7}, dt);
    const Tensor c = ops::matmul(a, b).to(DType::F64);
    ASSERT_EQ(c.shape(), (Shape{5, 7}));
    for (int64_t i = 0; i < c.numel(); ++i) EXPECT_EQ(c.data<double>()[i], 0.0) << i;
  }
  Tensor out = full({5, 7}, std::numeric_limits<double>::quiet_NaN(), DType::F32);
  ops::matmul_out(out, zeros({0, 5}), zeros({0, 7}), /*ta=*/true, /*tb=*/false, 1.0, 0.0);
  for (int64_t i = 0; i < out.numel(); ++i) EXPECT_EQ(out.data<float>()[i], 0.0f) << i;
  // beta 1 keeps C.
  Tensor kept = full({5, 7}, 2.0, DType::F32);
  ops::matmul_out(kept, zeros({5, 0}), zeros({0, 7}), false, false, 1.0, 1.0);
  for (int64_t i = 0; i < kept.numel(); ++i) EXPECT_EQ(kept.data<float>()[i], 2.0f) << i;
}

TEST(MatmulEmptyInner, LinearOnZeroRowsGivesZeroWeightGradient) {
  Tensor w = randn({6, 4}, {3, 1});
  w.set_requires_grad(true);
  Tensor x = zeros({0, 4});
  Tensor y = F::linear(x, w);
  ASSERT_EQ(y.shape(), (Shape{0, 6}));
  F::sum(y).backward();
  ASSERT_TRUE(w.grad().defined());
  const Tensor g = w.grad().contiguous();
  for (int64_t i = 0; i < g.numel(); ++i) EXPECT_EQ(g.data<float>()[i], 0.0f) << i;
}

}  // namespace
}  // namespace mcore::testing
