// The trainer's checkpoints (Megatron-LM's training/checkpointing.py over
// mcore/dist_checkpointing): the model's parameters as ShardedTensors (tensor-parallel shards
// with their global shape and offset, saved once per data-parallel replica group), the
// optimizer state sharded like its parameters, and the common sections - iteration, consumed
// samples, scheduler, RNG state, loss scaler (inside the optimizer section), skipped/nan
// counts and the arguments.
//
//   save_trainer_checkpoint(args, iteration, model, optimizer, scheduler, state);
//   auto loaded = load_trainer_checkpoint(args, model, optimizer, scheduler);  // --load
//
// A checkpoint saved in another precision loads (fp32, --bf16 and --fp16 runs resume each
// other's checkpoints): weights are cast to this run's dtype. When the optimizer state is
// loaded the precise fp32 values carry over: a run resuming a bf16/fp16 checkpoint in another
// precision casts its weights from the checkpoint's fp32 main params
// (optimizer.state.fp32_param.*) rather than from their saved rounding, and a bf16/fp16 run
// resuming an fp32 checkpoint takes its main params from the saved fp32 weights. exp_avg and
// exp_avg_sq are fp32 in every precision. With --no-load-optim or --finetune only the model
// tensors are read (main params from them, as Megatron).
//
// Loading honours --no-load-optim, --no-load-rng and --finetune. The checkpoint loaded is the
// one latest_checkpointed_iteration.txt names (verified: a corrupt one is an error naming the
// problem), or, without that file, the newest valid iter_* directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcore/dist_checkpointing/metadata.h"
#include "mcore/dist_checkpointing/sharded_tensor.h"
#include "mcore/nn/module.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/optimizer/optimizer_param_scheduler.h"
#include "mcore/training/arguments.h"

namespace mcore::training {

// What the trainer resumes from besides model and optimizer tensors.
struct TrainerState {
  int64_t iteration = 0;
  int64_t consumed_train_samples = 0;
  int64_t consumed_valid_samples = 0;
  int64_t num_skipped_iterations = 0;
  int64_t num_nan_iterations = 0;
};

// This rank's parameters, from all its model chunks, by their (global) names.
using NamedParameters = std::vector<std::pair<std::string, nn::ParameterPtr>>;

// Collective over the world group: every rank calls it. Returns the checkpoint directory.
std::string save_trainer_checkpoint(const Arguments& args, const NamedParameters& model,
                                    const optimizer::MegatronOptimizer* optimizer,
                                    const optimizer::OptimizerParamScheduler* scheduler,
                                    const TrainerState& state);

// Loads from args.load. nullopt when there is no checkpoint there (the run starts fresh; an
// error with --exit-on-missing-checkpoint). With --finetune the iteration and consumed samples
// restart from zero and only the model is loaded.
std::optional<TrainerState> load_trainer_checkpoint(const Arguments& args,
                                                    const NamedParameters& model,
                                                    optimizer::MegatronOptimizer* optimizer,
                                                    optimizer::OptimizerParamScheduler* scheduler);

// Rank 0 of a run with --save: takes an exclusive lock on <save_dir>/.mcore_save.lock for the
// life of the process, and fails naming the directory when another running job holds it (two
// jobs saving to one directory delete and overwrite each other's checkpoints). flock(2): local
// file systems and NFSv4; elsewhere it may not see the other job.
void lock_save_directory(const std::string& save_dir);

// The padded vocabulary size (word-embedding rows) of the checkpoint --load would load, or
// nullopt without one. Megatron pads the vocabulary to a multiple of 128 x TP, so a checkpoint
// saved under another TP size may have more or fewer padding rows than this run would make.
std::optional<int64_t> checkpoint_padded_vocab_size(const Arguments& args);

// `model`'s parameters as this process's pieces of the global tensors, keyed "model.<name>"
// with global layer numbers (Megatron's sharded_state_dict), for
// dist_checkpointing::save_checkpoint: tensor-parallel shards with their global offsets, one
// writer per data-parallel replica set, SwiGLU's fused fc1 placed block by block.
std::vector<dist_checkpointing::ShardedTensor> model_sharded_tensors(const NamedParameters& model);

// Requests that fill `model`'s parameters (this process's tensor-parallel shards; the whole
// tensors when model parallelism is not initialized) from the checkpoint `meta` describes, for
// dist_checkpointing::load_checkpoint. They place SwiGLU's fused [gate; up] fc1 (partition
// stride 2) by its blocks, and read checkpoints of older mcore versions, which stored it rank by
// rank, from where those put it.
std::vector<dist_checkpointing::ShardedTensor> model_load_requests(
    const NamedParameters& model, const dist_checkpointing::CheckpointMetadata& meta);

}  // namespace mcore::training
