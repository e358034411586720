// Which transformer layers each pipeline stage owns (Megatron's get_num_layers_to_build and
// get_transformer_layer_offset).
//
// Every pipeline rank owns a number of layers: num_layers / pp evenly, or, with
// decoder_first/last_pipeline_num_layers, those counts on the first/last rank and the rest split
// evenly over the middle ranks. With virtual pipeline stages (the interleaved schedule) each
// rank's layers are split evenly into vp_size model chunks, and the model is laid out in
// virtual-stage order: chunk 0 of ranks 0..pp-1, then chunk 1 of ranks 0..pp-1, and so on. So
// with 8 layers, pp = 2 and vp = 2: rank 0 holds layers {0,1} and {4,5}, rank 1 {2,3} and {6,7}.
//
// Layers keep their global numbers (TransformerBlock names them by global index), so parameter
// names and checkpoint keys are the same under every pipeline layout.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace mcore::pipeline_parallel {

struct PipelineLayout {
  int64_t num_layers = 0;
  int pipeline_model_parallel_size = 1;
  int virtual_pipeline_model_parallel_size = 1;  // model chunks per rank
  std::optional<int64_t> decoder_first_pipeline_num_layers;
  std::optional<int64_t> decoder_last_pipeline_num_layers;
};

struct LayerRange {
  int64_t offset = 0;      // global index of the chunk's first layer
  int64_t num_layers = 0;  // layers in the chunk (may be 0 with an uneven split)
};

// Layers on pipeline rank `pp_rank`, summed over its chunks. Errors (naming the flags) when the
// layout does not divide.
int64_t num_layers_on_rank(const PipelineLayout& layout, int pp_rank);

// The layers of model chunk `vp_stage` on pipeline rank `pp_rank`.
LayerRange get_layer_range(const PipelineLayout& layout, int pp_rank, int vp_stage = 0);

// Checks the whole layout (every rank and chunk); throws an Error naming the fix.
void validate_pipeline_layout(const PipelineLayout& layout);

}  // namespace mcore::pipeline_parallel
