// finalize_model_grads: everything that must happen to the gradients between the last backward of
// a step and the optimizer step (Megatron Core's finalize_model_grads.py):
//   1. the data-parallel reduction of every model chunk (finish_grad_sync),
//   2. the all-reduce over the tensor-parallel group of gradients that every TP rank computed
//      from only its part of the sequence (parameters marked sequence_parallel: the norms under
//      sequence parallelism),
//   3. the all-reduce over the embedding group (first and last pipeline stage) of the tied
//      word-embedding / output weight (parameters marked `shared_embedding`), so both copies stay equal,
//   4. with num_tokens (per-token loss), division of every gradient by the global token count.
#pragma once

#include <optional>
#include <vector>

#include "mcore/distributed/distributed_data_parallel.h"

namespace mcore::distributed {

// `model`: this rank's model chunks (one without virtual pipeline stages), in stage order.
// `num_tokens`: the local token count of the step (meaningful on the last pipeline stage; it is
// broadcast over the pipeline group and summed over data-parallel ranks). Groups come from
// parallel_state; without it, only step 1 (and 4 without communication) runs.
void finalize_model_grads(const std::vector<DistributedDataParallel*>& model,
                          std::optional<double> num_tokens = std::nullopt,
                          bool force_all_reduce = false);

}  // namespace mcore::distributed
