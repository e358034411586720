// CUDA kernels of the fused causal/masked attention in mcore/ops/attention.h: the same sbhd
// layout, GQA head mapping, bottom-right causal diagonal, bool mask (TRUE = masked out), scale
// and saved float32 logsumexp [B, Hq, Sq], so a forward on one device and a backward on the other
// agree. FlashAttention-2 structure: the forward streams key/value tiles through shared memory
// with an online softmax (no [Sq, Sk] matrix in global memory); the backward recomputes each
// probability tile from the logsumexp, with one kernel owning dK/dV rows per key tile (GQA summed
// inside the kernel, no atomics: deterministic) and one owning dQ rows per query tile.
//
// Plain C++ header (no CUDA includes): attention.cpp calls these when q is on a CUDA device.
// Dtypes: float32, bfloat16, float16 (computed in float32); head dims up to 256.
#pragma once

#include "mcore/ops/attention.h"

namespace mcore::ops::cuda {

AttentionForwardResult attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const AttentionOptions& options);

AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& softmax_lse,
                                  const AttentionOptions& options);

}  // namespace mcore::ops::cuda
