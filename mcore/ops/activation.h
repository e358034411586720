// Activation kernels of the transformer MLP: GeLU (exact erf form and the tanh approximation,
// PyTorch's gelu(approximate='none'|'tanh')), SiLU, and Megatron's fused SwiGLU on a
// concatenated [gate; up] projection. Raw forward/backward kernels without autograd (the
// differentiable forms are in mcore/nn/functional/activation.h). float32/float64 compute
// natively; bf16/fp16 compute in float32 and round once on store. Non-contiguous inputs are
// copied to contiguous first; outputs are always contiguous.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// kNone: 0.5 x (1 + erf(x / sqrt 2)).  kTanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
// the form Megatron's bias_gelu fusion and GPT-2 use.
enum class GeluApproximate { kNone, kTanh };

Tensor gelu_forward(const Tensor& x, GeluApproximate approximate = GeluApproximate::kNone);
// dx = dy * gelu'(x).
Tensor gelu_backward(const Tensor& dy, const Tensor& x,
                     GeluApproximate approximate = GeluApproximate::kNone);

// silu(x) = x * sigmoid(x).
Tensor silu_forward(const Tensor& x);
Tensor silu_backward(const Tensor& dy, const Tensor& x);

// x: [..., 2F] = [gate | up] along the last dim -> silu(gate) * up: [..., F]
// (Megatron's swiglu: x1, x2 = chunk(x, 2, -1); silu(x1) * x2).
Tensor swiglu_forward(const Tensor& x);
// dy: [..., F], x: the forward input [..., 2F] -> dx: [..., 2F].
Tensor swiglu_backward(const Tensor& dy, const Tensor& x);

}  // namespace mcore::ops
