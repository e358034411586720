// Differentiable activations of the transformer MLP: gelu (exact or tanh approximation),
// silu, and Megatron's fused swiglu on a [gate | up] tensor. Kernels: mcore/ops/activation.h.
#pragma once

#include "mcore/ops/activation.h"
#include "mcore/tensor/tensor.h"

namespace mcore::F {

using ops::GeluApproximate;

// PyTorch's F.gelu(x, approximate='none' | 'tanh').
Tensor gelu(const Tensor& x, GeluApproximate approximate = GeluApproximate::kNone);
Tensor silu(const Tensor& x);
// x: [..., 2F] -> silu(x[..., :F]) * x[..., F:], shape [..., F].
Tensor swiglu(const Tensor& x);

}  // namespace mcore::F
