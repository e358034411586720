#include "mcore/transformer/transformer_block.h"

#include <string>

#include "mcore/autograd/checkpoint.h"

namespace mcore::transformer {

namespace {

// Holds the layers under their global indices ("layers.7").
class LayerList : public nn::Module {
 public:
  void add(const std::string& name, const std::shared_ptr<nn::Module>& m) {
    register_module(name, m);
  }
};

}  // namespace

std::pair<int64_t, int64_t> pipeline_layer_range(int64_t num_layers, int pp_rank, int pp_size) {
  MCORE_CHECK(pp_size > 0 && pp_rank >= 0 && pp_rank < pp_size)
      << "pipeline_layer_range: pp_rank " << pp_rank << " outside [0, " << pp_size << ")";
  MCORE_CHECK(num_layers % pp_size == 0)
      << "num_layers (" << num_layers << ") must be a multiple of the pipeline parallel size ("
      << pp_size << ") for an even split";
  const int64_t per = num_layers / pp_size;
  return {pp_rank * per, (pp_rank + 1) * per};
}

TransformerBlock::TransformerBlock(const TransformerConfig& config,
                                   const TransformerLayerSpec& layer_spec,
                                   TransformerBlockOptions options)
    : config_(config.finalized()), options_(std::move(options)) {
  if (options_.num_layers < 0) options_.num_layers = config_.num_layers - options_.layer_offset;
  MCORE_CHECK(options_.layer_offset >= 0 && options_.num_layers >= 0 &&
              options_.layer_offset + options_.num_layers <= config_.num_layers)
      << "TransformerBlock: layers [" << options_.layer_offset << ", "
      << options_.layer_offset + options_.num_layers << ") are outside the model's "
      << config_.num_layers << " layers";
  MCORE_CHECK(static_cast<bool>(layer_spec)) << "TransformerBlock: the layer spec is empty";

  auto list = std::make_shared<LayerList>();
  const std::string layers_prefix =
      options_.prefix.empty() ? "layers" : options_.prefix + ".layers";
  for (int64_t i = 0; i < options_.num_layers; ++i) {
    const int64_t global = options_.layer_offset + i;
    TransformerLayerArgs args;
    args.config = &config_;
    args.prefix = layers_prefix + "." + std::to_string(global);
    args.tp_group = options_.tp_group;
    args.layer_number = global + 1;
    Slot<TransformerLayerFn> layer = layer_spec.build(args);
    list->add(std::to_string(global), layer.module);
    layers_.push_back(std::move(layer));
  }
  register_module("layers", list);

  if (options_.post_process) {
    NormArgs norm;
    norm.config = &config_;
    norm.prefix =
        options_.prefix.empty() ? "final_layernorm" : options_.prefix + ".final_layernorm";
    norm.tp_group = options_.tp_group;
    norm.layer_number = config_.num_layers;
    norm.hidden_size = config_.hidden_size;
    norm.eps = config_.layernorm_epsilon;
    // The final norm is the same kind as the layers' (Megatron builds it from the layer spec's
    // norm class); a spec without an input norm falls back to the built-in one.
    NormSpec spec = layer_spec.submodules.input_layernorm;
    if (!spec) spec = {layer_norm_builder()};
    final_layernorm_ = spec.build(norm);
    register_module("final_layernorm", final_layernorm_.module);
  }
}

Tensor TransformerBlock::run_layers(const Tensor& hidden, const AttentionInputs& in, size_t begin,
                                    size_t end) const {
  Tensor h = hidden;
  for (size_t i = begin; i < end; ++i) h = layers_[i].forward(h, in);
  return h;
}

Tensor TransformerBlock::forward(const Tensor& hidden, const AttentionInputs& in) const {
  Tensor h = hidden;
  const size_t n = layers_.size();
  const bool full = config_.recompute_granularity == "full" && is_training();
  const size_t r = static_cast<size_t>(std::max<int64_t>(config_.recompute_num_layers, 1));
  auto checkpointed = [this, &in](const Tensor& x, size_t begin, size_t end) {
    return autograd::checkpoint(
        [this, in, begin, end](const std::vector<Tensor>& xs) -> std::vector<Tensor> {
          return {run_layers(xs[0], in, begin, end)};
        },
        {x})[0];
  };
  if (full && config_.recompute_method == "uniform") {
    for (size_t l = 0; l < n; l += r) h = checkpointed(h, l, std::min(n, l + r));
  } else if (full && config_.recompute_method == "block") {
    for (size_t l = 0; l < n; ++l)
      h = l < r ? checkpointed(h, l, l + 1) : layers_[l].forward(h, in);
  } else {
    h = run_layers(h, in, 0, n);
  }
  if (final_layernorm_) h = final_layernorm_.forward(h);
  return h;
}

}  // namespace mcore::transformer
