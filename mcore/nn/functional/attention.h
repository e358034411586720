// Differentiable fused attention (FlashAttention-style, see mcore/ops/attention.h for layout,
// masks and dtypes). This is the core of DotProductAttention's fused path.
#pragma once

#include "mcore/ops/attention.h"
#include "mcore/tensor/tensor.h"

namespace mcore::F {

// softmax(q k^T * scale + mask) v over sbhd tensors: q [Sq, B, Hq, D], k [Sk, B, Hkv, D],
// v [Sk, B, Hkv, Dv] -> [Sq, B, Hq, Dv]. Gradients flow to q, k and v.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const ops::AttentionOptions& options = {});

// Same, also returning the softmax logsumexp [B, Hq, Sq] (no gradient flows through it).
std::vector<Tensor> attention_with_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const ops::AttentionOptions& options = {});

}  // namespace mcore::F
