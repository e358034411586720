// Differentiable softmax over the last dimension with Megatron's FusedScaleMaskSoftmax
// semantics: scale first, optional causal mask on [..., sq, sk] scores (j > i + sk - sq is
// masked), fully masked rows give zeros. Kernels: mcore/ops/softmax.h.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::F {

Tensor softmax(const Tensor& x, double scale = 1.0, bool causal = false);

}  // namespace mcore::F
