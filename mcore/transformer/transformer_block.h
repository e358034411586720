// TransformerBlock (Megatron's transformer/transformer_block.py): the transformer layers one
// pipeline stage owns, plus the final norm on the last stage, with activation recompute.
//
// A stage owns global layers [layer_offset, layer_offset + num_layers). Layers are registered
// under their *global* index ("decoder.layers.7.mlp.linear_fc1.weight" on whichever stage holds
// layer 7), so parameter names - and the Philox streams their init is keyed by - do not depend
// on the pipeline layout. Each layer gets Megatron's 1-based global layer_number.
//
// Recompute (config.recompute_granularity):
//   "full" + "uniform": the stage's layers are cut into chunks of recompute_num_layers; each
//       chunk keeps only its input and is re-run during backward;
//   "full" + "block": the first recompute_num_layers layers of the stage are recomputed one by
//       one, the rest keep their activations;
//   "selective": SelfAttention recomputes only the core attention.
// Dropout masks are keyed (Philox), so recomputed forwards are bit-identical.
#pragma once

#include <vector>

#include "mcore/nn/module.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer {

struct TransformerBlockOptions {
  bool pre_process = true;   // this stage holds the embedding (informational for the block)
  bool post_process = true;  // this stage applies the final norm
  int64_t layer_offset = 0;  // global index of this stage's first layer
  int64_t num_layers = -1;   // layers this stage owns; -1: the rest from layer_offset
  ProcessGroupPtr tp_group;  // null: parallel_state's tensor-model-parallel group
  std::string prefix = "decoder";
};

// Megatron's even pipeline split: stage `pp_rank` of `pp_size` owns
// [pp_rank * L/pp, (pp_rank + 1) * L/pp). Errors when L does not divide.
std::pair<int64_t, int64_t> pipeline_layer_range(int64_t num_layers, int pp_rank, int pp_size);

class TransformerBlock : public nn::Module {
 public:
  TransformerBlock(const TransformerConfig& config, const TransformerLayerSpec& layer_spec,
                   TransformerBlockOptions options = {});

  // hidden [s, b, h] ([s/tp, b, h] under sequence parallel) -> same shape.
  Tensor forward(const Tensor& hidden_states, const AttentionInputs& inputs = {}) const;

  const TransformerConfig& config() const { return config_; }
  int64_t layer_offset() const { return options_.layer_offset; }
  int64_t num_layers_per_stage() const { return static_cast<int64_t>(layers_.size()); }

 private:
  Tensor run_layers(const Tensor& hidden, const AttentionInputs& inputs, size_t begin,
                    size_t end) const;

  TransformerConfig config_;  // finalized; layers point at it
  TransformerBlockOptions options_;
  std::vector<Slot<TransformerLayerFn>> layers_;
  Slot<NormFn> final_layernorm_;
};

}  // namespace mcore::transformer
