// MLP (Megatron's transformer/mlp.py): linear_fc1 (column-parallel) -> activation ->
// linear_fc2 (row-parallel). With gated_linear_unit, linear_fc1 produces [gate; up] (2 *
// ffn_hidden_size rows in the full weight: all gate rows, then all up rows) and the activation
// is act(gate) * up (SwiGLU for silu, GeGLU for gelu). Under tensor parallelism each rank holds
// its slice of *both* halves, [gate_r; up_r] (partition_stride 2), as Megatron does, so the
// gated activation is local to the rank.
#pragma once

#include "mcore/nn/module.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer {

class MLP : public nn::Module {
 public:
  MLP(const MLPArgs& args, const MLPSubmodules& submodules);

  // hidden [s, b, h] -> {output [s, b, h], output_bias (linear_fc2's, for bias-dropout-add)}.
  LinearOutput forward(const Tensor& hidden_states) const;

 private:
  Tensor activation(const Tensor& x) const;

  const TransformerConfig* config_;
  Slot<LinearFn> linear_fc1_, linear_fc2_;
};

}  // namespace mcore::transformer
