// Internal to pretrain_gpt: one training (or evaluation) step's microbatches through the model
// chunks with the pipeline schedule, returning the step's loss as a sum and a count to be
// reduced over data-parallel ranks, and the scalar all-reduce the trainer's bookkeeping uses.
#pragma once

#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/datasets/data_loader.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/pipeline_parallel/schedules.h"
#include "mcore/training/arguments.h"
#include "mcore/training/model_provider.h"

namespace mcore::training {

// `v` reduced over `group` (as a float64 tensor on the group's device); v itself without one.
double all_reduce_scalar(const comm::ProcessGroupPtr& group, double v, comm::ReduceOp op);

// One step's microbatches through this rank's model chunks with the pipeline schedule (or
// without one). The loss reported is a ratio sum / count, shared from the last pipeline stage
// to every rank and summed over data-parallel ranks by the caller: the sum of all masked token
// losses over the number of loss tokens, as Megatron-LM reports `lm loss` (its loss_func's
// reporting pair). The gradients follow Megatron's objective: by default each microbatch's
// masked mean token loss over the number of microbatches (a mean of means, which equals the
// reported value whenever every microbatch has as many loss tokens); with
// --calculate-per-token-loss backward starts from the unnormalized sum (finalize_model_grads
// divides the gradients by the global token count). Dropout masks are keyed by the RNG step, set
// from the microbatch's place in the global batch (microbatch m of data-parallel rank r holds the
// global batch's micro-slot m * dp + r), so that every schedule, recompute, and data-parallel
// size with the same micro batch size draws the same masks for the same samples.
struct StepLoss {
  double loss_sum = 0;
  double count = 0;       // loss tokens
  double num_tokens = 0;  // this rank's loss tokens (last pipeline stage; 0 elsewhere)
  pipeline_parallel::ScheduleStats stats;
};

StepLoss run_microbatches(GPTModelChunks& model, const std::vector<datasets::GPTBatch>& batches,
                          const Arguments& a, optimizer::MegatronOptimizer* opt, bool forward_only,
                          int64_t iteration);

// sum / count of a step's loss over the data-parallel ranks.
double data_parallel_loss(const comm::ProcessGroupPtr& dp_group, double sum, double count);

}  // namespace mcore::training
