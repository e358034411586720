#include "mcore/training/arguments.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <variant>

#include "mcore/base/error.h"
#include "mcore/training/config_file.h"
#include "mcore/training/validate_args.h"

namespace mcore::training {

namespace {

using A = Arguments;
using Field =
    std::variant<bool A::*, int64_t A::*, double A::*, std::string A::*,
                 std::optional<int64_t> A::*, std::optional<double> A::*,
                 std::optional<std::string> A::*, std::optional<std::vector<std::string>> A::*,
                 std::optional<std::vector<int64_t>> A::*>;

struct Row {
  ArgumentSpec spec;
  Field field;
  int nargs = 1;  // 1: one value; -1: any number ('*'); n: exactly n
};

using Act = ArgumentSpec::Action;

Row store(std::vector<std::string> flags, std::string dest, Field f, std::string help,
          std::vector<std::string> choices = {}) {
  return {{std::move(flags), std::move(dest), Act::kStore, std::move(choices), std::move(help)}, f};
}
Row on(std::vector<std::string> flags, std::string dest, bool A::*f, std::string help) {
  return {{std::move(flags), std::move(dest), Act::kStoreTrue, {}, std::move(help)}, f};
}
Row off(std::vector<std::string> flags, std::string dest, bool A::*f, std::string help) {
  return {{std::move(flags), std::move(dest), Act::kStoreFalse, {}, std::move(help)}, f};
}
Row list(std::vector<std::string> flags, std::string dest, Field f, int nargs, std::string help) {
  Row r = store(std::move(flags), std::move(dest), f, std::move(help));
  r.nargs = nargs;
  return r;
}

// Megatron-LM's flags (megatron/training/arguments.py and the config dataclasses it builds
// groups from), with their destinations. Defaults live in Arguments' member initializers.
const std::vector<Row>& rows() {
  static const std::vector<Row> t = {
      // parallelism
      store({"--tensor-model-parallel-size"}, "tensor_model_parallel_size",
            &A::tensor_model_parallel_size, "Degree of tensor model parallelism."),
      store({"--pipeline-model-parallel-size"}, "pipeline_model_parallel_size",
            &A::pipeline_model_parallel_size, "Degree of pipeline model parallelism."),
      store({"--context-parallel-size"}, "context_parallel_size", &A::context_parallel_size,
            "Degree of context parallelism."),
      store({"--expert-model-parallel-size"}, "expert_model_parallel_size",
            &A::expert_model_parallel_size, "Degree of expert model parallelism."),
      on({"--sequence-parallel"}, "sequence_parallel", &A::sequence_parallel,
         "Enable sequence parallel optimization."),
      store({"--num-layers-per-virtual-pipeline-stage"}, "num_layers_per_virtual_pipeline_stage",
            &A::num_layers_per_virtual_pipeline_stage,
            "Number of layers per virtual pipeline stage."),
      store({"--decoder-first-pipeline-num-layers"}, "decoder_first_pipeline_num_layers",
            &A::decoder_first_pipeline_num_layers,
            "Transformer layers on the first pipeline stage."),
      store({"--decoder-last-pipeline-num-layers"}, "decoder_last_pipeline_num_layers",
            &A::decoder_last_pipeline_num_layers, "Transformer layers on the last pipeline stage."),
      on({"--use-distributed-optimizer"}, "use_distributed_optimizer",
         &A::use_distributed_optimizer, "Use distributed optimizer."),
      on({"--overlap-grad-reduce"}, "overlap_grad_reduce", &A::overlap_grad_reduce,
         "If set, overlap DDP grad reduce."),
      on({"--overlap-param-gather"}, "overlap_param_gather", &A::overlap_param_gather,
         "If set, overlap param all-gather in distributed optimizer."),
      store({"--ddp-bucket-size"}, "ddp_bucket_size", &A::ddp_bucket_size,
            "Bucket size for data-parallel communication."),
      on({"--ddp-average-in-collective"}, "ddp_average_in_collective",
         &A::ddp_average_in_collective,
         "If set, average directly in data-parallel communication collective."),
      store({"--distributed-timeout-minutes"}, "distributed_timeout_minutes",
            &A::distributed_timeout_minutes, "Timeout minutes for collectives."),
      store({"--device"}, "device", &A::device, "Device to train on (mcore).", {"cpu", "cuda"}),
      // model
      store({"--model"}, "model", &A::model,
            "Model preset name (mcore): fills every shape flag not given."),
      store({"--num-layers"}, "num_layers", &A::num_layers, "Number of transformer layers."),
      store({"--hidden-size"}, "hidden_size", &A::hidden_size, "Transformer hidden size."),
      store({"--ffn-hidden-size"}, "ffn_hidden_size", &A::ffn_hidden_size,
            "Transformer Feed-Forward Network hidden size (default 4 * hidden size)."),
      store({"--num-attention-heads"}, "num_attention_heads", &A::num_attention_heads,
            "Number of transformer attention heads."),
      store({"--kv-channels"}, "kv_channels", &A::kv_channels,
            "Projection weights dimension in multi-head attention (default hidden size / heads)."),
      on({"--group-query-attention"}, "group_query_attention", &A::group_query_attention,
         "Use group-query attention."),
      store({"--num-query-groups"}, "num_query_groups", &A::num_query_groups,
            "Number of query groups for group query attention."),
      store({"--max-position-embeddings"}, "max_position_embeddings", &A::max_position_embeddings,
            "Maximum number of position embeddings to use."),
      store({"--position-embedding-type"}, "position_embedding_type", &A::position_embedding_type,
            "Position embedding type.", {"learned_absolute", "rope", "yarn", "none"}),
      store({"--rotary-base"}, "rotary_base", &A::rotary_base,
            "Base to use for rotary positional embeddings."),
      store({"--rotary-percent"}, "rotary_percent", &A::rotary_percent,
            "Percent of rotary dimension to use."),
      on({"--rotary-interleaved"}, "rotary_interleaved", &A::rotary_interleaved,
         "Rotate interleaved pairs instead of halves."),
      on({"--use-rope-scaling"}, "use_rope_scaling", &A::use_rope_scaling,
         "Apply rope scaling as used in llama3.x."),
      store({"--rope-scaling-factor"}, "rope_scaling_factor", &A::rope_scaling_factor,
            "Rope scaling factor in llama3.x models."),
      store({"--normalization"}, "normalization", &A::normalization,
            "Which normalization technique to use.", {"LayerNorm", "RMSNorm"}),
      store({"--norm-epsilon"}, "layernorm_epsilon", &A::layernorm_epsilon,
            "Epsilon for layer norm and RMS norm."),
      on({"--apply-layernorm-1p"}, "layernorm_zero_centered_gamma",
         &A::layernorm_zero_centered_gamma, "Adjust LayerNorm weights to be centered around zero."),
      on({"--openai-gelu"}, "openai_gelu", &A::openai_gelu,
         "Use the tanh approximation of GeLU (GPT-2)."),
      on({"--qk-layernorm"}, "qk_layernorm", &A::qk_layernorm,
         "Apply layer norm to the queries and keys."),
      on({"--swiglu"}, "swiglu", &A::swiglu,
         "Use gated linear units and SiLU activation instead of default gelu."),
      off({"--disable-bias-linear"}, "add_bias_linear", &A::add_bias_linear,
          "Disable bias in the linear layers."),
      on({"--add-qkv-bias"}, "add_qkv_bias", &A::add_qkv_bias,
         "Enable bias only in the QKV linear layers."),
      on({"--untie-embeddings-and-output-weights"}, "untie_embeddings_and_output_weights",
         &A::untie_embeddings_and_output_weights, "Untie embeddings and output weights."),
      store({"--make-vocab-size-divisible-by"}, "make_vocab_size_divisible_by",
            &A::make_vocab_size_divisible_by, "Pad the vocab size to be divisible by this value."),
      store({"--hidden-dropout"}, "hidden_dropout", &A::hidden_dropout,
            "Dropout probability for hidden state transformer."),
      store({"--attention-dropout"}, "attention_dropout", &A::attention_dropout,
            "Post attention dropout probability."),
      store({"--init-method-std"}, "init_method_std", &A::init_method_std,
            "Standard deviation of the zero mean normal distribution used for weight "
            "initialization."),
      on({"--apply-residual-connection-post-layernorm"}, "apply_residual_connection_post_layernorm",
         &A::apply_residual_connection_post_layernorm,
         "If set, use original BERT residula connection ordering."),
      store({"--vocab-size"}, "vocab_size", &A::vocab_size,
            "Size of vocab before EOD or padding (NullTokenizer)."),
      // training
      store({"--micro-batch-size"}, "micro_batch_size", &A::micro_batch_size,
            "Batch size per model instance (local batch size)."),
      store({"--global-batch-size"}, "global_batch_size", &A::global_batch_size,
            "Training batch size (default micro batch size x data-parallel size)."),
      list({"--rampup-batch-size"}, "rampup_batch_size", &A::rampup_batch_size, 3,
           "Batch size ramp up: <start batch size> <batch size increment> <ramp-up samples>."),
      store({"--train-iters"}, "train_iters", &A::train_iters,
            "Total number of iterations to train over all training runs."),
      store({"--train-samples"}, "train_samples", &A::train_samples,
            "Total number of samples to train over all training runs."),
      store({"--exit-interval"}, "exit_interval", &A::exit_interval,
            "Exit the program after the iteration is divisible by this value."),
      store({"--exit-duration-in-mins"}, "exit_duration_in_mins", &A::exit_duration_in_mins,
            "Exit the program after this many minutes."),
      on({"--exit-signal-handler"}, "exit_signal_handler", &A::exit_signal_handler,
         "Dynamically save the checkpoint and shutdown the training if SIGTERM is received."),
      store({"--seed"}, "seed", &A::seed, "Random seed used for python, numpy, pytorch, and cuda."),
      on({"--recompute-activations"}, "recompute_activations", &A::recompute_activations,
         "Recompute activations (selective granularity)."),
      store({"--recompute-granularity"}, "recompute_granularity", &A::recompute_granularity,
            "Checkpoint activations to allow for training with larger models.",
            {"full", "selective"}),
      store({"--recompute-method"}, "recompute_method", &A::recompute_method,
            "How to split transformer layers for full recompute.", {"uniform", "block"}),
      store({"--recompute-num-layers"}, "recompute_num_layers", &A::recompute_num_layers,
            "Layers per recompute unit (uniform) or recomputed layers per stage (block)."),
      store({"--optimizer"}, "optimizer", &A::optimizer, "Optimizer function.", {"adam", "sgd"}),
      store({"--dataloader-type"}, "dataloader_type", &A::dataloader_type,
            "Single pass vs multiple pass data loader.", {"single", "cyclic"}),
      off({"--no-check-for-nan-in-loss-and-grad"}, "check_for_nan_in_loss_and_grad",
          &A::check_for_nan_in_loss_and_grad, "Do not check for NaNs in loss and grad."),
      on({"--calculate-per-token-loss"}, "calculate_per_token_loss", &A::calculate_per_token_loss,
         "Scale the loss by the number of non-padded tokens in the global batch."),
      on({"--skip-train"}, "skip_train", &A::skip_train,
         "If set, bypass the training loop, optionally do evaluation."),
      // learning rate and weight decay
      store({"--lr"}, "lr", &A::lr, "Initial learning rate."),
      store({"--min-lr"}, "min_lr", &A::min_lr, "Minimum value for learning rate."),
      store({"--lr-decay-style"}, "lr_decay_style", &A::lr_decay_style,
            "Learning rate decay function.",
            {"constant", "linear", "cosine", "inverse-square-root", "WSD"}),
      store({"--lr-wsd-decay-style"}, "lr_wsd_decay_style", &A::lr_wsd_decay_style,
            "Decay style for the annealing phase of WSD.",
            {"exponential", "linear", "cosine", "minus_sqrt"}),
      store({"--lr-decay-iters"}, "lr_decay_iters", &A::lr_decay_iters,
            "Number of iterations to decay learning rate over (default --train-iters)."),
      store({"--lr-decay-samples"}, "lr_decay_samples", &A::lr_decay_samples,
            "Number of samples to decay learning rate over (default --train-samples)."),
      store({"--lr-wsd-decay-iters"}, "lr_wsd_decay_iters", &A::lr_wsd_decay_iters,
            "Number of iterations for the annealing phase in the WSD schedule."),
      store({"--lr-wsd-decay-samples"}, "lr_wsd_decay_samples", &A::lr_wsd_decay_samples,
            "Number of samples for the annealing phase in the WSD schedule."),
      store({"--lr-warmup-fraction"}, "lr_warmup_fraction", &A::lr_warmup_fraction,
            "Fraction of lr-warmup-(iters/samples) to use for warmup."),
      store({"--lr-warmup-iters"}, "lr_warmup_iters", &A::lr_warmup_iters,
            "Number of iterations to linearly warmup learning rate over."),
      store({"--lr-warmup-samples"}, "lr_warmup_samples", &A::lr_warmup_samples,
            "Number of samples to linearly warmup learning rate over."),
      store({"--lr-warmup-init"}, "lr_warmup_init", &A::lr_warmup_init,
            "Initial value for learning rate warmup."),
      on({"--override-opt-param-scheduler", "--override-opt_param-scheduler"},
         "override_opt_param_scheduler", &A::override_opt_param_scheduler,
         "Reset the scheduler values from the command line, ignoring the checkpoint."),
      on({"--use-checkpoint-opt-param-scheduler", "--use-checkpoint-opt_param-scheduler"},
         "use_checkpoint_opt_param_scheduler", &A::use_checkpoint_opt_param_scheduler,
         "Use the scheduler values from the checkpoint."),
      store({"--weight-decay"}, "weight_decay", &A::weight_decay,
            "Weight decay coefficient for L2 regularization."),
      store({"--start-weight-decay"}, "start_weight_decay", &A::start_weight_decay,
            "Initial weight decay coefficient."),
      store({"--end-weight-decay"}, "end_weight_decay", &A::end_weight_decay,
            "End of run weight decay coefficient."),
      store({"--weight-decay-incr-style"}, "weight_decay_incr_style", &A::weight_decay_incr_style,
            "Weight decay increment function.", {"constant", "linear", "cosine"}),
      store({"--clip-grad"}, "clip_grad", &A::clip_grad,
            "Gradient clipping based on global L2 norm."),
      store({"--adam-beta1"}, "adam_beta1", &A::adam_beta1,
            "First coefficient for computing running averages of gradient."),
      store({"--adam-beta2"}, "adam_beta2", &A::adam_beta2,
            "Second coefficient for computing running averages of its square."),
      store({"--adam-eps"}, "adam_eps", &A::adam_eps,
            "Term added to the denominator to improve numerical stability."),
      store({"--sgd-momentum"}, "sgd_momentum", &A::sgd_momentum, "Momentum factor for sgd."),
      // mixed precision
      on({"--fp16"}, "fp16", &A::fp16, "Run model in fp16 mode."),
      on({"--bf16"}, "bf16", &A::bf16, "Run model in bfloat16 mode."),
      store({"--loss-scale"}, "loss_scale", &A::loss_scale,
            "Static loss scaling (positive power of 2); dynamic when unset."),
      store({"--initial-loss-scale"}, "initial_loss_scale", &A::initial_loss_scale,
            "Initial loss-scale for dynamic loss scaling."),
      store({"--min-loss-scale"}, "min_loss_scale", &A::min_loss_scale,
            "Minimum loss scale for dynamic loss scaling."),
      store({"--loss-scale-window"}, "loss_scale_window", &A::loss_scale_window,
            "Window over which to raise/lower dynamic scale."),
      store({"--hysteresis"}, "hysteresis", &A::hysteresis, "Hysteresis for dynamic loss scaling."),
      on({"--accumulate-allreduce-grads-in-fp32"}, "accumulate_allreduce_grads_in_fp32",
         &A::accumulate_allreduce_grads_in_fp32, "Gradient accumulation and all-reduce in fp32."),
      on({"--fp32-residual-connection"}, "fp32_residual_connection", &A::fp32_residual_connection,
         "Move residual connections to fp32."),
      // data and tokenizer
      list({"--data-path"}, "data_path", &A::data_path, -1,
           "The weight and prefix list for a set of train, validation, and test datasets split by "
           "--split."),
      store({"--split"}, "split", &A::split,
            "Comma-separated train/valid/test split proportions, e.g. '90,5,5'."),
      list({"--train-data-path"}, "train_data_path", &A::train_data_path, -1,
           "The weight and prefix list for an independent train dataset."),
      list({"--valid-data-path"}, "valid_data_path", &A::valid_data_path, -1,
           "The weight and prefix list for an independent validation dataset."),
      list({"--test-data-path"}, "test_data_path", &A::test_data_path, -1,
           "The weight and prefix list for an independent test dataset."),
      store({"--data-cache-path"}, "data_cache_path", &A::data_cache_path,
            "Path to a directory to hold cached index files."),
      on({"--mock-data"}, "mock_data", &A::mock_data,
         "Skip data loading and validation and opt for artificial generation of mock data."),
      store({"--seq-length"}, "seq_length", &A::seq_length, "Maximum sequence length to process."),
      store({"--num-workers"}, "num_workers", &A::num_workers, "Dataloader number of workers."),
      on({"--reset-position-ids"}, "reset_position_ids", &A::reset_position_ids,
         "Reset position ids after end-of-document token."),
      on({"--reset-attention-mask"}, "reset_attention_mask", &A::reset_attention_mask,
         "Reset self attention mask after end-of-document token."),
      on({"--eod-mask-loss"}, "eod_mask_loss", &A::eod_mask_loss,
         "Mask loss for the end of document tokens."),
      off({"--no-create-attention-mask-in-dataloader"}, "create_attention_mask_in_dataloader",
          &A::create_attention_mask_in_dataloader,
          "Do not create the attention mask in the data loader."),
      off({"--no-mmap-bin-files"}, "mmap_bin_files", &A::mmap_bin_files,
          "Do not mmap the .bin files."),
      store({"--tokenizer-type"}, "tokenizer_type", &A::tokenizer_type,
            "What type of tokenizer to use.",
            {"GPT2BPETokenizer", "HuggingFaceTokenizer", "SentencePieceTokenizer",
             "GPTSentencePieceTokenizer", "Llama2Tokenizer", "NullTokenizer", "ByteTokenizer"}),
      store({"--vocab-file"}, "vocab_file", &A::vocab_file, "Path to the vocab file."),
      store({"--merge-file"}, "merge_file", &A::merge_file, "Path to the BPE merge file."),
      store({"--tokenizer-model"}, "tokenizer_model", &A::tokenizer_model,
            "Sentencepiece tokenizer model or Hugging Face tokenizer path."),
      store({"--vocab-extra-ids"}, "vocab_extra_ids", &A::vocab_extra_ids,
            "Number of additional vocabulary tokens."),
      // checkpointing
      store({"--save"}, "save", &A::save, "Output directory to save checkpoints to."),
      store({"--load"}, "load", &A::load, "Directory containing a model checkpoint."),
      store({"--save-interval", "--persistent-save-interval"}, "save_interval", &A::save_interval,
            "Number of iterations between persistent checkpoint saves."),
      on({"--no-save-optim"}, "no_save_optim", &A::no_save_optim, "Do not save current optimizer."),
      on({"--no-save-rng"}, "no_save_rng", &A::no_save_rng, "Do not save current rng state."),
      on({"--no-load-optim"}, "no_load_optim", &A::no_load_optim,
         "Do not load optimizer when loading checkpoint."),
      on({"--no-load-rng"}, "no_load_rng", &A::no_load_rng,
         "Do not load rng state when loading checkpoint."),
      on({"--finetune"}, "finetune", &A::finetune,
         "Load model for finetuning: no optimizer or rng state, iteration reset to 0."),
      on({"--exit-on-missing-checkpoint"}, "exit_on_missing_checkpoint",
         &A::exit_on_missing_checkpoint,
         "If --load is set but no checkpoint is found, exit instead of random init."),
      // logging and validation
      store({"--log-interval"}, "log_interval", &A::log_interval,
            "Report loss and timing interval."),
      on({"--log-throughput"}, "log_throughput", &A::log_throughput,
         "If set, calculate and log throughput per GPU."),
      on({"--log-params-norm"}, "log_params_norm", &A::log_params_norm,
         "If set, calculate and log parameters norm."),
      on({"--log-progress"}, "log_progress", &A::log_progress,
         "If set, log progress (in terms of number of processed tokens and number of "
         "floating-point operations) to progress.txt file in checkpoint directory."),
      store({"--timing-log-level"}, "timing_log_level", &A::timing_log_level,
            "Granularity level to measure and report timing.", {"0", "1", "2"}),
      store({"--tensorboard-dir"}, "tensorboard_dir", &A::tensorboard_dir,
            "Write TensorBoard logs to this directory."),
      store({"--tensorboard-log-interval"}, "tensorboard_log_interval",
            &A::tensorboard_log_interval, "Report to tensorboard interval."),
      store({"--tensorboard-queue-size"}, "tensorboard_queue_size", &A::tensorboard_queue_size,
            "Size of the tensorboard queue for pending events and summaries."),
      on({"--log-timers-to-tensorboard"}, "log_timers_to_tensorboard",
         &A::log_timers_to_tensorboard, "If set, write timers to tensorboard."),
      off({"--no-log-loss-scale-to-tensorboard"}, "log_loss_scale_to_tensorboard",
          &A::log_loss_scale_to_tensorboard, "Disable loss-scale logging to tensorboard."),
      on({"--log-memory-to-tensorboard"}, "log_memory_to_tensorboard",
         &A::log_memory_to_tensorboard, "Enable memory logging to tensorboard."),
      on({"--log-validation-ppl-to-tensorboard"}, "log_validation_ppl_to_tensorboard",
         &A::log_validation_ppl_to_tensorboard,
         "If set, write validation perplexity to tensorboard."),
      store({"--eval-interval"}, "eval_interval", &A::eval_interval,
            "Interval between running evaluation on validation set."),
      store({"--eval-iters"}, "eval_iters", &A::eval_iters,
            "Number of iterations to run for evaluation of validation/test."),
  };
  return t;
}

const Row* find_flag(const std::string& flag) {
  for (const Row& r : rows())
    for (const auto& f : r.spec.flags)
      if (f == flag) return &r;
  return nullptr;
}

const Row* find_dest(const std::string& dest) {
  for (const Row& r : rows())
    if (r.spec.dest == dest) return &r;
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_flag(const std::string& flag) {
  std::string best;
  size_t best_d = static_cast<size_t>(-1);
  for (const Row& r : rows())
    for (const auto& f : r.spec.flags) {
      const size_t d = edit_distance(flag, f);
      if (d < best_d) best_d = d, best = f;
    }
  for (const char* f : {"--config", "--help"}) {
    const size_t d = edit_distance(flag, f);
    if (d < best_d) best_d = d, best = f;
  }
  return best;
}

[[noreturn]] void unknown(const std::string& what, const std::string& name) {
  const std::string flag = name.rfind("--", 0) == 0 ? name : "--" + name;
  MCORE_FAIL() << "unrecognized " << what << " " << name << "; did you mean " << closest_flag(flag)
               << "? ("
               << "see --help for the list)";
  std::abort();  // unreachable: MCORE_FAIL throws
}

int64_t to_int(const std::string& s, const std::string& flag) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  MCORE_CHECK(!s.empty() && end && *end == '\0' && errno == 0)
      << "argument " << flag << ": invalid int value: '" << s << "'";
  return v;
}

double to_double(const std::string& s, const std::string& flag) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  MCORE_CHECK(!s.empty() && end && *end == '\0')
      << "argument " << flag << ": invalid float value: '" << s << "'";
  return v;
}

bool to_bool(const std::string& s, const std::string& where) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), ::tolower);
  if (l == "true" || l == "yes" || l == "on" || l == "1") return true;
  if (l == "false" || l == "no" || l == "off" || l == "0") return false;
  MCORE_FAIL() << where << ": expected true or false, got '" << s << "'";
  return false;  // unreachable
}

// Stores `values` into the row's field (already checked for count).
void assign(Arguments& a, const Row& row, const std::vector<std::string>& values,
            const std::string& flag) {
  for (const auto& v : values) {
    if (row.spec.choices.empty()) continue;
    if (std::find(row.spec.choices.begin(), row.spec.choices.end(), v) != row.spec.choices.end())
      continue;
    std::string c;
    for (const auto& x : row.spec.choices) c += (c.empty() ? "'" : ", '") + x + "'";
    MCORE_FAIL() << "argument " << flag << ": invalid choice: '" << v << "' (choose from " << c
                 << ")";
  }
  std::visit(
      [&](auto member) {
        using M = std::remove_reference_t<decltype(a.*member)>;
        if constexpr (std::is_same_v<M, bool>) {
          a.*member = to_bool(values.at(0), "argument " + flag);
        } else if constexpr (std::is_same_v<M, int64_t> ||
                             std::is_same_v<M, std::optional<int64_t>>) {
          a.*member = to_int(values.at(0), flag);
        } else if constexpr (std::is_same_v<M, double> ||
                             std::is_same_v<M, std::optional<double>>) {
          a.*member = to_double(values.at(0), flag);
        } else if constexpr (std::is_same_v<M, std::string> ||
                             std::is_same_v<M, std::optional<std::string>>) {
          a.*member = values.at(0);
        } else if constexpr (std::is_same_v<M, std::optional<std::vector<std::string>>>) {
          a.*member = values;
        } else {
          std::vector<int64_t> v;
          for (const auto& s : values) v.push_back(to_int(s, flag));
          a.*member = v;
        }
      },
      row.field);
  a.explicitly_set.insert(row.spec.dest);
}

void check_count(const Row& row, size_t n, const std::string& flag) {
  if (row.nargs == -1) return;
  MCORE_CHECK(n == static_cast<size_t>(row.nargs))
      << "argument " << flag << ": expected " << row.nargs << " value"
      << (row.nargs == 1 ? "" : "s") << ", got " << n;
}

std::string normalize_key(std::string k) {
  std::replace(k.begin(), k.end(), '_', '-');
  if (k.rfind("--", 0) != 0) k = "--" + k;
  return k;
}

void apply_config(Arguments& a, const std::vector<ConfigEntry>& entries) {
  for (const auto& e : entries) {
    const std::string flag = normalize_key(e.key);
    const Row* row = find_flag(flag);
    // A destination name (add_bias_linear: false) sets the field directly.
    const Row* by_dest = row ? nullptr : find_dest(e.key);
    if (!by_dest)
      by_dest = row ? nullptr : find_dest([&] {
        std::string d = e.key;
        std::replace(d.begin(), d.end(), '-', '_');
        return d;
      }());
    if (!row && !by_dest) {
      if (flag == "--config") MCORE_FAIL() << e.where << ": a config file cannot include another";
      unknown("config key", e.key + " (" + e.where + ")");
    }
    const Row& r = row ? *row : *by_dest;
    const std::string where = e.where + " (" + e.key + ")";
    if (e.is_null) {
      std::visit(
          [&](auto member) {
            using M = std::remove_reference_t<decltype(a.*member)>;
            if constexpr (requires(M m) { m.reset(); }) {
              (a.*member).reset();
            } else {
              MCORE_FAIL() << where << ": " << r.spec.dest << " cannot be null";
            }
          },
          r.field);
      a.explicitly_set.insert(r.spec.dest);
      continue;
    }
    if (row && r.spec.action != Act::kStore) {
      // A flag key: `sequence-parallel: true` applies the flag, `false` leaves the default.
      MCORE_CHECK(e.values.size() == 1 && !e.is_list) << where << ": expected true or false";
      if (to_bool(e.values[0], where)) {
        a.*std::get<bool A::*>(r.field) = r.spec.action == Act::kStoreTrue;
        a.explicitly_set.insert(r.spec.dest);
      }
      continue;
    }
    check_count(r, e.values.size(), where);
    assign(a, r, e.values, where);
  }
}

}  // namespace

const std::vector<ArgumentSpec>& argument_table() {
  static const std::vector<ArgumentSpec> t = [] {
    std::vector<ArgumentSpec> v;
    for (const Row& r : rows()) v.push_back(r.spec);
    return v;
  }();
  return t;
}

Arguments parse_args(const std::vector<std::string>& argv) {
  // Pass 1: split into (flag, values) and find --config.
  struct Given {
    const Row* row;
    std::string flag;
    std::vector<std::string> values;
  };
  std::vector<Given> given;
  std::optional<std::string> config;
  bool help = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string tok = argv[i];
    MCORE_CHECK(tok.rfind("--", 0) == 0 || tok == "-h")
        << "unexpected positional argument '" << tok << "' (flags start with --)";
    if (tok == "-h" || tok == "--help") {
      help = true;
      continue;
    }
    std::optional<std::string> inline_value;
    if (const size_t eq = tok.find('='); eq != std::string::npos) {
      inline_value = tok.substr(eq + 1);
      tok = tok.substr(0, eq);
    }
    auto take_values = [&](int max) {
      std::vector<std::string> vals;
      if (inline_value) return std::vector<std::string>{*inline_value};
      while (i + 1 < argv.size() && (max < 0 || static_cast<int>(vals.size()) < max) &&
             (argv[i + 1].rfind("--", 0) != 0)) {
        vals.push_back(argv[++i]);
      }
      return vals;
    };
    if (tok == "--config") {
      auto vals = take_values(1);
      MCORE_CHECK(vals.size() == 1) << "argument --config: expected a file name";
      config = vals[0];
      continue;
    }
    const Row* row = find_flag(tok);
    if (!row) unknown("argument", tok);
    if (row->spec.action != Act::kStore) {
      MCORE_CHECK(!inline_value) << "argument " << tok << ": ignored explicit argument '"
                                 << *inline_value << "' (it is a switch and takes no value)";
      given.push_back({row, tok, {}});
      continue;
    }
    auto vals = take_values(row->nargs);
    check_count(*row, vals.size(), tok);
    given.push_back({row, tok, vals});
  }

  Arguments a;
  a.help = help;
  if (config) {
    apply_config(a, read_config_file(*config));
    a.config = config;
  }
  // The command line wins over the file.
  for (const auto& g : given) {
    if (g.row->spec.action == Act::kStore) {
      assign(a, *g.row, g.values, g.flag);
    } else {
      a.*std::get<bool A::*>(g.row->field) = g.row->spec.action == Act::kStoreTrue;
      a.explicitly_set.insert(g.row->spec.dest);
    }
  }
  if (a.model) apply_model_preset(a);
  return a;
}

Arguments parse_args(int argc, char** argv) {
  return parse_args(std::vector<std::string>(argv, argv + argc));
}

// ---- printing (Python's str() of each value, as Megatron's _print_args) ----

namespace {

std::string py_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buf[64];
  int p = 1;
  for (; p <= 17; ++p) {  // shortest round-trip digits, as repr()
    std::snprintf(buf, sizeof(buf), "%.*e", p - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  const int e = static_cast<int>(std::floor(std::log10(std::fabs(x))));
  if (e < -4 || e >= 16) {
    std::snprintf(buf, sizeof(buf), "%.*e", p - 1, x);  // 1e-08 style, as Python
    std::string s = buf;
    const size_t epos = s.find('e');
    std::string mant = s.substr(0, epos), ex = s.substr(epos + 1);
    const char sign = ex[0];
    ex = ex.substr(1);
    while (ex.size() > 2 && ex[0] == '0') ex.erase(0, 1);
    return mant + "e" + sign + ex;
  }
  std::snprintf(buf, sizeof(buf), "%.*f", std::max(p - 1 - e, 1), x);
  return buf;
}

template <class T>
std::string py_str(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "True" : "False";
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return std::to_string(v);
  } else if constexpr (std::is_same_v<T, double>) {
    return py_float(v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
    return s + "]";
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  } else {  // optional
    return v ? py_str(*v) : "None";
  }
}

}  // namespace

std::string format_args(const Arguments& a, const std::string& title) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const Row& r : rows())
    std::visit([&](auto member) { items.emplace_back(r.spec.dest, py_str(a.*member)); }, r.field);
  items.emplace_back("world_size", py_str(a.world_size));
  items.emplace_back("rank", py_str(a.rank));
  items.emplace_back("data_parallel_size", py_str(a.data_parallel_size));
  items.emplace_back("virtual_pipeline_model_parallel_size",
                     py_str(a.virtual_pipeline_model_parallel_size));
  items.emplace_back("params_dtype", "torch." + a.params_dtype);
  items.emplace_back("padded_vocab_size", py_str(a.padded_vocab_size));
  items.emplace_back("consumed_train_samples", py_str(a.consumed_train_samples));
  items.emplace_back("consumed_valid_samples", py_str(a.consumed_valid_samples));
  items.emplace_back("config", py_str(a.config));
  std::vector<std::string> lines;
  for (const auto& [name, value] : items) {
    const int dots = std::max(0, 48 - static_cast<int>(name.size()));
    lines.push_back("  " + name + " " + std::string(dots, '.') + " " + value);
  }
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    return s;
  };
  std::stable_sort(lines.begin(), lines.end(),
                   [&](const std::string& x, const std::string& y) { return lower(x) < lower(y); });
  std::string out = "------------------------ " + title + " ------------------------\n";
  for (const auto& l : lines) out += l + "\n";
  out += "-------------------- end of " + title + " ---------------------\n";
  return out;
}

void print_args(const Arguments& args) {
  if (args.rank != 0) return;
  std::cout << format_args(args) << std::flush;
}

std::string help_text(const std::string& program) {
  std::ostringstream os;
  os << "usage: " << program << " [--config FILE] [flags]\n\n"
     << "Megatron-LM flags (defaults as Megatron's). --config FILE reads the same flags from a\n"
     << "JSON or YAML file (keys with dashes or underscores); the command line wins.\n\n";
  const Arguments d;
  for (const Row& r : rows()) {
    std::string names;
    for (const auto& f : r.spec.flags) names += (names.empty() ? "" : ", ") + f;
    if (r.spec.action == Act::kStore) {
      names += r.nargs == -1 ? " [VALUE ...]" : r.nargs == 3 ? " A B C" : " VALUE";
    }
    std::string def;
    std::visit([&](auto member) { def = py_str(d.*member); }, r.field);
    os << "  " << names << "\n      " << r.spec.help;
    if (!r.spec.choices.empty()) {
      os << " Choices:";
      for (const auto& c : r.spec.choices) os << " " << c;
      os << ".";
    }
    if (r.spec.action == Act::kStore) os << " (default: " << def << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace mcore::training
