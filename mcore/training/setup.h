// Internal to pretrain_gpt: building the pieces of a training run from the arguments - the
// tokenizer, the train/valid/test datasets, the optimizer and LR/WD scheduler configs, the
// distributed timeout, and the vocabulary size a checkpoint to resume fixes.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>

#include "mcore/datasets/blended_megatron_dataset_builder.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/optimizer/optimizer_param_scheduler.h"
#include "mcore/tokenizers/tokenizer.h"
#include "mcore/training/arguments.h"

namespace mcore::training {

std::shared_ptr<const tokenizers::Tokenizer> build_tokenizer_from_args(const Arguments& a);

// The GPT datasets for the three splits with `sizes` samples each (Megatron's
// build_train_valid_test_datasets).
datasets::SplitDatasets build_datasets(const Arguments& a, const tokenizers::Tokenizer& tok,
                                       const std::array<std::optional<int64_t>, 3>& sizes);

optimizer::OptimizerParamSchedulerConfig scheduler_config(const Arguments& a, int64_t train_iters);
optimizer::OptimizerConfig optimizer_config(const Arguments& a);

// --distributed-timeout-minutes, unless MCORE_DISTRIBUTED_TIMEOUT_SECONDS overrides it.
std::chrono::seconds distributed_timeout(const Arguments& args);

// After set_padded_vocab_size: takes the padded vocabulary size of the checkpoint --load would
// load when it differs (it was saved under another TP size) and this TP size can split it.
void adopt_checkpoint_vocab_size(Arguments& args, int64_t vocab_size);

}  // namespace mcore::training
