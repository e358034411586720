// CUDA kernels of the scaled, optionally causal softmax over the last dimension
// (mcore/ops/softmax.h, Megatron's FusedScaleMaskSoftmax semantics): the same arguments and
// results as the CPU op, including zeros for fully masked rows. One warp (short rows) or one
// block per row, shuffle reductions, 16-byte packed loads; masked positions are never read.
//
// Plain C++ header (no CUDA includes): softmax.cpp calls these, after validating the arguments,
// when the input is on a CUDA device. Dtypes: float32, bfloat16, float16 (computed in float32).
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

Tensor softmax_forward(const Tensor& x, double scale, bool causal);
Tensor softmax_backward(const Tensor& dy, const Tensor& y, double scale);

}  // namespace mcore::ops::cuda
