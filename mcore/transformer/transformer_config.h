// TransformerConfig: every architectural and parallel setting of a transformer, under Megatron
// Core's field names and defaults (megatron/core/transformer/transformer_config.py plus the
// ModelParallelConfig fields the layers read). A config is written by the user with zeros (or
// empty strings) standing for Megatron's `None`; `finalize()` fills the derived defaults as
// Megatron's __post_init__ does (ffn_hidden_size = 4 * hidden_size, kv_channels = hidden_size /
// num_attention_heads, num_query_groups = num_attention_heads) and `validate()` rejects
// impossible settings with a message naming the fields and the fix. Layers store a finalized copy.
//
// Position-embedding settings (position_embedding_type, rotary_*, rope scaling, YaRN) are
// GPTModel constructor arguments in Megatron; they live here so one object describes a model.
#pragma once

#include <cstdint>
#include <string>

#include "mcore/base/dtype.h"

namespace mcore::transformer {

// Megatron's config.activation_func (a Python callable there).
enum class ActivationFunc {
  kGelu,      // F.gelu, exact erf form (Megatron's default)
  kGeluTanh,  // tanh approximation (GPT-2's "gelu_new", Megatron's fused bias_gelu)
  kSilu,      // F.silu; with gated_linear_unit this is SwiGLU
};
// "gelu" | "gelu_tanh" (also "gelu_new", "gelu_pytorch_tanh") | "silu" | "swish"; errors name
// the choices.
ActivationFunc activation_func_from_string(const std::string& name);
const char* activation_func_name(ActivationFunc f);

struct TransformerConfig {
  // ---- model shape ----
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_query_groups = 0;  // 0: = num_attention_heads (MHA); 1: MQA; else GQA
  int64_t ffn_hidden_size = 0;   // 0: 4 * hidden_size
  int64_t kv_channels = 0;       // 0: hidden_size / num_attention_heads
  double softmax_scale = 0.0;    // 0: 1 / sqrt(kv_channels)

  // ---- regularization ----
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;

  // ---- layer structure ----
  std::string normalization = "LayerNorm";  // "LayerNorm" | "RMSNorm"
  double layernorm_epsilon = 1e-5;
  // Norm weights stored as gamma - 1: they start at zero and the norms scale by (1 + weight)
  // (Megatron's --apply-layernorm-1p; applied to LayerNorm and RMSNorm alike, as TE does).
  bool layernorm_zero_centered_gamma = false;
  bool apply_residual_connection_post_layernorm = false;
  bool add_bias_linear = true;
  bool add_qkv_bias = false;  // qkv bias even when add_bias_linear is false (Qwen2)
  bool gated_linear_unit = false;
  ActivationFunc activation_func = ActivationFunc::kGelu;
  bool qk_layernorm = false;
  // Scales q.k by 1/layer_number and the softmax input back up; with fp32 softmax (always, on
  // this backend) the result is mathematically unchanged, so it only affects fp16 overflow.
  bool apply_query_key_layer_scaling = false;
  bool attention_softmax_in_fp32 = true;

  // ---- positions (GPTModel arguments in Megatron) ----
  std::string position_embedding_type = "learned_absolute";  // | "rope" | "yarn" | "none"
  double rotary_base = 10000.0;
  double rotary_percent = 1.0;
  bool rotary_interleaved = false;
  double seq_len_interpolation_factor = 0.0;  // 0: none
  // Llama-3.x frequency scaling (Megatron's rope_scaling / rope_scaling_factor).
  bool rope_scaling = false;
  double rope_scaling_factor = 8.0;
  double rope_scaling_low_freq_factor = 1.0;
  double rope_scaling_high_freq_factor = 4.0;
  int64_t rope_scaling_original_max_position_embeddings = 8192;
  // YaRN (position_embedding_type = "yarn"); Megatron's yarn_* config fields.
  double yarn_rotary_scaling_factor = 1.0;
  int64_t yarn_original_max_position_embeddings = 4096;
  double yarn_beta_fast = 32.0;
  double yarn_beta_slow = 1.0;
  double yarn_mscale = 1.0;
  double yarn_mscale_all_dim = 0.0;
  bool yarn_correction_range_round_to_int = true;

  // ---- initialization ----
  double init_method_std = 0.02;
  // Seed of the Philox streams every parameter is drawn from (Megatron's --seed).
  uint64_t seed = 1234;
  bool perform_initialization = true;
  DType params_dtype = DType::F32;

  // ---- parallelism (ModelParallelConfig) ----
  int64_t tensor_model_parallel_size = 1;
  int64_t pipeline_model_parallel_size = 1;
  bool sequence_parallel = false;
  // Context parallelism (transformer/context_parallel.h): each rank holds 2 of the sequence's
  // 2 * context_parallel_size chunks; attention all-gathers keys and values over the group.
  int64_t context_parallel_size = 1;

  // ---- activation recompute ----
  std::string recompute_granularity;  // "" (None) | "full" | "selective"
  std::string recompute_method;       // "" | "uniform" | "block" (with granularity "full")
  int64_t recompute_num_layers = 0;

  // ---- mixture of experts (Megatron's moe_* fields; transformer/moe/) ----
  int64_t num_moe_experts = 0;      // 0: dense MLP (Megatron's None)
  int64_t moe_ffn_hidden_size = 0;  // 0: ffn_hidden_size
  int64_t moe_router_topk = 2;
  // "aux_loss" (Switch load balancing) or "none".
  std::string moe_router_load_balancing_type = "aux_loss";
  double moe_aux_loss_coeff = 0.0;
  double moe_z_loss_coeff = 0.0;  // 0: no z-loss
  // Softmax over all experts before the top-k (the top-k scores are then not renormalized);
  // by default the top-k logits are softmaxed among themselves.
  bool moe_router_pre_softmax = false;
  double moe_router_topk_scaling_factor = 1.0;
  // A shared expert every token goes through, added to the routed experts' output (Megatron's
  // SharedExpertMLP; Qwen2-MoE, DeepSeek): its FFN size, 0 for none.
  int64_t moe_shared_expert_intermediate_size = 0;
  int64_t expert_model_parallel_size = 1;
  // Experts run unsplit (1); with tensor_model_parallel_size > 1 each rank routes its
  // sequence-parallel slice of the tokens (Megatron's expert_tensor_parallel_size = 1).
  int64_t expert_tensor_parallel_size = 1;

  // ---- loss ----
  bool calculate_per_token_loss = false;

  // Fills Megatron's derived defaults, then validate(). Idempotent.
  void finalize();
  // A finalized copy.
  TransformerConfig finalized() const;
  // Throws mcore::Error naming the offending fields and the fix. Call on a finalized config.
  void validate() const;

  // Derived sizes (finalized config).
  int64_t query_projection_size() const { return kv_channels * num_attention_heads; }
  int64_t kv_projection_size() const { return kv_channels * num_query_groups; }
  // std of output_layer_init_method: init_method_std / sqrt(2 * num_layers) (Megatron's
  // scaled_init_method_normal, used by linear_proj and linear_fc2).
  double output_layer_init_std() const;
};

}  // namespace mcore::transformer
