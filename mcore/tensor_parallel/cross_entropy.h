// Megatron's vocab_parallel_cross_entropy (tensor_parallel/cross_entropy.py): the per-token
// cross-entropy of logits whose vocabulary dimension is split across the tensor-parallel
// group, without ever gathering the [s, b, V] logits. Per token: the max over the vocabulary
// (all-reduce max), the target's logit (owned by one rank; all-reduce sum) and the sum of
// exp(logit - max) (all-reduce sum; packed with the target logit into one all-reduce) give
// loss = log(sum_exp) + max - target_logit. The backward is local to each shard:
// grad = grad_loss * (softmax - onehot(target)), softmax recomputed from the saved logsumexp.
// Label smoothing follows Megatron's formula. Loss is float32 (float64 for float64 logits);
// bf16/fp16 logits are read in float32. Megatron applies the loss mask outside (loss_func);
// `loss_mask` here is a convenience that multiplies the per-token loss (and its gradient).
#pragma once

#include "mcore/comm/process_group.h"
#include "mcore/tensor/tensor.h"

namespace mcore::tensor_parallel {

using comm::ProcessGroupPtr;

// vocab_parallel_logits [..., V/tp] (e.g. [s, b, V/tp]), this rank holding vocabulary ids
// [rank*V/tp, (rank+1)*V/tp); target int64/int32 [...] with ids in [0, V) -> loss [...].
// Differentiable in the logits.
Tensor vocab_parallel_cross_entropy(const Tensor& vocab_parallel_logits, const Tensor& target,
                                    double label_smoothing = 0.0,
                                    const Tensor& loss_mask = Tensor(),
                                    ProcessGroupPtr group = nullptr);

}  // namespace mcore::tensor_parallel
