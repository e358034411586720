// Shared by the layout-invariance tests of tensor and context parallelism: the two tiny GPT
// configs they build, a LLaMA-style one (RMSNorm, SwiGLU, GQA, RoPE, QKV bias, QK-norm,
// untied) and a GPT-2-style one (LayerNorm, tanh GeLU, learned positions); the whole gradients
// of a tensor-parallel model; and their comparison with the one-rank model's.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mcore/models/gpt/gpt_model.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/init.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/transformer/transformer_config.h"
#include "tests/common/test_util.h"

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

// Every parameter's gradient as the one-rank model has it: sharded ones gathered over the TP
// group, partial ones (sequence-parallel norms and biases, QK-norms) summed over it.
inline std::map<std::string, Tensor> whole_gradients(const models::GPTModel& model, int tp,
                                                     const comm::ProcessGroupPtr& tp_group) {
  std::map<std::string, Tensor> grads;
  for (auto& [name, p] : model.named_parameters()) {
    Tensor g = p->grad();
    if (!g.defined()) g = zeros_like(*p);
    if (p->tensor_model_parallel) {
      g = tensor_parallel::gather_like_param(g, *p, tp_group);
    } else if (p->sequence_parallel && tp > 1) {
      g = tensor_parallel::all_reduce_copy(g, tp_group);
    }
    grads[name] = g;
  }
  return grads;
}

// The same parameters with the same gradients, to relative `tol`.
inline void expect_same_gradients(const std::map<std::string, Tensor>& got,
                                  const std::map<std::string, Tensor>& ref, double tol) {
  ASSERT_EQ(got.size(), ref.size());
  for (const auto& [name, g] : ref) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.count(name));
    ASSERT_EQ(got.at(name).shape(), g.shape());
    EXPECT_LT(max_rel_error(got.at(name), g), tol);
  }
}

}  // namespace mcore::testing
