// Megatron-LM's pretrain() for GPT (megatron/training/training.py), single pipeline stage:
// distributed and parallel_state setup from the arguments, the GPTModel built from the
// arguments or a --model preset (vocabulary padded from the tokenizer's size), the DDP
// wrapper, optimizer and LR/WD scheduler, the train/valid/test datasets (--data-path blends
// and splits, or --mock-data) read with the pretraining sampler from the consumed-sample
// count, then the train loop:
//
//   per iteration: microbatch count from the (ramp-up) calculator; zero the grad buffers;
//   every microbatch but the last under no_sync: advance the RNG step, forward, loss (masked
//   mean / microbatches), backward; finalize_model_grads; optimizer step (skipped on inf/nan
//   with a loss scaler); scheduler step by the global batch; the iteration log line,
//   TensorBoard and JSONL metrics; evaluation every --eval-interval; checkpoint every
//   --save-interval; exit on --exit-interval, --exit-duration-in-mins or SIGTERM/SIGINT
//   (saving first).
//
// Metrics: rank 0 writes TensorBoard events and <tensorboard-dir>/metrics.jsonl (every
// iteration's loss, lr, grad norm, ... at full precision; validation/test records), trimmed
// to the checkpoint's iteration on resume. Fault injection for tests:
// MCORE_FAULT_KILL_AT_ITERATION=N makes every rank SIGKILL itself after iteration N (after
// that iteration's checkpoint, if any), a real kill -9 at a reproducible point.
//
// tools/pretrain_gpt.cpp is `return pretrain_gpt_main(argc, argv);`.
#pragma once

#include <cstdint>
#include <string>

#include "mcore/training/arguments.h"
#include "mcore/transformer/transformer_config.h"

namespace mcore::training {

// The model's TransformerConfig from validated arguments (finalized).
transformer::TransformerConfig transformer_config_from_args(const Arguments& args);

// Megatron's num_floating_point_operations: training FLOPs (forward + backward) of one
// iteration over `batch_size` sequences.
double num_floating_point_operations(const Arguments& args, int64_t batch_size);

// Runs the whole training job for parsed and validated arguments; distributed must be
// initialized. Returns the process exit code.
int pretrain_gpt(Arguments& args);

// parse_args, init_distributed, validate_args, pretrain_gpt; errors on any rank end the job
// with "[rank N] <message>" and a non-zero status.
int pretrain_gpt_main(int argc, char** argv);

}  // namespace mcore::training
