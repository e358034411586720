// This rank's part of the GPT model (Megatron-LM's model_provider + get_model): one GPTModel per
// model chunk - one without virtual pipeline stages, several with the interleaved schedule -
// each holding its global layer range (pipeline_parallel/stage_layers.h), the embedding on the
// first stage's first chunk and the output layer and loss on the last stage's last chunk, each
// wrapped in DistributedDataParallel.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mcore/distributed/distributed_data_parallel.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/pipeline_parallel/stage_layers.h"
#include "mcore/training/arguments.h"

namespace mcore::training {

struct GPTModelChunks {
  std::vector<std::shared_ptr<models::GPTModel>> chunks;
  std::vector<std::unique_ptr<distributed::DistributedDataParallel>> ddp;  // one per chunk
  Device device = Device::cpu();  // where the parameters live (--device)

  // All chunks' parameters by their global names (unique across chunks).
  std::vector<std::pair<std::string, nn::ParameterPtr>> named_parameters() const;
  std::vector<distributed::DistributedDataParallel*> ddp_ptrs() const;
  int64_t num_parameters() const;
  void train(bool on = true);
};

// The layout of layers over pipeline ranks and virtual stages from the arguments.
pipeline_parallel::PipelineLayout pipeline_layout_from_args(const Arguments& args);

// Builds this rank's chunks (parallel_state initialized) on the CPU, moves them to `device`, and
// wraps them in DDP; parameters are broadcast from data-parallel rank 0.
GPTModelChunks build_gpt_model_chunks(const Arguments& args,
                                      const transformer::TransformerConfig& config,
                                      const distributed::DistributedDataParallelConfig& ddp_config,
                                      Device device = Device::cpu());

}  // namespace mcore::training
