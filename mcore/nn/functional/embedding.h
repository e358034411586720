// Differentiable embedding lookup (torch.nn.functional.embedding); see mcore/ops/embedding.h.
#pragma once

#include "mcore/ops/embedding.h"
#include "mcore/tensor/tensor.h"

namespace mcore::F {

// ids int64/int32 [...], weight [V, H] -> [..., H]. The gradient flows to weight only.
Tensor embedding(const Tensor& ids, const Tensor& weight);

}  // namespace mcore::F
