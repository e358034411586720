// Dropout with a layout-independent mask. Element i of x (flat, row-major index) is kept iff
//
//     Philox::uniform(seed, stream, global_offset + i) > p
//
// and kept elements are scaled by 1 / (1 - p). uniform() lies in (0, 1] on a 2^-24 grid, so
// p = 0 keeps everything and p = 1 drops everything; P(keep) = 1 - p up to 2^-24. Because the
// mask is a pure function of (seed, stream, global element index), a rank holding elements
// [a, b) of a larger tensor (pass global_offset = a) draws exactly the mask the whole tensor
// has there, and the backward regenerates the mask from the same key instead of storing it.
// A tensor that is not one contiguous slice of the global tensor (a context-parallel rank's
// attention probabilities: a few query rows of every head, each row a prefix of the global
// row) passes a DropoutIndexMap instead of an offset.
// Raw kernels (differentiable form: mcore/nn/functional/dropout.h).
#pragma once

#include <cstdint>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// Viewing x as [slabs, rows, cols] (cols contiguous; slabs = numel / (rows * cols)), element
// (s, r, c) has the global flat index offset + s * slab_stride + r * row_stride + c.
struct DropoutIndexMap {
  uint64_t offset = 0;
  int64_t rows = 1;
  int64_t cols = 0;
  uint64_t row_stride = 0;
  uint64_t slab_stride = 0;
  // The map of a contiguous slice starting at `offset` (cols = 0: the whole tensor is one row).
  static DropoutIndexMap contiguous(uint64_t offset) { return {offset, 1, 0, 0, 0}; }
  bool is_contiguous() const { return cols == 0; }
};

// Training-mode dropout: y = x * keep / (1 - p), p in [0, 1]. global_offset is the global flat
// index of x's first element.
Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       uint64_t global_offset = 0);
// dx = dy * keep / (1 - p), with keep regenerated from the same key as the forward.
Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        uint64_t global_offset = 0);
// The same with elements placed by `map` (CPU only; a mapped tensor on a GPU is refused).
Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       const DropoutIndexMap& map);
Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        const DropoutIndexMap& map);
// The keep mask itself (uint8, 1 = kept) for a tensor of `shape`; for tests and debugging.
Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    uint64_t global_offset = 0);
Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    const DropoutIndexMap& map);

}  // namespace mcore::ops
