// SelfAttention (Megatron's transformer/attention.py): fused QKV projection, optional QK-norm,
// rotary embedding, core attention and the output projection, over this tensor-parallel rank's
// heads.
//
// The fused projection linear_qkv has Megatron's per-query-group interleaved row layout,
// which checkpoints depend on. With np query heads, ng query groups (key/value heads) and head
// size hn, the weight's [ng * (np/ng + 2) * hn, h] rows are, group after group,
//     [ q heads of group 0 (np/ng * hn rows) | k of group 0 (hn) | v of group 0 (hn) | group 1 ...]
// so that a ColumnParallelLinear row split hands rank r whole groups (heads
// [r*np/tp, (r+1)*np/tp) with their k/v). The output [s, b, ng*(np/ng+2)*hn] is viewed as
// [s, b, ng, (np/ng+2)*hn] and split along the last dim into q [s,b,np,hn], k, v [s,b,ng,hn]
// (get_query_key_value_tensors). q/k layernorm act per head (size hn), before RoPE.
// With recompute_granularity "selective", the core attention runs under activation recompute.
// With AttentionInputs::inference_context (text generation), the new keys/values are appended
// to this layer's KV cache and the queries attend over all cached ones.
#pragma once

#include <vector>

#include "mcore/nn/module.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer {

class SelfAttention : public nn::Module {
 public:
  SelfAttention(const SelfAttentionArgs& args, const SelfAttentionSubmodules& submodules);

  // hidden [s, b, h] ([s/tp, b, h] under sequence parallel) -> {output, output_bias}
  // (output_bias: linear_proj's bias, left for the bias-dropout-add; may be undefined).
  LinearOutput forward(const Tensor& hidden_states, const AttentionInputs& inputs = {}) const;

  // q [s, b, np/tp, hn], k and v [s, b, ng/tp, hn] from the fused projection (before QK-norm
  // and RoPE).
  std::vector<Tensor> get_query_key_value_tensors(const Tensor& hidden_states) const;

  int64_t num_attention_heads_per_partition() const { return np_; }
  int64_t num_query_groups_per_partition() const { return ng_; }

 private:
  const TransformerConfig* config_;
  int64_t layer_number_;  // keys this layer's KV cache during generation
  int64_t np_, ng_, hn_;
  Slot<LinearFn> linear_qkv_, linear_proj_;
  Slot<CoreAttentionFn> core_attention_;
  Slot<NormFn> q_layernorm_, k_layernorm_;
};

}  // namespace mcore::transformer
