// Small helpers of Megatron's tensor_parallel/utils.py and core/utils.py: exact division with a
// message naming both numbers, splitting along the last dimension, and the vocabulary range a
// tensor-parallel rank owns. Every function taking an optional group falls back to
// parallel_state's tensor-model-parallel group when given nullptr.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/tensor/tensor.h"

namespace mcore::tensor_parallel {

using comm::ProcessGroupPtr;

// numerator / denominator, erroring (naming `what`, both numbers and the fix) when it is not
// exact. Megatron's core.utils.divide / ensure_divisibility.
int64_t divide(int64_t numerator, int64_t denominator, const std::string& what = "");

// `group` itself, or parallel_state's tensor-model-parallel group when null (erroring with a
// hint when parallel_state was never initialized).
ProcessGroupPtr resolve_tp_group(const ProcessGroupPtr& group);

// Views (no copy) of `tensor` split into `num_partitions` equal parts along the last dim; with
// contiguous_split_chunks each part is made contiguous. No autograd recording.
std::vector<Tensor> split_tensor_along_last_dim(const Tensor& tensor, int64_t num_partitions,
                                                bool contiguous_split_chunks = false);

// Megatron's VocabUtility: [first, last) vocabulary ids owned by `rank` of `world_size`.
std::pair<int64_t, int64_t> vocab_range_from_per_partition_vocab_size(
    int64_t per_partition_vocab_size, int rank, int world_size);
std::pair<int64_t, int64_t> vocab_range_from_global_vocab_size(int64_t global_vocab_size, int rank,
                                                               int world_size);

// Megatron-LM's _vocab_size_with_padding: the smallest multiple of
// make_vocab_size_divisible_by * tensor_model_parallel_size that holds orig_vocab_size, so
// every tensor-parallel rank gets an equal, GEMM-friendly shard of the embedding.
int64_t vocab_size_with_padding(int64_t orig_vocab_size, int64_t make_vocab_size_divisible_by,
                                int64_t tensor_model_parallel_size);

}  // namespace mcore::tensor_parallel
