// Fused log-softmax + negative log-likelihood over the last dimension, per token:
// loss[n] = logsumexp(logits[n, :]) - logits[n, target[n]], optionally times loss_mask[n].
// logits are [..., V] (e.g. [N, V] or Megatron's [S, B, V]) in any float dtype; targets are int64
// or int32 shaped [...]. The loss and the saved logsumexp are float32 (float64 for float64
// logits), so bf16 logits lose no precision in the reduction. The backward recomputes
// softmax = exp(logits - logsumexp) on the fly, so no probability matrix is ever stored.
// A target equal to `ignore_index` (PyTorch's default -100) gives loss 0 and gradient 0; any other
// target outside [0, V) is an error naming it. Label smoothing is not implemented.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

struct CrossEntropyForwardResult {
  Tensor loss;       // [...], float32 (float64 for float64 logits)
  Tensor logsumexp;  // [...], same dtype as loss
};

// loss_mask (optional): float tensor shaped like target; multiplies each token's loss.
CrossEntropyForwardResult cross_entropy_forward(const Tensor& logits, const Tensor& target,
                                                const Tensor& loss_mask = Tensor(),
                                                int64_t ignore_index = -100);

// grad_loss: gradient of the per-token loss ([...]). Returns d logits in logits' dtype:
// grad_loss[n] * mask[n] * (softmax(logits[n]) - onehot(target[n])).
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                              const Tensor& logsumexp, const Tensor& loss_mask = Tensor(),
                              int64_t ignore_index = -100);

}  // namespace mcore::ops
