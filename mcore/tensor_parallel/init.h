// Layout-invariant initialization of tensor-parallel weights, and the inverse operations that
// tests and checkpoints need (shard a full tensor, gather a sharded one).
//
// A weight's values are defined on its full ("master") shape: element (i, j) is drawn from
// the Philox stream (seed, stream) at its global flat index. Rank r of a tensor-parallel group
// of size tp fills only the part it owns, so TP=1 and TP=4 start from bit-identical full
// weights. As Megatron's _initialize_affine_weight_cpu, the partition dimension is cut into
// tp * stride equal chunks and rank r owns chunks r, r + tp, r + 2 tp, ... concatenated in
// that order: stride 1 is a contiguous slice (rows [r*n/tp, (r+1)*n/tp) for partition_dim 0,
// the same columns for dim 1); stride 2 fits a fused [gate; up] GLU weight, where each rank
// holds its slice of both halves.
#pragma once

#include "mcore/comm/process_group.h"
#include "mcore/nn/init.h"
#include "mcore/nn/parameter.h"

namespace mcore::tensor_parallel {

using comm::ProcessGroupPtr;

// This rank's shard of N(0, spec.std) over `global_shape`, split along partition_dim.
Tensor init_normal_shard(const Shape& global_shape, int partition_dim, int partition_stride,
                         int rank, int world_size, const nn::InitSpec& spec,
                         DType dtype = DType::F32);

// Shape of one rank's shard (errors, naming the numbers, when the dim does not divide).
Shape shard_shape(const Shape& global_shape, int partition_dim, int partition_stride,
                  int world_size);

// This rank's shard of a full tensor (a contiguous copy): the inverse of gather_shards.
Tensor shard_tensor(const Tensor& full, int partition_dim, int partition_stride, int rank,
                    int world_size);

// The full tensor from every rank's shard (collective over `group`; every rank gets it).
// Not differentiable.
Tensor gather_shards(const Tensor& local, int partition_dim, int partition_stride,
                     ProcessGroupPtr group = nullptr);

// A parameter's full value: gathered along its partition_dim/partition_stride when it is
// tensor_model_parallel, else a copy of itself. Collective over `group` (default TP group)
// when the parameter is sharded.
Tensor gather_tensor_model_parallel_param(const nn::Parameter& param,
                                          ProcessGroupPtr group = nullptr);
// The same for a gradient (or any tensor) laid out as `param`.
Tensor gather_like_param(const Tensor& local, const nn::Parameter& param,
                         ProcessGroupPtr group = nullptr);

// Megatron's set_tensor_model_parallel_attributes / copy_tensor_model_parallel_attributes.
void set_tensor_model_parallel_attributes(nn::Parameter& param, bool is_parallel, int dim,
                                          int stride);
void copy_tensor_model_parallel_attributes(nn::Parameter& destination, const nn::Parameter& source);

}  // namespace mcore::tensor_parallel
