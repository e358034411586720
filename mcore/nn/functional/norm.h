// Differentiable LayerNorm and RMSNorm over the last dimension (the math of Megatron's
// LayerNorm / RMSNorm modules, TransformerConfig.normalization). Kernels: mcore/ops/norm.h.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::F {

// x: [..., H], weight: [H], bias: [H] or undefined. PyTorch's F.layer_norm(x, [H], w, b, eps).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// y = x * rsqrt(mean(x^2) + eps) * weight.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);

}  // namespace mcore::F
