#include "mcore/pipeline_parallel/stage_layers.h"

#include "mcore/base/error.h"

namespace mcore::pipeline_parallel {

namespace {

void check_sizes(const PipelineLayout& l) {
  MCORE_CHECK(l.num_layers > 0) << "pipeline layout: num_layers must be positive, got "
                                << l.num_layers;
  MCORE_CHECK(l.pipeline_model_parallel_size >= 1 && l.virtual_pipeline_model_parallel_size >= 1)
      << "pipeline layout: pipeline size (" << l.pipeline_model_parallel_size
      << ") and virtual stages per rank (" << l.virtual_pipeline_model_parallel_size
      << ") must be at least 1";
}

}  // namespace

int64_t num_layers_on_rank(const PipelineLayout& l, int pp_rank) {
  check_sizes(l);
  const int pp = l.pipeline_model_parallel_size;
  MCORE_CHECK(pp_rank >= 0 && pp_rank < pp)
      << "pipeline rank " << pp_rank << " is outside [0, " << pp << ")";
  const bool first = l.decoder_first_pipeline_num_layers.has_value();
  const bool last = l.decoder_last_pipeline_num_layers.has_value();
  if (!first && !last) {
    MCORE_CHECK(l.num_layers % pp == 0)
        << "number of layers (" << l.num_layers
        << ") is not divisible by the pipeline model parallel size (" << pp
        << "): change --num-layers, or set --decoder-first-pipeline-num-layers / "
           "--decoder-last-pipeline-num-layers";
    return l.num_layers / pp;
  }
  MCORE_CHECK(pp > 1) << "--decoder-first/last-pipeline-num-layers need "
                         "--pipeline-model-parallel-size > 1";
  if (first && pp_rank == 0) return *l.decoder_first_pipeline_num_layers;
  if (last && pp_rank == pp - 1) return *l.decoder_last_pipeline_num_layers;
  int64_t rest = l.num_layers;
  int middle = pp;
  if (first) rest -= *l.decoder_first_pipeline_num_layers, --middle;
  if (last) rest -= *l.decoder_last_pipeline_num_layers, --middle;
  MCORE_CHECK(rest >= 0 && middle > 0 && rest % middle == 0)
      << "with --decoder-first/last-pipeline-num-layers the remaining " << rest
      << " layers must split evenly over the " << middle << " other pipeline stages";
  return rest / middle;
}

LayerRange get_layer_range(const PipelineLayout& l, int pp_rank, int vp_stage) {
  const int pp = l.pipeline_model_parallel_size, vp = l.virtual_pipeline_model_parallel_size;
  MCORE_CHECK(vp_stage >= 0 && vp_stage < vp)
      << "virtual pipeline stage " << vp_stage << " is outside [0, " << vp << ")";
  // Layers per chunk on each rank; the model runs chunk 0 of every rank, then chunk 1, ...
  std::vector<int64_t> per_chunk(pp);
  for (int r = 0; r < pp; ++r) {
    const int64_t n = num_layers_on_rank(l, r);
    MCORE_CHECK(n % vp == 0) << "pipeline stage " << r << " has " << n
                             << " layers, which do not split evenly into " << vp
                             << " virtual pipeline stages: change --num-layers-per-virtual-"
                                "pipeline-stage / --num-virtual-stages-per-pipeline-rank";
    per_chunk[r] = n / vp;
  }
  int64_t offset = 0;
  for (int c = 0; c < vp_stage; ++c)
    for (int r = 0; r < pp; ++r) offset += per_chunk[r];
  for (int r = 0; r < pp_rank; ++r) offset += per_chunk[r];
  return {offset, per_chunk[pp_rank]};
}

void validate_pipeline_layout(const PipelineLayout& l) {
  int64_t total = 0;
  for (int r = 0; r < l.pipeline_model_parallel_size; ++r)
    for (int c = 0; c < l.virtual_pipeline_model_parallel_size; ++c)
      total += get_layer_range(l, r, c).num_layers;
  MCORE_CHECK(total == l.num_layers)
      << "the pipeline stages hold " << total << " layers but the model has " << l.num_layers
      << ": check --decoder-first/last-pipeline-num-layers against --num-layers";
}

}  // namespace mcore::pipeline_parallel
