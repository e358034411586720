#include "mcore/transformer/spec.h"

#include "mcore/nn/norm.h"
#include "mcore/transformer/attention.h"
#include "mcore/transformer/dot_product_attention.h"
#include "mcore/transformer/mlp.h"
#include "mcore/transformer/moe/moe_layer.h"
#include "mcore/transformer/transformer_layer.h"

namespace mcore::transformer {

namespace {

nn::InitSpec weight_init(const LinearArgs& a) {
  nn::InitSpec init;
  init.seed = a.config->seed;
  init.stream = nn::stream_for_name(a.param_name("weight"));
  init.std = a.init_std;
  return init;
}

}  // namespace

NormSpec::Builder layer_norm_builder() {
  return [](const NormArgs& a, const NoSubmodules&) {
    const TransformerConfig& c = *a.config;
    Slot<NormFn> slot;
    if (c.normalization == "RMSNorm") {
      auto m = std::make_shared<nn::RMSNorm>(a.hidden_size, a.eps, c.params_dtype,
                                             c.layernorm_zero_centered_gamma);
      slot.module = m;
      slot.forward = [m](const Tensor& x) { return m->forward(x); };
    } else {
      auto m = std::make_shared<nn::LayerNorm>(a.hidden_size, a.eps, true, c.params_dtype,
                                               c.layernorm_zero_centered_gamma);
      slot.module = m;
      slot.forward = [m](const Tensor& x) { return m->forward(x); };
    }
    // Under sequence parallelism each rank normalizes its own rows, so the norm weights' grads
    // are partial sums that finalize_model_grads all-reduces over the TP group.
    for (auto& p : slot.module->parameters()) p->sequence_parallel = c.sequence_parallel;
    return slot;
  };
}

LinearSpec::Builder column_parallel_linear_builder() {
  return [](const LinearArgs& a, const NoSubmodules&) {
    tensor_parallel::ColumnParallelLinearOptions o;
    o.bias = a.bias;
    o.gather_output = a.gather_output;
    o.skip_bias_add = a.skip_bias_add;
    o.sequence_parallel = a.config->sequence_parallel;
    o.partition_stride = a.partition_stride;
    o.perform_initialization = a.config->perform_initialization;
    o.init = weight_init(a);
    o.dtype = a.config->params_dtype;
    o.tp_group = a.tp_group;
    auto m =
        std::make_shared<tensor_parallel::ColumnParallelLinear>(a.input_size, a.output_size, o);
    return Slot<LinearFn>{m, [m](const Tensor& x) { return m->forward(x); }};
  };
}

LinearSpec::Builder row_parallel_linear_builder() {
  return [](const LinearArgs& a, const NoSubmodules&) {
    tensor_parallel::RowParallelLinearOptions o;
    o.bias = a.bias;
    o.input_is_parallel = a.input_is_parallel;
    o.skip_bias_add = a.skip_bias_add;
    o.sequence_parallel = a.config->sequence_parallel;
    o.perform_initialization = a.config->perform_initialization;
    o.init = weight_init(a);
    o.dtype = a.config->params_dtype;
    o.tp_group = a.tp_group;
    auto m = std::make_shared<tensor_parallel::RowParallelLinear>(a.input_size, a.output_size, o);
    return Slot<LinearFn>{m, [m](const Tensor& x) { return m->forward(x); }};
  };
}

TransformerLayerSpec get_gpt_layer_local_spec(bool qk_layernorm) {
  SelfAttentionSubmodules attn;
  attn.linear_qkv = {column_parallel_linear_builder()};
  attn.core_attention = {module_class<DotProductAttention>()};
  attn.linear_proj = {row_parallel_linear_builder()};
  if (qk_layernorm) {
    attn.q_layernorm = {layer_norm_builder()};
    attn.k_layernorm = {layer_norm_builder()};
  }
  MLPSubmodules mlp;
  mlp.linear_fc1 = {column_parallel_linear_builder()};
  mlp.linear_fc2 = {row_parallel_linear_builder()};

  TransformerLayerSpec spec;
  spec.module = module_class<TransformerLayer>();
  spec.submodules.input_layernorm = {layer_norm_builder()};
  spec.submodules.self_attention = {module_class<SelfAttention>(), attn};
  spec.submodules.pre_mlp_layernorm = {layer_norm_builder()};
  // The dense MLP or, for a config with experts, the MoE layer (its experts are MLPs built
  // from these submodules).
  spec.submodules.mlp.module = [](const MLPArgs& a, const MLPSubmodules& subs) -> Slot<MLPFn> {
    if (a.config->num_moe_experts > 0)
      return module_builder<moe::MoELayer, MLPFn, MLPArgs, MLPSubmodules>()(a, subs);
    return module_builder<MLP, MLPFn, MLPArgs, MLPSubmodules>()(a, subs);
  };
  spec.submodules.mlp.submodules = mlp;
  return spec;
}

}  // namespace mcore::transformer
