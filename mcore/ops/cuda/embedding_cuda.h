// CUDA kernels of the embedding lookup and its gradient (mcore/ops/embedding.h). Forward: one
// warp or block per token copies its row (16-byte moves when rows allow; any dtype). Backward:
// float32 atomic adds into a zeroed [V, H] float32 buffer, then one rounding to the gradient's
// dtype (float32 gradients accumulate in place). Atomics make the float32 summation order, and
// so the last bits, run-dependent; the CPU path is the deterministic one.
//
// Ids outside [0, V) cannot raise mcore::Error from a kernel without a host sync: the kernel
// prints the id and its position and traps, so the failure surfaces as a CUDA error at the next
// synchronizing call (as PyTorch's device-side assert does).
//
// Plain C++ header (no CUDA includes): embedding.cpp calls these when the weight (forward) or
// grad_out (backward) is on a GPU. ids: int64 or int32, on the same device.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

Tensor embedding_forward(const Tensor& weight, const Tensor& ids);
Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_embeddings);

}  // namespace mcore::ops::cuda
