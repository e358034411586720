#include "mcore/transformer/transformer_layer.h"

#include "mcore/base/rng_state.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/tensor_parallel/utils.h"

namespace mcore::transformer {

TransformerLayer::TransformerLayer(const TransformerLayerArgs& args,
                                   const TransformerLayerSubmodules& subs)
    : config_(args.config), layer_number_(args.layer_number), tp_group_(args.tp_group) {
  const TransformerConfig& c = *config_;
  NormArgs norm;
  static_cast<SlotArgs&>(norm) = args;
  norm.hidden_size = c.hidden_size;
  norm.eps = c.layernorm_epsilon;

  norm.prefix = args.param_name("input_layernorm");
  input_layernorm_ = subs.input_layernorm.build(norm);
  if (input_layernorm_) register_module("input_layernorm", input_layernorm_.module);

  SelfAttentionArgs attn;
  static_cast<SlotArgs&>(attn) = args;
  attn.prefix = args.param_name("self_attention");
  attn.attn_mask_type = AttnMaskType::kCausal;
  self_attention_ = subs.self_attention.build(attn);
  MCORE_CHECK(static_cast<bool>(self_attention_))
      << "TransformerLayer: the self_attention slot is empty";
  register_module("self_attention", self_attention_.module);

  norm.prefix = args.param_name("pre_mlp_layernorm");
  pre_mlp_layernorm_ = subs.pre_mlp_layernorm.build(norm);
  if (pre_mlp_layernorm_) register_module("pre_mlp_layernorm", pre_mlp_layernorm_.module);

  MLPArgs mlp;
  static_cast<SlotArgs&>(mlp) = args;
  mlp.prefix = args.param_name("mlp");
  mlp_ = subs.mlp.build(mlp);
  MCORE_CHECK(static_cast<bool>(mlp_)) << "TransformerLayer: the mlp slot is empty";
  register_module("mlp", mlp_.module);

  attn_dropout_stream_ = nn::stream_for_name(args.param_name("self_attn_bda"));
  mlp_dropout_stream_ = nn::stream_for_name(args.param_name("mlp_bda"));
  cp_ = context_parallel_layout(config_->context_parallel_size);
}

Tensor TransformerLayer::bias_dropout_add(const LinearOutput& x, const Tensor& residual,
                                          uint64_t stream) const {
  Tensor out = x.output_bias.defined() ? F::add(x.output, x.output_bias) : x.output;
  const double p = config_->hidden_dropout;
  if (is_training() && p > 0) {
    // Under sequence parallelism this rank holds rows [rank * s/tp, (rank + 1) * s/tp) of its
    // (context-parallel rank's) sequence; sequence_dropout keys each row by its global place.
    int64_t first_row = 0, local_len = out.size(0);
    if (config_->sequence_parallel) {
      first_row = tensor_parallel::resolve_tp_group(tp_group_)->rank() * out.size(0);
      local_len *= config_->tensor_model_parallel_size;
    }
    RngState rng = get_rng_state();
    out = sequence_dropout(out, p, true, rng.seed, mix_stream(stream, rng.step), first_row,
                           local_len, cp_);
  }
  return F::add(residual, out);
}

Tensor TransformerLayer::forward(const Tensor& hidden, const AttentionInputs& in) const {
  Tensor x = input_layernorm_ ? input_layernorm_.forward(hidden) : hidden;
  Tensor residual = config_->apply_residual_connection_post_layernorm ? x : hidden;
  Tensor h = bias_dropout_add(self_attention_.forward(x, in), residual, attn_dropout_stream_);

  x = pre_mlp_layernorm_ ? pre_mlp_layernorm_.forward(h) : h;
  residual = config_->apply_residual_connection_post_layernorm ? x : h;
  return bias_dropout_add(mlp_.forward(x), residual, mlp_dropout_stream_);
}

}  // namespace mcore::transformer
