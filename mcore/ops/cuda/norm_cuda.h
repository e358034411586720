// CUDA kernels of LayerNorm and RMSNorm (mcore/ops/norm.h): the same arguments, outputs and
// saved float32 statistics [...] as the CPU op, so a forward on one device and a backward on the
// other agree. One warp (short rows) or one block per row with shuffle reductions, 16-byte packed
// row loads; the weight/bias gradients are column sums over row slices written to a float32
// partial buffer and added in a fixed order (deterministic, no atomics).
//
// Plain C++ header (no CUDA includes): norm.cpp calls these, after validating the arguments,
// when x is on a CUDA device. Dtypes: float32, bfloat16, float16 (computed in float32).
#pragma once

#include "mcore/ops/norm.h"

namespace mcore::ops::cuda {

LayerNormOutput layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   double eps);
NormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor& weight, bool has_bias, bool need_dx,
                              bool need_dweight);

RMSNormOutput rms_norm_forward(const Tensor& x, const Tensor& weight, double eps);
NormGrads rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& rstd,
                            const Tensor& weight, bool need_dx, bool need_dweight);

}  // namespace mcore::ops::cuda
