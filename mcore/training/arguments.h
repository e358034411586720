// Megatron-LM's command line for pretrain_gpt (megatron/training/arguments.py): the same flag
// names, the same defaults and the same consistency checks, so a Megatron user's launch script
// works unchanged (for what mcore implements).
//
// The parser is table-driven: every flag is one row (flag names, destination field, action,
// choices, help) over a typed `Arguments` struct whose member initializers are Megatron's
// defaults. A `--config FILE` (JSON, or the YAML subset of `key: value` lines, `[a, b]` and
// `- item` lists, `#` comments) may carry the same settings; its keys are flag names with dashes
// or underscores (`micro-batch-size`, `micro_batch_size`) or destination names
// (`add_bias_linear: false`), and the command line wins over the file. `--model NAME` fills the
// model shape from a preset (mcore/models/presets.h) for every shape flag not given explicitly.
//
//   Arguments args = parse_args(argc, argv);        // unknown flag: error suggesting the closest
//   validate_args(args, comm::get_world_size());    // inconsistent values: error with the reason
//   print_args(args);                               // Megatron's "arguments" block, on rank 0
//
// Megatron defaults that are `None` are std::optional here and print as None.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mcore::training {

struct Arguments {
  // ---- parallelism ----
  int64_t tensor_model_parallel_size = 1;
  int64_t pipeline_model_parallel_size = 1;
  int64_t context_parallel_size = 1;
  // Megatron's default is p2p; mcore's context parallelism always all-gathers keys and values.
  std::optional<std::vector<std::string>> cp_comm_type;
  std::optional<std::vector<int64_t>> hierarchical_context_parallel_sizes;
  int64_t expert_model_parallel_size = 1;
  // Megatron's default: the tensor-parallel size. mcore runs experts unsplit (1).
  std::optional<int64_t> expert_tensor_parallel_size;
  bool sequence_parallel = false;
  std::optional<int64_t> num_layers_per_virtual_pipeline_stage;
  std::optional<int64_t> decoder_first_pipeline_num_layers;
  std::optional<int64_t> decoder_last_pipeline_num_layers;
  std::optional<int64_t> num_virtual_stages_per_pipeline_rank;
  std::optional<int64_t> microbatch_group_size_per_vp_stage;  // default: pipeline size
  bool variable_seq_lengths = false;
  bool use_distributed_optimizer = false;
  bool overlap_grad_reduce = false;
  bool overlap_param_gather = false;
  std::optional<int64_t> ddp_bucket_size;
  bool ddp_average_in_collective = false;
  int64_t distributed_timeout_minutes = 10;
  std::string device = "cpu";  // mcore: "cpu" | "cuda"

  // ---- model shape ----
  std::optional<std::string> model;  // mcore: preset name
  std::optional<int64_t> num_layers;
  std::optional<int64_t> hidden_size;
  std::optional<int64_t> ffn_hidden_size;
  std::optional<int64_t> num_attention_heads;
  std::optional<int64_t> kv_channels;
  bool group_query_attention = false;
  int64_t num_query_groups = 1;
  std::optional<int64_t> max_position_embeddings;
  std::string position_embedding_type = "learned_absolute";
  int64_t rotary_base = 10000;
  double rotary_percent = 1.0;
  bool rotary_interleaved = false;
  bool use_rope_scaling = false;
  double rope_scaling_factor = 8.0;
  std::string normalization = "LayerNorm";
  double layernorm_epsilon = 1e-5;             // --norm-epsilon
  bool layernorm_zero_centered_gamma = false;  // --apply-layernorm-1p
  bool openai_gelu = false;                    // tanh-approximated GeLU (GPT-2)
  bool qk_layernorm = false;
  bool swiglu = false;
  bool add_bias_linear = true;  // --disable-bias-linear
  bool add_qkv_bias = false;
  bool untie_embeddings_and_output_weights = false;
  int64_t make_vocab_size_divisible_by = 128;
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  double init_method_std = 0.02;
  bool apply_residual_connection_post_layernorm = false;
  std::optional<int64_t> vocab_size;

  // ---- training ----
  std::optional<int64_t> micro_batch_size;
  std::optional<int64_t> global_batch_size;
  std::optional<std::vector<int64_t>> rampup_batch_size;  // start increment samples
  std::optional<int64_t> train_iters;
  std::optional<int64_t> train_samples;
  std::optional<int64_t> exit_interval;
  std::optional<int64_t> exit_duration_in_mins;
  bool exit_signal_handler = false;
  int64_t seed = 1234;
  bool recompute_activations = false;
  std::optional<std::string> recompute_granularity;
  std::optional<std::string> recompute_method;
  std::optional<int64_t> recompute_num_layers;
  std::string optimizer = "adam";
  std::optional<std::string> dataloader_type;
  bool check_for_nan_in_loss_and_grad = true;
  bool calculate_per_token_loss = false;
  bool skip_train = false;

  // ---- learning rate and weight decay ----
  std::optional<double> lr;
  double min_lr = 0.0;
  std::string lr_decay_style = "linear";
  std::string lr_wsd_decay_style = "exponential";
  std::optional<int64_t> lr_decay_iters;
  std::optional<int64_t> lr_decay_samples;
  std::optional<int64_t> lr_wsd_decay_iters;
  std::optional<int64_t> lr_wsd_decay_samples;
  std::optional<double> lr_warmup_fraction;
  int64_t lr_warmup_iters = 0;
  int64_t lr_warmup_samples = 0;
  double lr_warmup_init = 0.0;
  bool override_opt_param_scheduler = false;
  bool use_checkpoint_opt_param_scheduler = false;
  double weight_decay = 0.01;
  std::optional<double> start_weight_decay;
  std::optional<double> end_weight_decay;
  std::string weight_decay_incr_style = "constant";
  double clip_grad = 1.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double sgd_momentum = 0.9;

  // ---- mixed precision ----
  bool fp16 = false;
  bool bf16 = false;
  std::optional<double> loss_scale;
  double initial_loss_scale = 4294967296.0;  // 2**32
  double min_loss_scale = 1.0;
  double loss_scale_window = 1000;
  int64_t hysteresis = 2;
  bool accumulate_allreduce_grads_in_fp32 = false;
  bool fp32_residual_connection = false;

  // ---- data and tokenizer ----
  std::optional<std::vector<std::string>> data_path;
  std::optional<std::string> split;
  std::optional<std::vector<std::string>> train_data_path;
  std::optional<std::vector<std::string>> valid_data_path;
  std::optional<std::vector<std::string>> test_data_path;
  std::optional<std::string> data_cache_path;
  double mid_level_dataset_surplus = 0.005;
  bool mock_data = false;
  std::optional<int64_t> seq_length;
  int64_t num_workers = 2;
  bool reset_position_ids = false;
  bool reset_attention_mask = false;
  bool eod_mask_loss = false;
  bool create_attention_mask_in_dataloader = true;
  bool mmap_bin_files = true;
  std::optional<std::string> tokenizer_type;
  std::optional<std::string> vocab_file;
  std::optional<std::string> merge_file;
  std::optional<std::string> tokenizer_model;
  int64_t vocab_extra_ids = 0;

  // ---- checkpointing ----
  std::optional<std::string> save;
  std::optional<std::string> load;
  std::optional<int64_t> save_interval;
  bool no_save_optim = false;  // Megatron: store_true with default None
  bool no_save_rng = false;
  bool no_load_optim = false;
  bool no_load_rng = false;
  bool finetune = false;
  bool exit_on_missing_checkpoint = false;

  // ---- logging and validation ----
  int64_t log_interval = 100;
  bool log_throughput = false;
  bool log_params_norm = false;
  bool log_num_zeros_in_grad = false;
  // ---- mixture of experts (Megatron's _add_moe_args) ----
  std::optional<int64_t> num_experts;
  std::optional<int64_t> moe_ffn_hidden_size;
  int64_t moe_router_topk = 2;
  std::string moe_router_load_balancing_type = "aux_loss";
  double moe_aux_loss_coeff = 0.0;
  std::optional<double> moe_z_loss_coeff;
  bool moe_router_pre_softmax = false;
  std::optional<double> moe_router_topk_scaling_factor;
  std::string moe_token_dispatcher_type = "allgather";
  bool moe_grouped_gemm = false;
  bool moe_permute_fusion = false;
  std::optional<int64_t> moe_shared_expert_intermediate_size;
  std::optional<double> moe_expert_capacity_factor;
  std::optional<std::string> moe_router_dtype;
  bool moe_per_layer_logging = false;
  std::string moe_layer_freq = "1";
  std::string moe_router_score_function = "softmax";
  std::optional<double> moe_input_jitter_eps;
  std::string moe_token_drop_policy = "probs";
  bool moe_router_enable_expert_bias = false;
  // Take the model shape and tokenizer flags not given on the command line from the arguments
  // saved in the --load checkpoint (checkpoint_args.h).
  bool use_checkpoint_args = false;
  bool log_progress = false;
  int64_t timing_log_level = 0;
  std::string timing_log_option = "minmax";
  bool barrier_with_l1_time = true;
  std::optional<std::string> tensorboard_dir;
  int64_t tensorboard_log_interval = 1;
  int64_t tensorboard_queue_size = 1000;
  bool log_timers_to_tensorboard = false;
  bool log_loss_scale_to_tensorboard = true;
  bool log_memory_to_tensorboard = false;
  bool log_validation_ppl_to_tensorboard = false;
  std::optional<int64_t> eval_interval;
  std::optional<int64_t> eval_iters = 100;

  // ---- implementation knobs: accepted so Megatron launch scripts run, with a note that they
  // change nothing here (validate_args prints it); mcore has one implementation of each ----
  bool use_flash_attn = false;
  bool use_mcore_models = false;
  std::string transformer_impl = "transformer_engine";
  bool masked_softmax_fusion = true;
  bool bias_gelu_fusion = true;
  bool bias_swiglu_fusion = true;
  bool bias_dropout_fusion = true;
  bool apply_rope_fusion = true;
  bool persist_layer_norm = true;
  bool gradient_accumulation_fusion = true;
  bool cross_entropy_loss_fusion = false;
  bool attention_softmax_in_fp32 = false;
  bool use_cpu_initialization = false;
  bool manual_gc = false;
  std::string ckpt_format = "torch_dist";
  std::string distributed_backend = "nccl";
  int64_t num_dataset_builder_threads = 1;
  int64_t empty_unused_memory_level = 0;
  bool overlap_p2p_comm = true;
  bool overlap_p2p_comm_warmup_flush = false;
  bool async_save = false;
  bool ckpt_fully_parallel_save = true;
  bool ckpt_fully_parallel_load = false;
  bool ckpt_assume_constant_structure = false;
  std::string dist_ckpt_strictness = "assume_ok_unexpected";
  bool use_dist_ckpt = false;
  bool auto_detect_ckpt_format = false;
  std::optional<std::string> wandb_project, wandb_exp_name, wandb_save_dir, wandb_entity;
  std::string attention_backend = "auto";
  bool async_tensor_model_parallel_allreduce = true;
  bool tp_comm_overlap = false;
  bool tp_comm_bulk_wgrad = true;
  bool tp_comm_bulk_dgrad = true;
  std::string cross_entropy_fusion_impl = "native";
  bool log_straggler = false;
  std::optional<int64_t> logging_level;
  bool optimizer_cpu_offload = false;
  bool use_precision_aware_optimizer = false;
  std::optional<int64_t> manual_gc_interval;
  bool align_grad_reduce = true;
  std::optional<int64_t> ddp_num_buckets;
  bool te_rng_tracker = false;
  bool deterministic_mode = false;
  bool log_energy = false;
  bool log_batch_size_to_tensorboard = false;
  bool log_world_size_to_tensorboard = false;
  bool log_learning_rate_to_tensorboard = true;
  bool enable_one_logger = true;
  std::optional<std::string> one_logger_project;
  bool defer_embedding_wgrad_compute = false;
  // Megatron's deprecated --no-position-embedding (position_embedding_type says which).
  bool add_position_embedding = true;
  // Real model flags whose TransformerConfig fields exist.
  bool apply_query_key_layer_scaling = false;
  std::optional<double> rotary_seq_len_interpolation_factor;
  bool ddp_pad_buckets_for_high_nccl_busbw = false;
  // Megatron's old spelling of --position-embedding-type rope.
  bool use_rotary_position_embeddings = false;
  // Accepted at their defaults only (validate_args refuses other values).
  std::string rerun_mode = "disabled";
  int64_t num_distributed_optimizer_instances = 1;
  std::string main_grads_dtype = "fp32", main_params_dtype = "fp32", exp_avg_dtype = "fp32",
              exp_avg_sq_dtype = "fp32";
  // Features mcore lacks: accepted by the parser only to be refused with a clear message.
  bool distribute_saved_activations = false;
  bool use_torch_fsdp2 = false;
  bool squared_relu = false;
  std::optional<double> decoupled_lr;
  bool use_legacy_models = false;
  std::optional<std::string> fp8_format;
  std::optional<std::vector<std::string>> recompute_modules;
  bool cpu_offloading = false;

  // ---- mcore ----
  std::optional<std::string> config;  // the --config file read
  bool help = false;

  // ---- derived by validate_args (Megatron sets them on args too) ----
  int64_t world_size = 1;
  int64_t rank = 0;
  int64_t data_parallel_size = 1;
  std::optional<int64_t> virtual_pipeline_model_parallel_size;
  std::string params_dtype = "float32";  // "float32" | "bfloat16" | "float16"
  std::optional<int64_t>
      padded_vocab_size;  // set by set_padded_vocab_size once the tokenizer exists
  int64_t consumed_train_samples = 0;
  int64_t consumed_valid_samples = 0;

  // Destination names given on the command line or in the config file (not defaulted).
  std::set<std::string> explicitly_set;
  bool is_set(const std::string& dest) const { return explicitly_set.count(dest) != 0; }
};

// One row of the flag table.
struct ArgumentSpec {
  std::vector<std::string> flags;  // "--save-interval", "--persistent-save-interval"
  std::string dest;                // "save_interval"
  enum class Action { kStore, kStoreTrue, kStoreFalse } action = Action::kStore;
  std::vector<std::string> choices;  // empty: any value
  std::string help;
};
const std::vector<ArgumentSpec>& argument_table();

// Parses the command line (argv[0] is the program name and skipped). Errors (mcore::Error) name
// the flag: unknown flags (with the closest known one), missing or malformed values, values
// outside the choices, unreadable or malformed config files.
Arguments parse_args(const std::vector<std::string>& argv);
Arguments parse_args(int argc, char** argv);

// Megatron's validate_args: consistency checks with the reason in the error, then the derived
// values (data_parallel_size, global batch default, ffn_hidden_size, kv_channels,
// num_query_groups, params_dtype, split default, weight-decay range, ...).
void validate_args(Arguments& args, int64_t world_size, int64_t rank = 0);

// Megatron's vocab padding: the vocabulary rounded up to a multiple of
// make_vocab_size_divisible_by x tensor_model_parallel_size; stores it in padded_vocab_size.
int64_t set_padded_vocab_size(Arguments& args, int64_t vocab_size);

// Megatron's _print_args block:
//   ------------------------ arguments ------------------------
//     adam_beta1 ...................................... 0.9
//   -------------------- end of arguments ---------------------
std::string format_args(const Arguments& args, const std::string& title = "arguments");
void print_args(const Arguments& args);  // on rank 0 only
std::string help_text(const std::string& program = "pretrain_gpt");

}  // namespace mcore::training
