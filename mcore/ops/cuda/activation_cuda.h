// CUDA kernels of the MLP activations (mcore/ops/activation.h): GeLU (erf and tanh forms), SiLU
// and Megatron's SwiGLU on a concatenated [gate | up] projection, forward and backward, with the
// CPU op's formulas. Flat grid-stride kernels with 16-byte packed loads and a scalar tail.
//
// Plain C++ header (no CUDA includes): activation.cpp calls these, after validating the
// arguments, when the input is on a CUDA device. Dtypes: float32, bfloat16, float16.
#pragma once

#include "mcore/ops/activation.h"

namespace mcore::ops::cuda {

Tensor gelu_forward(const Tensor& x, GeluApproximate approximate);
Tensor gelu_backward(const Tensor& dy, const Tensor& x, GeluApproximate approximate);
Tensor silu_forward(const Tensor& x);
Tensor silu_backward(const Tensor& dy, const Tensor& x);
Tensor swiglu_forward(const Tensor& x);
Tensor swiglu_backward(const Tensor& dy, const Tensor& x);

}  // namespace mcore::ops::cuda
