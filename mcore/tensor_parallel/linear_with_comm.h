// The GEMM of ColumnParallelLinear with its tensor-parallel communication fused in, as
// Megatron's linear_with_grad_accumulation_and_async_allreduce: y = X W^T + b where
//   - sequence_parallel: X is this rank's [s/tp, ...] chunk, all-gathered along dim 0 for the
//     GEMM; only the chunk is saved, and the backward gathers it again (activation memory of
//     one chunk, not the whole sequence), then reduce-scatters d X while computing d W;
//   - allreduce_dgrad: d X is all-reduced over the group while d W is computed (the backward
//     of copy_to_tensor_model_parallel_region, overlapped with the weight-gradient GEMM).
// With neither flag it is F::linear.
#pragma once

#include "mcore/comm/process_group.h"
#include "mcore/tensor/tensor.h"

namespace mcore::tensor_parallel {

// input [..., in] ([s/tp, b, in] with sequence_parallel), weight [out, in], bias [out] or
// undefined -> [..., out] ([s, b, out] with sequence_parallel). Differentiable in all three.
Tensor linear_with_grad_accumulation_and_async_allreduce(const Tensor& input, const Tensor& weight,
                                                         const Tensor& bias, bool allreduce_dgrad,
                                                         bool sequence_parallel,
                                                         const comm::ProcessGroupPtr& group);

}  // namespace mcore::tensor_parallel
