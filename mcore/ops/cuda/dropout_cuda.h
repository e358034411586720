// CUDA kernels of dropout (mcore/ops/dropout.h). The keep mask is the CPU's, bit for bit:
// element i is kept iff Philox4x32-10(seed, stream, global_offset + i) > p, drawn with the same
// counter/key mapping as mcore/base/philox.h (block (global_offset + i) / 4, lane % 4), so a
// tensor dropped on a GPU and on a CPU loses exactly the same elements, whatever the layout.
// One thread per Philox block of 4 elements; kept elements are scaled by 1 / (1 - p) in float32.
//
// Plain C++ header (no CUDA includes): dropout.cpp calls these when the input is on a GPU.
// Dtypes: float32, bfloat16, float16.
#pragma once

#include <cstdint>

#include "mcore/tensor/device.h"
#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       uint64_t global_offset);
Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        uint64_t global_offset);
// The uint8 keep mask (1 = kept) of a tensor of `shape`, on `device` (a CUDA device).
Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    uint64_t global_offset, Device device);

}  // namespace mcore::ops::cuda
