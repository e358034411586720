// Fused scaled-dot-product attention for the CPU, FlashAttention-2 style: keys are visited in
// blocks with an online softmax, so the [Sq, Sk] score matrix is never materialized (memory is
// O(block) per thread plus the [B, Hq, Sq] logsumexp). The backward recomputes the scores block by
// block from the saved logsumexp.
//
// Layout is Megatron's sbhd: q [Sq, B, Hq, D], k [Sk, B, Hkv, D], v [Sk, B, Hkv, Dv],
// out [Sq, B, Hq, Dv]. Hq must be a multiple of Hkv (GQA/MQA): query head h reads kv head
// h / (Hq / Hkv). Inputs may be strided views (e.g. slices of a fused QKV projection) as long as
// the head dimension is contiguous.
//
// Masks: `causal` is bottom-right aligned when Sq != Sk (key j is visible to query i iff
// j <= i + Sk - Sq, as flash-attn and Transformer Engine do); `attention_mask` is an optional
// bool tensor where TRUE means "masked out" (Megatron's convention), shaped [B, Sk] (key padding)
// or 4-D broadcastable to [B, Hq, Sq, Sk] (e.g. [B, 1, Sq, Sk] or [B, 1, 1, Sk]). A query row
// with no visible key gets output 0 and logsumexp -inf (flash-attn's convention; Megatron's
// unfused path would attend uniformly there because it fills with -10000 instead of -inf).
//
// Attention dropout is not part of this kernel: DotProductAttention must run with
// attention_dropout = 0 on this path (as is standard for LLM pre-training) or fall back to the
// unfused path.
//
// Dtypes: float32/float64 compute natively; bf16/fp16 compute in float32 and round outputs once.
// softmax_lse is float32 (float64 for float64 inputs, so float64 gradient checks stay exact).
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

struct AttentionOptions {
  double softmax_scale = 0.0;  // 0 means 1/sqrt(D)
  bool causal = false;
  Tensor attention_mask;  // optional, bool, TRUE = masked out
};

struct AttentionForwardResult {
  Tensor out;          // [Sq, B, Hq, Dv], dtype of q
  Tensor softmax_lse;  // [B, Hq, Sq], float32 (float64 for float64 inputs)
};

struct AttentionGrads {
  Tensor dq;  // [Sq, B, Hq, D]
  Tensor dk;  // [Sk, B, Hkv, D], summed over the query heads of each group
  Tensor dv;  // [Sk, B, Hkv, Dv]
};

AttentionForwardResult attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const AttentionOptions& options = {});

// `out` and `softmax_lse` are the forward's results for the same inputs and options.
AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& softmax_lse,
                                  const AttentionOptions& options = {});

}  // namespace mcore::ops
