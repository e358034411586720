// TransformerLayer (Megatron's transformer/transformer_layer.py), pre-norm:
//   x = hidden + dropout(self_attention(input_layernorm(hidden)) + attn_bias)
//   y = x + dropout(mlp(pre_mlp_layernorm(x)) + mlp_bias)
// (the "bias-dropout-add": the projections return their bias unadded, skip_bias_add, so it is
// fused with dropout and the residual). apply_residual_connection_post_layernorm takes the
// residual after the norm instead. Dropout masks are keyed by this layer's global name and the
// element's global index, so they do not depend on the tensor/sequence-parallel layout.
#pragma once

#include "mcore/nn/module.h"
#include "mcore/transformer/context_parallel.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer {

class TransformerLayer : public nn::Module {
 public:
  TransformerLayer(const TransformerLayerArgs& args, const TransformerLayerSubmodules& submodules);

  // hidden [s, b, h] ([s/tp, b, h] under sequence parallel) -> same shape.
  Tensor forward(const Tensor& hidden_states, const AttentionInputs& inputs = {}) const;

  int64_t layer_number() const { return layer_number_; }

 private:
  // residual + dropout(x + bias)
  Tensor bias_dropout_add(const LinearOutput& x, const Tensor& residual, uint64_t stream) const;

  const TransformerConfig* config_;
  int64_t layer_number_;
  ProcessGroupPtr tp_group_;
  Slot<NormFn> input_layernorm_, pre_mlp_layernorm_;
  Slot<AttentionFn> self_attention_;
  Slot<MLPFn> mlp_;
  uint64_t attn_dropout_stream_, mlp_dropout_stream_;
  ContextParallelLayout cp_;
};

}  // namespace mcore::transformer
