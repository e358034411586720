// The tensor-core attention forward (attention_fwd_tc.cu), used by attention_fwd.cu for bf16/fp16
// inputs with d == dv in {64, 128} on sm_80+. Set MCORE_ATTENTION_SIMT=1 to force the SIMT kernel
// (for A/B checks).
#pragma once

#include "mcore/ops/cuda/attention_kernels.cuh"

namespace mcore::ops::cuda {

bool attention_forward_tc_supported(const AttnParams& p, DType dtype);
void attention_forward_tc(const AttnParams& p, DType dtype, Tensor& out, Tensor& lse);

}  // namespace mcore::ops::cuda
