// Walking the elements of strided tensors: calls fn(offset_0, ..., offset_k, n, inner strides)
// once per innermost row, so the per-element work is a plain strided loop the compiler can
// vectorize. Used by copies and by elementwise ops on non-contiguous inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore {

// Visits rows [r0, r1) of the iteration space `shape` (its last dimension is the row), giving
// for each operand k the element offset of the row start. `strides[k]` are operand k's strides
// (same rank as shape). Disjoint ranges may run on different threads.
template <size_t K, class Fn>
void for_each_row_range(const Shape& shape, const std::array<const Shape*, K>& strides, int64_t r0,
                        int64_t r1, Fn&& fn) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (shape_numel(shape) == 0 || r0 >= r1) return;
  if (nd == 0) {
    std::array<int64_t, K> off{};
    std::array<int64_t, K> inner{};
    fn(off, int64_t{1}, inner);
    return;
  }
  const int64_t n = shape[nd - 1];
  std::array<int64_t, K> inner;
  for (size_t k = 0; k < K; ++k) inner[k] = (*strides[k])[nd - 1];
  // The multi-index over the outer dimensions of row r0, and its offsets.
  std::vector<int64_t> idx(nd > 1 ? nd - 1 : 0, 0);
  std::array<int64_t, K> off{};
  int64_t rem = r0;
  for (int64_t d = nd - 2; d >= 0; --d) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
    for (size_t k = 0; k < K; ++k) off[k] += idx[d] * (*strides[k])[d];
  }
  for (int64_t r = r0; r < r1; ++r) {
    fn(off, n, inner);
    // Advance the multi-index over the outer dimensions.
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        for (size_t k = 0; k < K; ++k) off[k] += (*strides[k])[d];
        break;
      }
      for (size_t k = 0; k < K; ++k) off[k] -= (*strides[k])[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

// Rows of the iteration space `shape` (its last dimension is the row; a 0-d shape is one row).
inline int64_t row_count(const Shape& shape) {
  const int64_t last = shape.empty() ? 1 : shape.back();
  return last == 0 ? 0 : shape_numel(shape) / last;
}

// All rows of the iteration space.
template <size_t K, class Fn>
void for_each_row(const Shape& shape, const std::array<const Shape*, K>& strides, Fn&& fn) {
  for_each_row_range<K>(shape, strides, 0, row_count(shape), fn);
}

}  // namespace mcore
