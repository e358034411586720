// Large copies (mcore/tensor/copy.cpp) take the multi-threaded paths: contiguous chunks per
// thread, and strided copies split by rows with each thread starting mid-iteration. Every element
// must land where the single-threaded index arithmetic says, for slices, transposes and dtype
// conversions, and nothing outside the destination view may change.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>

#include "mcore/tensor/factory.h"
#include "mcore/tensor/tensor.h"

namespace mcore {
namespace {

// x[i, j, k] = i * 1e4 + j * 100 + k: distinct, exact in float32 for these sizes.
Tensor iota3(int64_t a, int64_t b, int64_t c) {
  Tensor t = empty({a, b, c});
  float* p = t.data<float>();
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c; ++k) p[(i * b + j) * c + k] = float(i * 10000 + j * 100 + k);
  return t;
}

TEST(TensorCopy, LargeSlicesIntoAFusedBuffer) {
  ASSERT_GE(omp_get_max_threads(), 1);
  // The split backward's pattern: three slices of the last dimension of a [s, b, 3h] buffer.
  const int64_t s = 300, b = 7, h = 64;
  Tensor fused = full({s, b, 3 * h}, -1.0);
  for (int piece = 0; piece < 3; ++piece) {
    Tensor src = iota3(s, b, h);
    fused.narrow(2, piece * h, h).copy_(src);
  }
  const float* p = fused.data<float>();
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < 3 * h; ++k)
        ASSERT_EQ(p[(i * b + j) * 3 * h + k], float(i * 10000 + j * 100 + k % h))
            << i << "," << j << "," << k;
}

TEST(TensorCopy, LargeTransposeAndConversion) {
  const int64_t a = 90, b = 40, c = 33;  // 118800 elements: above the parallel threshold
  Tensor x = iota3(a, b, c);
  Tensor t = x.transpose(0, 2).contiguous();  // [c, b, a], strided source rows
  ASSERT_EQ(t.shape(), (Shape{c, b, a}));
  const float* tp = t.data<float>();
  for (int64_t k = 0; k < c; ++k)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t i = 0; i < a; ++i)
        ASSERT_EQ(tp[(k * b + j) * a + i], float(i * 10000 + j * 100 + k));
  Tensor d = x.transpose(0, 1).to(DType::F64).contiguous();  // conversion on strided rows
  const double* dp = d.data<double>();
  for (int64_t j = 0; j < b; ++j)
    for (int64_t i = 0; i < a; ++i)
      for (int64_t k = 0; k < c; ++k)
        ASSERT_EQ(dp[(j * a + i) * c + k], double(i * 10000 + j * 100 + k));
  // A large contiguous same-dtype copy (chunked memcpy).
  Tensor big = iota3(400, 30, 33);
  Tensor cl = big.clone();
  const float* bp = big.data<float>();
  const float* cp = cl.data<float>();
  for (int64_t e = 0; e < big.numel(); ++e) ASSERT_EQ(cp[e], bp[e]) << e;
}

}  // namespace
}  // namespace mcore
