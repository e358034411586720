// Differentiable fused cross-entropy (log-softmax + NLL) returning the per-token loss; see
// mcore/ops/cross_entropy.h. Gradients flow to the logits only.
#pragma once

#include "mcore/ops/cross_entropy.h"
#include "mcore/tensor/tensor.h"

namespace mcore::F {

// logits [..., V], target int64/int32 [...], optional float loss_mask [...] -> loss [...]
// (float32; float64 for float64 logits). Like torch.nn.functional.cross_entropy(
// reduction='none') on logits moved to the last dim, times the mask.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss_mask = Tensor(),
                     int64_t ignore_index = -100);

}  // namespace mcore::F
