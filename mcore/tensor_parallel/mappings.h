// Megatron's tensor-parallel region mappings (tensor_parallel/mappings.py) as autograd
// functions. Each is a collective over the tensor-model-parallel group in one direction and
// its adjoint in the other, so a parallel layer's backward is correct by construction:
//
//   forward                         backward
//   copy_to_tp_region:    identity         all-reduce
//   reduce_from_tp_region: all-reduce       identity
//   scatter_to_tp_region:  split last dim   all-gather last dim
//   gather_from_tp_region: all-gather last  split last dim
//   scatter_to_sequence_parallel_region:  split dim 0       all-gather dim 0
//   gather_from_sequence_parallel_region: all-gather dim 0  reduce-scatter dim 0 (or split)
//   reduce_scatter_to_sequence_parallel_region: reduce-scatter dim 0  all-gather dim 0
//
// The sequence-parallel ones act on dim 0, the sequence dimension of Megatron's [s, b, h]
// activations; dim 0 must divide by the group size where it is split. `group` defaults
// (nullptr) to parallel_state's tensor-model-parallel group. With one rank every mapping
// returns its input unchanged (no autograd node), as Megatron does.
#pragma once

#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/tensor/tensor.h"

namespace mcore::tensor_parallel {

using comm::ProcessGroupPtr;

Tensor copy_to_tensor_model_parallel_region(const Tensor& input, ProcessGroupPtr group = nullptr);
Tensor reduce_from_tensor_model_parallel_region(const Tensor& input,
                                                ProcessGroupPtr group = nullptr);
Tensor scatter_to_tensor_model_parallel_region(const Tensor& input,
                                               ProcessGroupPtr group = nullptr);
Tensor gather_from_tensor_model_parallel_region(const Tensor& input,
                                                ProcessGroupPtr group = nullptr);

Tensor scatter_to_sequence_parallel_region(const Tensor& input, ProcessGroupPtr group = nullptr);
// tensor_parallel_output_grad (Megatron's default true): the consumer of the gathered tensor
// is tensor-parallel, so each rank holds a partial gradient for the whole sequence and the
// backward reduce-scatters; false: the gradient is already complete, the backward only splits.
Tensor gather_from_sequence_parallel_region(const Tensor& input,
                                            bool tensor_parallel_output_grad = true,
                                            ProcessGroupPtr group = nullptr);
Tensor reduce_scatter_to_sequence_parallel_region(const Tensor& input,
                                                  ProcessGroupPtr group = nullptr);

// Megatron's all_to_all (tensor_parallel/mappings.py): rows [in_splits[0]] of input go to rank
// 0, the next in_splits[1] to rank 1, ...; out_splits[r] rows come from rank r, in rank order.
// Its backward is the reverse exchange. Used by the expert-parallel token dispatcher; `group`
// is explicit (the expert-model-parallel group).
Tensor all_to_all(const Tensor& input, const std::vector<int64_t>& out_splits,
                  const std::vector<int64_t>& in_splits, const ProcessGroupPtr& group);

// Raw (non-differentiable) collectives along a dimension, used by the mappings and by layers
// that manage their own backward. dim 0 collectives need no copy for contiguous inputs.
Tensor all_gather_along_dim(const Tensor& input, int64_t dim, const ProcessGroupPtr& group);
Tensor reduce_scatter_along_dim(const Tensor& input, int64_t dim, const ProcessGroupPtr& group);
// This rank's contiguous chunk of `input` along dim (a copy).
Tensor split_along_dim(const Tensor& input, int64_t dim, const ProcessGroupPtr& group);
// All-reduce (sum) into a fresh tensor; input is left unchanged.
Tensor all_reduce_copy(const Tensor& input, const ProcessGroupPtr& group);

}  // namespace mcore::tensor_parallel
