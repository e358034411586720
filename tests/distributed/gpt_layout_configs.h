// The two tiny GPT configs the layout-invariance tests (tensor and context parallelism) build:
// a LLaMA-style one (RMSNorm, SwiGLU, GQA, RoPE, QKV bias, QK-norm, untied) and a GPT-2-style
// one (LayerNorm, tanh GeLU, learned positions).
#pragma once

#include "mcore/transformer/transformer_config.h"

namespace mcore::testing {

inline transformer::TransformerConfig llama_config() {
  transformer::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = 64;
  c.num_attention_heads = 8;
  c.num_query_groups = 4;
  c.ffn_hidden_size = 96;
  c.normalization = "RMSNorm";
  c.gated_linear_unit = true;
  c.activation_func = transformer::ActivationFunc::kSilu;
  c.add_bias_linear = false;
  c.add_qkv_bias = true;
  c.qk_layernorm = true;
  c.position_embedding_type = "rope";
  return c;
}

inline transformer::TransformerConfig gpt2_config() {
  transformer::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.normalization = "LayerNorm";
  c.activation_func = transformer::ActivationFunc::kGeluTanh;
  c.position_embedding_type = "learned_absolute";
  return c;
}

}  // namespace mcore::testing
