// Broadcasting binary ops (mcore/ops/elementwise.h) at sizes that take the threaded row path
// (> 65536 elements): add, mul and in-place add_ against an explicit element loop over the same
// float values, bitwise (each element is one float operation, so any correct order gives the
// same bits); broadcast patterns with unit-stride rows (a [S, 1, H] table), strided rows (a
// [1, B, 1] column) and a non-contiguous output operand.
#include <gtest/gtest.h>

#include <vector>

#include "mcore/ops/elementwise.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

// The value of broadcast operand x (shape bs, contiguous) at full index (i, j, k).
float at(const std::vector<float>& x, const Shape& bs, int64_t i, int64_t j, int64_t k) {
  const int64_t ii = bs[0] == 1 ? 0 : i, jj = bs[1] == 1 ? 0 : j, kk = bs[2] == 1 ? 0 : k;
  return x[(ii * bs[1] + jj) * bs[2] + kk];
}

TEST(Broadcast, LargeBinaryOpsMatchElementLoop) {
  const Shape full = {257, 4, 100};  // 102800 elements
  const Shape patterns[] = {{257, 1, 100}, {1, 4, 1}, {257, 4, 1}, {1, 1, 100}};
  uint64_t seed = 7;
  for (const Shape& bs : patterns) {
    Tensor a = random_tensor(full, seed++, DType::F32);
    Tensor b = random_tensor(bs, seed++, DType::F32);
    const std::vector<float> av = to_vector<float>(a), bv = to_vector<float>(b);
    const std::vector<float> sum = to_vector<float>(ops::add(a, b, 0.5));
    const std::vector<float> prod = to_vector<float>(ops::mul(a, b));
    Tensor inplace = a.clone();
    ops::add_(inplace, b);
    const std::vector<float> acc = to_vector<float>(inplace);
    // a as a transposed (non-contiguous) view of the same values.
    Tensor at_view = a.transpose(0, 2).contiguous().transpose(0, 2);
    const std::vector<float> sum_t = to_vector<float>(ops::add(at_view, b, 0.5));
    int64_t bad = 0;
    for (int64_t i = 0; i < full[0]; ++i)
      for (int64_t j = 0; j < full[1]; ++j)
        for (int64_t k = 0; k < full[2]; ++k) {
          const int64_t e = (i * full[1] + j) * full[2] + k;
          const float x = av[e], y = at(bv, bs, i, j, k);
          bad += sum[e] != x + 0.5f * y;
          bad += prod[e] != x * y;
          bad += acc[e] != x + y;
          bad += sum_t[e] != x + 0.5f * y;
        }
    EXPECT_EQ(bad, 0) << "broadcast " << shape_str(bs) << " onto " << shape_str(full);
  }
}

}  // namespace
}  // namespace mcore::testing
