#include "mcore/training/model_provider.h"

#include "mcore/parallel_state/parallel_state.h"
#include "mcore/transformer/spec.h"

namespace mcore::training {

std::vector<std::pair<std::string, nn::ParameterPtr>> GPTModelChunks::named_parameters() const {
  std::vector<std::pair<std::string, nn::ParameterPtr>> all;
  for (const auto& c : chunks) {
    auto p = c->named_parameters();
    all.insert(all.end(), p.begin(), p.end());
  }
  return all;
}

std::vector<distributed::DistributedDataParallel*> GPTModelChunks::ddp_ptrs() const {
  std::vector<distributed::DistributedDataParallel*> v;
  for (const auto& d : ddp) v.push_back(d.get());
  return v;
}

int64_t GPTModelChunks::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, p] : named_parameters()) n += p->numel();
  return n;
}

void GPTModelChunks::train(bool on) {
  for (auto& c : chunks) c->train(on);
}

pipeline_parallel::PipelineLayout pipeline_layout_from_args(const Arguments& a) {
  pipeline_parallel::PipelineLayout l;
  l.num_layers = a.num_layers.value_or(0);
  l.pipeline_model_parallel_size = static_cast<int>(a.pipeline_model_parallel_size);
  l.virtual_pipeline_model_parallel_size =
      static_cast<int>(a.virtual_pipeline_model_parallel_size.value_or(1));
  l.decoder_first_pipeline_num_layers = a.decoder_first_pipeline_num_layers;
  l.decoder_last_pipeline_num_layers = a.decoder_last_pipeline_num_layers;
  return l;
}

GPTModelChunks build_gpt_model_chunks(
    const Arguments& args, const transformer::TransformerConfig& config,
    const distributed::DistributedDataParallelConfig& ddp_config, Device device) {
  const auto layout = pipeline_layout_from_args(args);
  pipeline_parallel::validate_pipeline_layout(layout);
  const int pp_rank = parallel_state::get_pipeline_model_parallel_rank();
  const int pp_size = parallel_state::get_pipeline_model_parallel_world_size();
  const int vp = layout.virtual_pipeline_model_parallel_size;
  GPTModelChunks m;
  for (int c = 0; c < vp; ++c) {
    const auto range = pipeline_parallel::get_layer_range(layout, pp_rank, c);
    models::GPTModelOptions o;
    o.pre_process = pp_rank == 0 && c == 0;
    o.post_process = pp_rank == pp_size - 1 && c == vp - 1;
    o.share_embeddings_and_output_weights = !args.untie_embeddings_and_output_weights;
    o.layer_offset = range.offset;
    o.num_layers_in_stage = range.num_layers;
    m.chunks.push_back(std::make_shared<models::GPTModel>(
        config, transformer::get_gpt_layer_local_spec(args.qk_layernorm), *args.padded_vocab_size,
        *args.max_position_embeddings, o));
  }
  // Initialized on the CPU (the same Philox values on every device and layout), then moved in
  // place before DDP builds its grad buffers and the optimizer its state on that device.
  m.device = device;
  for (auto& chunk : m.chunks) chunk->to(device);
  for (int c = 0; c < vp; ++c) {
    distributed::DistributedDataParallelOptions opts;
    // Megatron: chunks after the first reduce in one bucket (their reduction overlaps the
    // remaining backward of earlier chunks anyway).
    opts.disable_bucketing = c > 0;
    m.ddp.push_back(
        std::make_unique<distributed::DistributedDataParallel>(m.chunks[c], ddp_config, opts));
    m.ddp.back()->broadcast_params();
  }
  return m;
}

}  // namespace mcore::training
