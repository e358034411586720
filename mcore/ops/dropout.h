// Dropout with a layout-independent mask. Element i of x (flat, row-major index) is kept iff
//
//     Philox::uniform(seed, stream, global_offset + i) > p
//
// and kept elements are scaled by 1 / (1 - p). uniform() lies in (0, 1] on a 2^-24 grid, so
// p = 0 keeps everything and p = 1 drops everything; P(keep) = 1 - p up to 2^-24. Because the
// mask is a pure function of (seed, stream, global element index), a rank holding elements
// [a, b) of a larger tensor (pass global_offset = a) draws exactly the mask the whole tensor
// has there, and the backward regenerates the mask from the same key instead of storing it.
// Raw kernels (differentiable form: mcore/nn/functional/dropout.h).
#pragma once

#include <cstdint>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// Training-mode dropout: y = x * keep / (1 - p), p in [0, 1]. global_offset is the global flat
// index of x's first element.
Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       uint64_t global_offset = 0);
// dx = dy * keep / (1 - p), with keep regenerated from the same key as the forward.
Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        uint64_t global_offset = 0);
// The keep mask itself (uint8, 1 = kept) for a tensor of `shape`; for tests and debugging.
Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    uint64_t global_offset = 0);

}  // namespace mcore::ops
