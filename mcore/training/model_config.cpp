// The mapping from pretrain_gpt's (Megatron-LM's) flags to the model config and the FLOP count
// used for the throughput log line; shared by pretrain_gpt and tools/generate.
#include "mcore/training/training.h"

#include <cstdint>

namespace mcore::training {

transformer::TransformerConfig transformer_config_from_args(const Arguments& a) {
  transformer::TransformerConfig c;
  c.num_layers = a.num_layers.value_or(0);
  c.hidden_size = a.hidden_size.value_or(0);
  c.num_attention_heads = a.num_attention_heads.value_or(0);
  c.num_query_groups = a.group_query_attention ? a.num_query_groups : 0;
  c.ffn_hidden_size = a.ffn_hidden_size.value_or(0);
  c.kv_channels = a.kv_channels.value_or(0);
  c.hidden_dropout = a.hidden_dropout;
  c.attention_dropout = a.attention_dropout;
  c.normalization = a.normalization;
  c.layernorm_epsilon = a.layernorm_epsilon;
  c.layernorm_zero_centered_gamma = a.layernorm_zero_centered_gamma;
  c.apply_residual_connection_post_layernorm = a.apply_residual_connection_post_layernorm;
  c.add_bias_linear = a.add_bias_linear;
  c.add_qkv_bias = a.add_qkv_bias;
  c.gated_linear_unit = a.swiglu;
  c.activation_func = a.swiglu        ? transformer::ActivationFunc::kSilu
                      : a.openai_gelu ? transformer::ActivationFunc::kGeluTanh
                                      : transformer::ActivationFunc::kGelu;
  c.qk_layernorm = a.qk_layernorm;
  c.position_embedding_type = a.position_embedding_type;
  c.rotary_base = static_cast<double>(a.rotary_base);
  c.rotary_percent = a.rotary_percent;
  c.rotary_interleaved = a.rotary_interleaved;
  c.apply_query_key_layer_scaling = a.apply_query_key_layer_scaling;
  c.num_moe_experts = a.num_experts.value_or(0);
  c.moe_ffn_hidden_size = a.moe_ffn_hidden_size.value_or(0);
  c.moe_router_topk = a.moe_router_topk;
  c.moe_router_load_balancing_type = a.moe_router_load_balancing_type;
  c.moe_aux_loss_coeff = a.moe_aux_loss_coeff;
  c.moe_z_loss_coeff = a.moe_z_loss_coeff.value_or(0.0);
  c.moe_shared_expert_intermediate_size = a.moe_shared_expert_intermediate_size.value_or(0);
  c.moe_router_pre_softmax = a.moe_router_pre_softmax;
  c.moe_router_topk_scaling_factor = a.moe_router_topk_scaling_factor.value_or(1.0);
  c.expert_model_parallel_size = a.expert_model_parallel_size;
  c.expert_tensor_parallel_size =
      a.expert_tensor_parallel_size.value_or(a.tensor_model_parallel_size);
  if (a.rotary_seq_len_interpolation_factor)
    c.seq_len_interpolation_factor = *a.rotary_seq_len_interpolation_factor;
  c.rope_scaling = a.use_rope_scaling;
  c.rope_scaling_factor = a.rope_scaling_factor;
  c.init_method_std = a.init_method_std;
  c.seed = static_cast<uint64_t>(a.seed);
  c.params_dtype = a.params_dtype == "bfloat16"  ? DType::BF16
                   : a.params_dtype == "float16" ? DType::F16
                                                 : DType::F32;
  c.tensor_model_parallel_size = a.tensor_model_parallel_size;
  c.pipeline_model_parallel_size = a.pipeline_model_parallel_size;
  c.sequence_parallel = a.sequence_parallel;
  c.context_parallel_size = a.context_parallel_size;
  c.recompute_granularity = a.recompute_granularity.value_or("");
  c.recompute_method = a.recompute_method.value_or("");
  c.recompute_num_layers = a.recompute_num_layers.value_or(0);
  c.calculate_per_token_loss = a.calculate_per_token_loss;
  c.finalize();
  return c;
}

double num_floating_point_operations(const Arguments& a, int64_t batch_size) {
  const double h = static_cast<double>(*a.hidden_size);
  const double s = static_cast<double>(*a.seq_length);
  const double layers = static_cast<double>(*a.num_layers);
  const double heads = static_cast<double>(*a.num_attention_heads);
  const double groups = a.group_query_attention ? static_cast<double>(a.num_query_groups) : heads;
  const double kv = a.kv_channels ? static_cast<double>(*a.kv_channels) : h / heads;
  // Megatron's count: a MoE token passes through moe_router_topk experts' MLPs (the router's
  // small GEMM is not counted).
  double ffn = a.ffn_hidden_size ? static_cast<double>(*a.ffn_hidden_size) : 4 * h;
  if (a.num_experts) {
    if (a.moe_ffn_hidden_size) ffn = static_cast<double>(*a.moe_ffn_hidden_size);
    ffn *= static_cast<double>(a.moe_router_topk);
  }
  const double vocab = static_cast<double>(a.padded_vocab_size.value_or(0));
  const double gated = a.swiglu ? 1.5 : 1.0;
  const double qproj_ratio = kv * heads / h;
  return 12.0 * static_cast<double>(batch_size) * s * layers * h * h *
         ((1 + groups / heads + s / h) * qproj_ratio + ffn / h * gated + vocab / (2 * layers * h));
}

}  // namespace mcore::training
