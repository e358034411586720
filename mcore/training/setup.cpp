#include "mcore/training/setup.h"

#include <chrono>
#include <cstdio>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/training/checkpointing.h"

namespace mcore::training {

std::shared_ptr<const tokenizers::Tokenizer> build_tokenizer_from_args(const Arguments& a) {
  tokenizers::TokenizerOptions o;
  if (a.tokenizer_type) {
    o.tokenizer_type = *a.tokenizer_type;
  } else {
    MCORE_CHECK(a.mock_data && a.vocab_size)
        << "--tokenizer-type is required (or --mock-data with --vocab-size or a --model preset, "
           "which uses NullTokenizer)";
    o.tokenizer_type = "NullTokenizer";
  }
  o.vocab_file = a.vocab_file.value_or("");
  o.merge_file = a.merge_file.value_or("");
  o.tokenizer_model = a.tokenizer_model.value_or("");
  // A preset's vocabulary size fills --vocab-size, but only NullTokenizer takes its size from
  // there; other tokenizers use it only when given explicitly.
  if (o.tokenizer_type == "NullTokenizer" || a.is_set("vocab_size"))
    o.vocab_size = a.vocab_size.value_or(-1);
  o.vocab_extra_ids = a.vocab_extra_ids;
  return tokenizers::build_tokenizer(o);
}

datasets::SplitDatasets build_datasets(const Arguments& a, const tokenizers::Tokenizer& tok,
                                       const std::array<std::optional<int64_t>, 3>& sizes) {
  auto cfg = datasets::GPTDatasetConfig{};
  cfg.random_seed = static_cast<uint32_t>(a.seed);
  cfg.sequence_length = *a.seq_length;
  if (!a.mock_data) {
    if (a.data_path) {
      cfg.blend = datasets::get_blend_from_list(*a.data_path);
      cfg.split = a.split;
    } else {
      MCORE_CHECK(a.train_data_path || a.valid_data_path || a.test_data_path)
          << "no data: pass --data-path (with --split), --train-data-path / --valid-data-path / "
             "--test-data-path, or --mock-data";
      std::array<std::optional<datasets::Blend>, datasets::kNumSplits> per;
      if (a.train_data_path) per[0] = datasets::get_blend_from_list(*a.train_data_path);
      if (a.valid_data_path) per[1] = datasets::get_blend_from_list(*a.valid_data_path);
      if (a.test_data_path) per[2] = datasets::get_blend_from_list(*a.test_data_path);
      cfg.blend_per_split = per;
    }
  } else {
    cfg.split = a.split.value_or("969,30,1");
  }
  cfg.path_to_cache = a.data_cache_path;
  cfg.mid_level_dataset_surplus = a.mid_level_dataset_surplus;
  cfg.mmap_bin_files = a.mmap_bin_files;
  cfg.reset_position_ids = a.reset_position_ids;
  cfg.reset_attention_mask = a.reset_attention_mask;
  cfg.eod_mask_loss = a.eod_mask_loss;
  // Causal masking happens inside attention; a mask is only needed for document resets.
  cfg.create_attention_mask = a.reset_attention_mask;
  cfg.eod_token_id = tok.eod();
  if (tok.pad() != tokenizers::kNoToken) cfg.pad_token_id = tok.pad();
  cfg.vocab_size = tok.vocab_size();
  datasets::BlendedMegatronDatasetBuilder builder(sizes, cfg);
  return builder.build();
}

optimizer::OptimizerParamSchedulerConfig scheduler_config(const Arguments& a, int64_t train_iters) {
  optimizer::OptimizerParamSchedulerConfig c;
  const int64_t gbs = *a.global_batch_size;
  if (a.train_iters) {
    c.lr_decay_steps = a.lr_decay_iters.value_or(train_iters) * gbs;
    c.wd_incr_steps = train_iters * gbs;
    if (a.lr_wsd_decay_iters) c.wsd_decay_steps = *a.lr_wsd_decay_iters * gbs;
    c.lr_warmup_steps = a.lr_warmup_fraction
                            ? static_cast<int64_t>(*a.lr_warmup_fraction * c.lr_decay_steps)
                            : a.lr_warmup_iters * gbs;
  } else {
    c.lr_decay_steps = a.lr_decay_samples.value_or(*a.train_samples);
    c.wd_incr_steps = *a.train_samples;
    if (a.lr_wsd_decay_samples) c.wsd_decay_steps = *a.lr_wsd_decay_samples;
    c.lr_warmup_steps = a.lr_warmup_fraction
                            ? static_cast<int64_t>(*a.lr_warmup_fraction * c.lr_decay_steps)
                            : a.lr_warmup_samples;
  }
  c.init_lr = a.lr_warmup_init;
  c.max_lr = *a.lr;
  c.min_lr = a.min_lr;
  c.lr_decay_style = optimizer::parse_lr_decay_style(a.lr_decay_style);
  c.lr_wsd_decay_style = optimizer::parse_wsd_decay_style(a.lr_wsd_decay_style);
  c.start_wd = a.start_weight_decay.value_or(a.weight_decay);
  c.end_wd = a.end_weight_decay.value_or(a.weight_decay);
  c.wd_incr_style = optimizer::parse_wd_incr_style(a.weight_decay_incr_style);
  c.use_checkpoint_opt_param_scheduler = a.use_checkpoint_opt_param_scheduler;
  c.override_opt_param_scheduler = a.override_opt_param_scheduler;
  // Megatron: neither flag means "must match", which a resumed run with the same flags does.
  return c;
}

optimizer::OptimizerConfig optimizer_config(const Arguments& a) {
  optimizer::OptimizerConfig c;
  c.optimizer = a.optimizer;
  c.lr = *a.lr;
  c.min_lr = a.min_lr;
  c.weight_decay = a.weight_decay;
  c.fp16 = a.fp16;
  c.bf16 = a.bf16;
  c.loss_scale = a.loss_scale.value_or(0.0);
  c.initial_loss_scale = a.initial_loss_scale;
  c.min_loss_scale = a.min_loss_scale;
  c.loss_scale_window = static_cast<int64_t>(a.loss_scale_window);
  c.hysteresis = a.hysteresis;
  c.adam_beta1 = a.adam_beta1;
  c.adam_beta2 = a.adam_beta2;
  c.adam_eps = a.adam_eps;
  c.sgd_momentum = a.sgd_momentum;
  c.clip_grad = a.clip_grad;
  c.check_for_nan_in_grad = a.check_for_nan_in_loss_and_grad;
  c.log_num_zeros_in_grad = a.log_num_zeros_in_grad;
  return c;
}

// The environment variable is a launcher-level setting that reaches every tool without editing
// its flags.
std::chrono::seconds distributed_timeout(const Arguments& args) {
  return comm::timeout_from_environment().value_or(
      std::chrono::seconds(args.distributed_timeout_minutes * 60));
}

// The vocabulary padding is a function of the TP size (a multiple of 128 x TP): a checkpoint
// saved under another TP size has other padding rows. They are model rows like any other (the
// output layer gives them logits), so the run takes the checkpoint's size when its TP size can
// split it, and the checkpoint loads unchanged under the new layout.
void adopt_checkpoint_vocab_size(Arguments& args, int64_t vocab_size) {
  const std::optional<int64_t> saved = checkpoint_padded_vocab_size(args);
  if (!saved || *saved == *args.padded_vocab_size) return;
  MCORE_CHECK(*saved >= vocab_size) << "the checkpoint under --load " << *args.load << " has "
                                    << *saved << " vocabulary rows, fewer than the tokenizer's "
                                    << vocab_size << " tokens (wrong tokenizer?)";
  MCORE_CHECK(*saved % args.tensor_model_parallel_size == 0)
      << "the checkpoint under --load " << *args.load << " has " << *saved
      << " vocabulary rows, which tensor parallel size " << args.tensor_model_parallel_size
      << " cannot split evenly";
  if (args.rank == 0) {
    std::printf(
        "using the checkpoint's padded vocabulary size %lld (this layout would pad to "
        "%lld)\n",
        static_cast<long long>(*saved), static_cast<long long>(*args.padded_vocab_size));
    std::fflush(stdout);
  }
  args.padded_vocab_size = *saved;
}

}  // namespace mcore::training
