// Differentiable matrix products and the linear layer's math (y = x W^T + b, Megatron's and
// PyTorch's weight layout [out_features, in_features]).
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::F {

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x: [..., in], weight: [out, in], bias: [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace mcore::F
