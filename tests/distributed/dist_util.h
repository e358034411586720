// Helpers for the distributed tests: every rank fills its tensors from a formula of (rank,
// index), so each rank can compute the expected result of a collective locally, without
// trusting any communication. The formulas keep every partial sum exact in the dtype (small
// integers for bf16, multiples of 1/8 for fp32, large integers for int64), so the reduction
// order MPI picks cannot change the result and comparisons are exact.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "mcore/comm/distributed.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::testing {

// Value of element i on rank r; `salt` varies it between tensors of one test.
inline double dist_value(DType dtype, int r, int64_t i, int salt = 0) {
  switch (dtype) {
    case DType::I64:  // beyond 32 bits, to catch a narrowing path
      return static_cast<double>((static_cast<int64_t>(r + 1 + salt) << 33) + i * 7 - 3 * r);
    case DType::BF16:  // integers in [-2, 12]: every sum over <= 8 ranks is exact in bf16
      return static_cast<double>((r + 1 + salt) % 9 + (i * 3 + r) % 5 - 2);
    default:  // multiples of 1/8 in [-6, 6.5]: sums exact in fp32
      return static_cast<double>((r * 31 + i * 17 + salt * 5) % 101) / 8.0 - 6.0;
  }
}

// A tensor of `shape` holding dist_value(dtype, r, i, salt) for flat index i.
inline Tensor dist_tensor(const Shape& shape, DType dtype, int r, int salt = 0) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist_value(dtype, r, i, salt);
  return t.to(dtype);
}

// A tensor from an arbitrary formula of the flat index (computed in float64, then converted).
inline Tensor formula_tensor(const Shape& shape, DType dtype,
                             const std::function<double(int64_t)>& f) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = f(i);
  return t.to(dtype);
}

inline std::string dtype_trace(DType d) {
  return std::string("dtype ") + dtype_name(d);
}

}  // namespace mcore::testing
