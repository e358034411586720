// Softmax over the last dimension with Megatron's FusedScaleMaskSoftmax semantics for
// attention scores [b, np, sq, sk]: the input is multiplied by `scale` first, then (if causal)
// element (i, j) with j > i + (sk - sq) is masked to -inf (the query at position i sees keys up
// to its own position when the keys end where the queries end), then softmax. A fully masked
// row gives zeros, not NaN. Raw forward/backward kernels (differentiable form:
// mcore/nn/functional/softmax.h). Statistics accumulate in float32 (float64 for float64
// inputs); bf16/fp16 round once on store.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// x: [..., sk] (with causal: [..., sq, sk], at least 2-d). Returns y of x's shape and dtype.
Tensor softmax_forward(const Tensor& x, double scale = 1.0, bool causal = false);
// dx = scale * y * (dy - sum_j(dy * y)) from the forward output y. Masked positions have
// y = 0, so they get zero gradient without knowing the mask.
Tensor softmax_backward(const Tensor& dy, const Tensor& y, double scale = 1.0);

}  // namespace mcore::ops
