#include "mcore/transformer/transformer_config.h"

#include <cmath>

#include "mcore/base/error.h"

namespace mcore::transformer {

ActivationFunc activation_func_from_string(const std::string& name) {
  if (name == "gelu") return ActivationFunc::kGelu;
  if (name == "gelu_tanh" || name == "gelu_new" || name == "gelu_pytorch_tanh")
    return ActivationFunc::kGeluTanh;
  if (name == "silu" || name == "swish") return ActivationFunc::kSilu;
  MCORE_FAIL() << "unknown activation_func '" << name
               << "': use one of gelu, gelu_tanh, silu (swish)";
  return ActivationFunc::kGelu;  // unreachable: MCORE_FAIL throws
}

const char* activation_func_name(ActivationFunc f) {
  switch (f) {
    case ActivationFunc::kGelu:
      return "gelu";
    case ActivationFunc::kGeluTanh:
      return "gelu_tanh";
    case ActivationFunc::kSilu:
      return "silu";
  }
  return "?";
}

void TransformerConfig::finalize() {
  MCORE_CHECK(num_attention_heads > 0)
      << "TransformerConfig: num_attention_heads must be positive, got " << num_attention_heads;
  if (ffn_hidden_size == 0) ffn_hidden_size = 4 * hidden_size;
  if (kv_channels == 0) {
    MCORE_CHECK(hidden_size % num_attention_heads == 0)
        << "TransformerConfig: hidden_size (" << hidden_size
        << ") is not a multiple of num_attention_heads (" << num_attention_heads
        << "), so kv_channels cannot default to hidden_size / num_attention_heads: set "
           "kv_channels explicitly or change the sizes";
    kv_channels = hidden_size / num_attention_heads;
  }
  if (num_query_groups == 0) num_query_groups = num_attention_heads;
  if (num_moe_experts > 0 && moe_ffn_hidden_size == 0) moe_ffn_hidden_size = ffn_hidden_size;
  // Megatron-LM turns sequence parallelism off with one tensor-parallel rank: there is nothing
  // to split the sequence across.
  if (tensor_model_parallel_size == 1) sequence_parallel = false;
  if (apply_query_key_layer_scaling) attention_softmax_in_fp32 = true;
  validate();
}

TransformerConfig TransformerConfig::finalized() const {
  TransformerConfig c = *this;
  c.finalize();
  return c;
}

double TransformerConfig::output_layer_init_std() const {
  return init_method_std / std::sqrt(2.0 * static_cast<double>(num_layers));
}

void TransformerConfig::validate() const {
  const char* w = "TransformerConfig: ";
  MCORE_CHECK(num_layers > 0) << w << "num_layers must be positive, got " << num_layers;
  MCORE_CHECK(hidden_size > 0) << w << "hidden_size must be positive, got " << hidden_size;
  MCORE_CHECK(ffn_hidden_size > 0)
      << w << "ffn_hidden_size must be positive, got " << ffn_hidden_size;
  MCORE_CHECK(kv_channels > 0) << w << "kv_channels must be positive, got " << kv_channels
                               << " (call finalize() to fill the default)";
  MCORE_CHECK(num_query_groups > 0) << w << "num_query_groups must be positive, got "
                                    << num_query_groups << " (call finalize() to fill the default)";
  MCORE_CHECK(tensor_model_parallel_size > 0)
      << w << "tensor_model_parallel_size must be positive, got " << tensor_model_parallel_size;
  MCORE_CHECK(num_attention_heads % tensor_model_parallel_size == 0)
      << w << "num_attention_heads (" << num_attention_heads
      << ") must be a multiple of tensor_model_parallel_size (" << tensor_model_parallel_size
      << "): each tensor-parallel rank holds whole heads";
  MCORE_CHECK(num_attention_heads % num_query_groups == 0)
      << w << "num_attention_heads (" << num_attention_heads
      << ") must be a multiple of num_query_groups (" << num_query_groups
      << "): every query group holds the same number of heads";
  MCORE_CHECK(num_query_groups % tensor_model_parallel_size == 0)
      << w << "num_query_groups (" << num_query_groups
      << ") must be a multiple of tensor_model_parallel_size (" << tensor_model_parallel_size
      << "): each rank holds whole key/value groups (replicating K/V across ranks is not "
         "supported); lower tensor_model_parallel_size";
  MCORE_CHECK(ffn_hidden_size % tensor_model_parallel_size == 0)
      << w << "ffn_hidden_size (" << ffn_hidden_size
      << ") must be a multiple of tensor_model_parallel_size (" << tensor_model_parallel_size
      << ")";
  MCORE_CHECK(normalization == "LayerNorm" || normalization == "RMSNorm")
      << w << "normalization must be \"LayerNorm\" or \"RMSNorm\", got \"" << normalization << "\"";
  MCORE_CHECK(layernorm_epsilon > 0)
      << w << "layernorm_epsilon must be positive, got " << layernorm_epsilon;
  MCORE_CHECK(hidden_dropout >= 0 && hidden_dropout < 1)
      << w << "hidden_dropout must be in [0, 1), got " << hidden_dropout;
  MCORE_CHECK(attention_dropout >= 0 && attention_dropout < 1)
      << w << "attention_dropout must be in [0, 1), got " << attention_dropout;
  MCORE_CHECK(init_method_std > 0)
      << w << "init_method_std must be positive, got " << init_method_std;
  MCORE_CHECK(softmax_scale >= 0) << w << "softmax_scale must be positive (or 0 for "
                                  << "1/sqrt(kv_channels)), got " << softmax_scale;
  MCORE_CHECK(is_floating(params_dtype))
      << w << "params_dtype must be a floating dtype, got " << dtype_name(params_dtype);

  if (num_moe_experts > 0) {
    MCORE_CHECK(moe_router_topk >= 1 && moe_router_topk <= num_moe_experts)
        << w << "moe_router_topk (" << moe_router_topk << ") must lie in [1, num_moe_experts ("
        << num_moe_experts << ")]";
    // Softmax over a single chosen logit is constantly 1: the router would get no gradient.
    MCORE_CHECK(moe_router_topk > 1 || moe_router_pre_softmax)
        << w << "moe_router_topk 1 needs moe_router_pre_softmax (--moe-router-pre-softmax): "
        << "the softmax over one chosen logit is always 1 and the router would not learn";
    MCORE_CHECK(moe_ffn_hidden_size > 0)
        << w << "moe_ffn_hidden_size must be positive, got " << moe_ffn_hidden_size;
    MCORE_CHECK(moe_router_load_balancing_type == "aux_loss" ||
                moe_router_load_balancing_type == "none")
        << w << "moe_router_load_balancing_type \"" << moe_router_load_balancing_type
        << "\" is not implemented; use aux_loss or none";
    MCORE_CHECK(moe_aux_loss_coeff >= 0 && moe_z_loss_coeff >= 0)
        << w << "moe_aux_loss_coeff and moe_z_loss_coeff must be >= 0";
    MCORE_CHECK(context_parallel_size == 1)
        << w << "mixture-of-experts layers run without context parallelism here "
        << "(context_parallel_size " << context_parallel_size
        << "); use data, tensor, expert and pipeline parallelism";
    MCORE_CHECK(expert_tensor_parallel_size == 1)
        << w << "experts are not split by tensor parallelism here (expert_tensor_parallel_size "
        << expert_tensor_parallel_size << "); set it to 1";
    MCORE_CHECK(tensor_model_parallel_size == 1 || sequence_parallel)
        << w << "mixture-of-experts layers with tensor_model_parallel_size "
        << tensor_model_parallel_size << " need sequence_parallel (each rank routes its slice "
        << "of the sequence), as in Megatron";
    MCORE_CHECK(expert_model_parallel_size >= 1 &&
                num_moe_experts % expert_model_parallel_size == 0)
        << w << "num_moe_experts (" << num_moe_experts
        << ") must be a multiple of expert_model_parallel_size (" << expert_model_parallel_size
        << ")";
  }

  const std::string& pe = position_embedding_type;
  MCORE_CHECK(pe == "learned_absolute" || pe == "rope" || pe == "yarn" || pe == "none")
      << w << "position_embedding_type must be learned_absolute, rope, yarn or none, got \"" << pe
      << "\"";
  if (pe == "rope" || pe == "yarn") {
    MCORE_CHECK(rotary_percent > 0 && rotary_percent <= 1)
        << w << "rotary_percent must be in (0, 1], got " << rotary_percent;
    int64_t rot_dim = static_cast<int64_t>(kv_channels * rotary_percent);
    MCORE_CHECK(rot_dim >= 2 && rot_dim % 2 == 0)
        << w << "the rotary dimension int(kv_channels * rotary_percent) = int(" << kv_channels
        << " * " << rotary_percent << ") = " << rot_dim
        << " must be even and at least 2: change rotary_percent";
    MCORE_CHECK(rotary_base > 0) << w << "rotary_base must be positive, got " << rotary_base;
  }
  if (pe == "yarn") {
    MCORE_CHECK(!rotary_interleaved)
        << w << "YaRN rotary embeddings do not support rotary_interleaved (as in Megatron)";
    MCORE_CHECK(!rope_scaling) << w << "rope_scaling (Llama-3) and YaRN cannot be combined";
    MCORE_CHECK(yarn_rotary_scaling_factor > 0)
        << w << "yarn_rotary_scaling_factor must be positive, got " << yarn_rotary_scaling_factor;
  }
  if (rope_scaling) {
    MCORE_CHECK(rope_scaling_factor > 0 &&
                rope_scaling_high_freq_factor > rope_scaling_low_freq_factor &&
                rope_scaling_original_max_position_embeddings > 0)
        << w << "rope_scaling needs rope_scaling_factor > 0, high_freq_factor ("
        << rope_scaling_high_freq_factor << ") > low_freq_factor (" << rope_scaling_low_freq_factor
        << ") and original_max_position_embeddings > 0";
  }

  const std::string& g = recompute_granularity;
  MCORE_CHECK(g.empty() || g == "full" || g == "selective")
      << w << "recompute_granularity must be empty (off), \"full\" or \"selective\", got \"" << g
      << "\"";
  const std::string& m = recompute_method;
  MCORE_CHECK(m.empty() || m == "uniform" || m == "block")
      << w << "recompute_method must be empty, \"uniform\" or \"block\", got \"" << m << "\"";
  if (g == "full") {
    MCORE_CHECK(!m.empty()) << w << "recompute_granularity \"full\" needs recompute_method "
                            << "\"uniform\" or \"block\"";
    MCORE_CHECK(recompute_num_layers > 0)
        << w << "recompute_granularity \"full\" needs recompute_num_layers > 0, got "
        << recompute_num_layers;
    int64_t per_stage = num_layers / std::max<int64_t>(1, pipeline_model_parallel_size);
    MCORE_CHECK(m != "block" || recompute_num_layers <= per_stage)
        << w << "recompute_num_layers (" << recompute_num_layers
        << ") must not exceed the layers per pipeline stage (" << per_stage
        << ") with recompute_method \"block\"";
    MCORE_CHECK(m != "uniform" || recompute_num_layers <= num_layers)
        << w << "recompute_num_layers (" << recompute_num_layers << ") exceeds num_layers ("
        << num_layers << ")";
  } else if (g == "selective") {
    MCORE_CHECK(m.empty()) << w << "recompute_method must be empty with recompute_granularity "
                           << "\"selective\" (it only applies to \"full\"), got \"" << m << "\"";
  } else {
    MCORE_CHECK(m.empty()) << w << "recompute_method \"" << m
                           << "\" is set but recompute_granularity is not: set "
                              "recompute_granularity to \"full\"";
  }
  MCORE_CHECK(context_parallel_size >= 1)
      << w << "context_parallel_size must be >= 1, got " << context_parallel_size;
  MCORE_CHECK(!sequence_parallel || tensor_model_parallel_size > 1)
      << w << "sequence_parallel needs tensor_model_parallel_size > 1";
}

}  // namespace mcore::transformer
