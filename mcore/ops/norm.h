// LayerNorm and RMSNorm over the last dimension, as fused row kernels: the forward reads each
// row once from memory (the statistics passes run on the row while it sits in cache) and saves
// the per-row statistics the backward needs, so the backward never recomputes them. Raw
// kernels without autograd (differentiable forms: mcore/nn/functional/norm.h).
//
// Dtypes: x, weight and bias share one dtype. Statistics and the weight/bias gradient sums
// accumulate in float32 (float64 for float64 inputs); bf16/fp16 outputs are rounded once. The
// saved mean/rstd are float32 (float64 for float64 inputs) with shape x.shape()[:-1].
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

struct LayerNormOutput {
  Tensor y;
  Tensor mean;  // [...]
  Tensor rstd;  // [...], 1 / sqrt(var + eps), biased variance as PyTorch
};

struct RMSNormOutput {
  Tensor y;
  Tensor rstd;  // [...], 1 / sqrt(mean(x^2) + eps)
};

struct NormGrads {
  Tensor dx;
  Tensor dweight;
  Tensor dbias;  // undefined for RMSNorm and for LayerNorm without bias
};

// y = (x - mean) * rstd * weight + bias. x: [..., H], weight: [H], bias: [H] or undefined.
LayerNormOutput layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   double eps);
// Gradients for (x, weight, bias); `has_bias` says whether dbias is wanted. Set need_dx or
// need_dweight to false to skip those outputs (left undefined).
NormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor& weight, bool has_bias,
                              bool need_dx = true, bool need_dweight = true);

// y = x * rstd * weight. x: [..., H], weight: [H].
RMSNormOutput rms_norm_forward(const Tensor& x, const Tensor& weight, double eps);
NormGrads rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& rstd,
                            const Tensor& weight, bool need_dx = true, bool need_dweight = true);

}  // namespace mcore::ops
