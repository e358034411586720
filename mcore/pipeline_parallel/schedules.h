// Pipeline schedules (Megatron Core's pipeline_parallel/schedules.py): one training step's
// forward and backward passes over all microbatches, for this rank's pipeline stage.
//
//   auto fb = pipeline_parallel::get_forward_backward_func(num_model_chunks);
//   ForwardBackwardResult r = fb(forward_step_func, config);
//
// - no pipelining (one stage): forward + backward per microbatch, gradients accumulating, the
//   data-parallel reduction held back (DDP no_sync) until the last microbatch's backward;
// - 1F1B without interleaving: warmup of pp - rank - 1 forwards, a steady state alternating one
//   forward and one backward, and a cooldown of the remaining backwards. Stage r keeps at most
//   pp - r microbatches' activations alive;
// - interleaved 1F1B (virtual pipeline stages): each rank holds several model chunks; the
//   microbatches run in groups of microbatch_group_size_per_vp_stage (default pp) through
//   chunk 0, then chunk 1, ...; warmup (pp - rank - 1) * 2 + (chunks - 1) * group forwards.
//
// The caller's forward_step_func runs one microbatch through one model chunk: it receives the
// activation from the previous stage (undefined on the very first stage), and returns the
// chunk's output - or, on the last stage, the microbatch's loss (a 0-d tensor, e.g. the mean
// over its tokens) plus the values to report. The schedule divides the loss by the number of
// microbatches, applies grad_scale_func (the fp16 loss scale) and runs backward from it.
//
// Once an activation has been sent, its values are dropped (only the autograd graph, which is
// all backward needs, stays): Megatron's deallocate_pipeline_outputs.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mcore/distributed/distributed_data_parallel.h"
#include "mcore/pipeline_parallel/p2p_communication.h"

namespace mcore::pipeline_parallel {

struct ForwardStepOutput {
  Tensor output;  // activation for the next stage, or on the last stage the 0-d loss
  std::vector<std::pair<std::string, double>> reported;  // last stage: e.g. {"lm loss", 2.3}
  double num_tokens = 0;                                 // last stage: tokens in the loss
};

// (microbatch id, model chunk id, input activation, is this chunk the model's last stage).
using ForwardStepFunc = std::function<ForwardStepOutput(
    int64_t microbatch_id, int model_chunk_id, const Tensor& input_tensor, bool is_last_stage)>;

struct ScheduleConfig {
  int64_t num_microbatches = 1;
  int num_model_chunks = 1;  // virtual pipeline stages per rank
  bool forward_only = false;
  // The last stage's loss is a sum over tokens: backward starts from it as it is (not divided
  // by the number of microbatches); the caller divides the gradients by the token count
  // (finalize_model_grads with num_tokens), as Megatron's calculate_per_token_loss.
  bool calculate_per_token_loss = false;
  P2PConfig p2p;  // activation shape and dtype
  // Interleaved schedule: consecutive microbatches per model chunk (0: the pipeline size).
  int microbatch_group_size_per_vp_stage = 0;
  // Applied to the last stage's loss before backward (optimizer loss scaling).
  std::function<Tensor(const Tensor&)> grad_scale_func;
  // One per model chunk (or empty): their gradient reduction waits until that chunk's last
  // backward of the step.
  std::vector<distributed::DistributedDataParallel*> ddp;
  bool deallocate_pipeline_outputs = true;
  comm::ProcessGroupPtr pp_group;  // nullptr: parallel_state's pipeline group
};

struct ScheduleStats {
  int64_t forward_steps = 0;
  int64_t backward_steps = 0;
  // Most microbatches whose forward had run and whose backward had not, at any moment (the
  // activations this rank held at once).
  int64_t max_live_microbatches = 0;
  double compute_seconds = 0;  // inside forward_step_func and backward
  double total_seconds = 0;    // the whole schedule, communication and waiting included
};

struct ForwardBackwardResult {
  // Last stage: one entry per microbatch with its reported values (empty on other stages).
  std::vector<std::vector<std::pair<std::string, double>>> losses_reduced;
  double num_tokens = 0;
  ScheduleStats stats;
};

using ForwardBackwardFunc =
    std::function<ForwardBackwardResult(const ForwardStepFunc&, const ScheduleConfig&)>;

ForwardBackwardResult forward_backward_no_pipelining(const ForwardStepFunc& forward_step_func,
                                                     const ScheduleConfig& config);
ForwardBackwardResult forward_backward_pipelining_without_interleaving(
    const ForwardStepFunc& forward_step_func, const ScheduleConfig& config);
ForwardBackwardResult forward_backward_pipelining_with_interleaving(
    const ForwardStepFunc& forward_step_func, const ScheduleConfig& config);

// Megatron's choice: the interleaved schedule when there are virtual stages (num_model_chunks >
// 1), 1F1B when the pipeline group has more than one rank, else no pipelining.
ForwardBackwardFunc get_forward_backward_func(int num_model_chunks = 1,
                                              const comm::ProcessGroupPtr& pp_group = nullptr);

// The (microbatch id, model chunk id) of each virtual microbatch in forward order
// (Megatron's get_schedule_table).
std::vector<std::pair<int64_t, int>> get_schedule_table(int64_t num_microbatches,
                                                        int num_model_chunks, int group_size);

}  // namespace mcore::pipeline_parallel
