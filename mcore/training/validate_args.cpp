#include "mcore/training/validate_args.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "mcore/pipeline_parallel/stage_layers.h"

#include "mcore/base/error.h"
#include "mcore/models/presets.h"
#include "mcore/tensor_parallel/utils.h"
#include "mcore/training/training_device.h"

namespace mcore::training {

namespace {

// Megatron's checks are asserts; ours say what is wrong and how to fix it.
#define ARG_CHECK(cond) MCORE_CHECK(cond) << "invalid arguments: "

void warn(const Arguments& a, const std::string& msg) {
  if (a.rank == 0) std::cerr << "WARNING: " << msg << "\n";
}

bool is_number(const std::string& s) {
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0';
}

// Megatron's accepted forms: one prefix, prefixes, or weight/prefix pairs.
void check_blend(const std::optional<std::vector<std::string>>& paths, const char* flag) {
  if (!paths || paths->empty()) return;
  const auto& p = *paths;
  if (p.size() == 1 || !is_number(p[0])) {
    for (const auto& x : p)
      ARG_CHECK(!is_number(x)) << flag << " mixes weights and prefixes ('" << x
                               << "'): give 'prefix ...' or 'weight prefix weight prefix ...'";
    return;
  }
  ARG_CHECK(p.size() % 2 == 0) << flag << " has " << p.size()
                               << " entries; weighted blends are 'weight prefix' pairs";
  for (size_t i = 0; i < p.size(); i += 2) {
    ARG_CHECK(is_number(p[i])) << flag << ": expected a weight before prefix '" << p[i + 1]
                               << "', got '" << p[i] << "'";
    ARG_CHECK(!is_number(p[i + 1])) << flag << ": expected a prefix after weight " << p[i]
                                    << ", got the number '" << p[i + 1] << "'";
  }
}

void check_recompute(const Arguments& a, int64_t layers_per_stage) {
  if (a.recompute_granularity == "selective") {
    ARG_CHECK(!a.recompute_method) << "--recompute-method is not supported with "
                                      "--recompute-granularity selective (drop the method)";
  }
  if (a.recompute_granularity == "full") {
    ARG_CHECK(a.recompute_method) << "--recompute-granularity full needs --recompute-method "
                                     "uniform or block";
    ARG_CHECK(a.recompute_num_layers)
        << "--recompute-granularity full needs --recompute-num-layers";
    ARG_CHECK(*a.recompute_num_layers >= 1 && *a.recompute_num_layers <= layers_per_stage)
        << "--recompute-num-layers (" << *a.recompute_num_layers
        << ") must be between 1 and the layers per pipeline stage (" << layers_per_stage << ")";
  } else {
    ARG_CHECK(!a.recompute_method) << "--recompute-method needs --recompute-granularity full";
    ARG_CHECK(!a.recompute_num_layers)
        << "--recompute-num-layers needs --recompute-granularity full";
  }
}

void check_tokenizer(const Arguments& a) {
  if (!a.tokenizer_type) return;
  const std::string& t = *a.tokenizer_type;
  if (t == "GPT2BPETokenizer") {
    ARG_CHECK(a.vocab_file && a.merge_file)
        << "--tokenizer-type GPT2BPETokenizer needs --vocab-file and --merge-file";
  } else if (t == "HuggingFaceTokenizer" || t == "SentencePieceTokenizer" ||
             t == "GPTSentencePieceTokenizer" || t == "Llama2Tokenizer") {
    ARG_CHECK(a.tokenizer_model) << "--tokenizer-type " << t << " needs --tokenizer-model";
  } else if (t == "NullTokenizer") {
    ARG_CHECK(a.vocab_size) << "--tokenizer-type NullTokenizer needs --vocab-size";
  }
}

}  // namespace

void apply_model_preset(Arguments& a) {
  const models::ModelPreset& p = models::get_preset(*a.model);
  const auto& c = p.config;
  auto set = [&](const char* dest, auto& field, auto value) {
    if (!a.is_set(dest)) field = value;
  };
  set("num_layers", a.num_layers, c.num_layers);
  set("hidden_size", a.hidden_size, c.hidden_size);
  set("num_attention_heads", a.num_attention_heads, c.num_attention_heads);
  // Sizes that follow from the hidden size and head count: a preset's own values hold for its
  // shape, and a run that changes that shape gets Megatron's defaults for them instead
  // (4 h or SwiGLU's 8h/3 FFN, h / heads channels), unless it gives them too.
  const bool reshaped = a.is_set("hidden_size") || a.is_set("num_attention_heads");
  if (!reshaped) set("ffn_hidden_size", a.ffn_hidden_size, c.ffn_hidden_size);
  if (!reshaped && c.kv_channels != c.hidden_size / c.num_attention_heads)
    set("kv_channels", a.kv_channels, c.kv_channels);
  if (c.num_query_groups != c.num_attention_heads) {
    set("group_query_attention", a.group_query_attention, true);
    set("num_query_groups", a.num_query_groups, c.num_query_groups);
  }
  set("max_position_embeddings", a.max_position_embeddings, p.max_sequence_length);
  set("position_embedding_type", a.position_embedding_type, c.position_embedding_type);
  set("rotary_base", a.rotary_base, static_cast<int64_t>(c.rotary_base));
  set("rotary_percent", a.rotary_percent, c.rotary_percent);
  set("use_rope_scaling", a.use_rope_scaling, c.rope_scaling);
  set("rope_scaling_factor", a.rope_scaling_factor, c.rope_scaling_factor);
  set("normalization", a.normalization, c.normalization);
  set("layernorm_epsilon", a.layernorm_epsilon, c.layernorm_epsilon);
  set("swiglu", a.swiglu,
      c.gated_linear_unit && c.activation_func == transformer::ActivationFunc::kSilu);
  set("openai_gelu", a.openai_gelu, c.activation_func == transformer::ActivationFunc::kGeluTanh);
  set("add_bias_linear", a.add_bias_linear, c.add_bias_linear);
  set("add_qkv_bias", a.add_qkv_bias, c.add_qkv_bias);
  set("qk_layernorm", a.qk_layernorm, c.qk_layernorm);
  set("untie_embeddings_and_output_weights", a.untie_embeddings_and_output_weights,
      !p.share_embeddings_and_output_weights);
  set("hidden_dropout", a.hidden_dropout, c.hidden_dropout);
  set("attention_dropout", a.attention_dropout, c.attention_dropout);
  set("init_method_std", a.init_method_std, c.init_method_std);
  set("vocab_size", a.vocab_size, p.vocab_size);
  if (c.num_moe_experts > 0) {
    set("num_experts", a.num_experts, c.num_moe_experts);
    set("moe_router_topk", a.moe_router_topk, c.moe_router_topk);
  }
}

void validate_args(Arguments& a, int64_t world_size, int64_t rank) {
  ARG_CHECK(world_size >= 1) << "world size must be >= 1, got " << world_size;
  a.world_size = world_size;
  a.rank = rank;
  // Megatron-LM's validate_args: the old flag selects RoPE.
  if (a.use_rotary_position_embeddings) a.position_embedding_type = "rope";

  ARG_CHECK(!(a.fp16 && a.bf16)) << "--fp16 and --bf16 are both set; choose one";
  check_device_flag(a.device);
  for (auto [v, flag] : {std::pair{a.tensor_model_parallel_size, "--tensor-model-parallel-size"},
                         {a.pipeline_model_parallel_size, "--pipeline-model-parallel-size"},
                         {a.context_parallel_size, "--context-parallel-size"},
                         {a.expert_model_parallel_size, "--expert-model-parallel-size"}}) {
    ARG_CHECK(v >= 1) << flag << " must be >= 1, got " << v;
  }
  const int64_t model_size =
      a.tensor_model_parallel_size * a.pipeline_model_parallel_size * a.context_parallel_size;
  ARG_CHECK(world_size % model_size == 0)
      << "world size (" << world_size << ") is not divisible by tensor ("
      << a.tensor_model_parallel_size << ") x pipeline (" << a.pipeline_model_parallel_size
      << ") x context (" << a.context_parallel_size << ") parallel size = " << model_size;
  a.data_parallel_size = world_size / model_size;
  if (a.expert_model_parallel_size > 1) {
    ARG_CHECK(a.num_experts.value_or(0) > 0)
        << "--expert-model-parallel-size " << a.expert_model_parallel_size
        << " needs a mixture-of-experts model (--num-experts)";
    ARG_CHECK(
        (a.data_parallel_size * a.tensor_model_parallel_size) % a.expert_model_parallel_size == 0)
        << "data (" << a.data_parallel_size << ") x tensor (" << a.tensor_model_parallel_size
        << ") parallel size must be a multiple of --expert-model-parallel-size ("
        << a.expert_model_parallel_size
        << "): the expert-parallel ranks are data- or tensor-parallel ranks";
    ARG_CHECK(*a.num_experts % a.expert_model_parallel_size == 0)
        << "--num-experts (" << *a.num_experts << ") must be a multiple of "
        << "--expert-model-parallel-size (" << a.expert_model_parallel_size << ")";
  }
  ARG_CHECK(a.distributed_timeout_minutes > 0)
      << "--distributed-timeout-minutes must be positive, got " << a.distributed_timeout_minutes;

  if (a.recompute_activations) a.recompute_granularity = "selective";

  if ((a.data_path || a.train_data_path) && !a.split && a.data_path) {
    warn(a,
         "Please specify --split when using --data-path. Using legacy default value of "
         "\"969, 30, 1\"");
    a.split = "969, 30, 1";
  }
  ARG_CHECK(!(a.data_path && (a.train_data_path || a.valid_data_path || a.test_data_path)))
      << "--data-path and --train-data-path/--valid-data-path/--test-data-path are both set; "
         "use one form";
  check_blend(a.data_path, "--data-path");
  check_blend(a.train_data_path, "--train-data-path");
  check_blend(a.valid_data_path, "--valid-data-path");
  check_blend(a.test_data_path, "--test-data-path");
  if (!a.skip_train) {
    ARG_CHECK(a.mock_data || a.data_path || a.train_data_path)
        << "no training data: give --data-path (or --train-data-path), or --mock-data";
  }
  check_tokenizer(a);

  // Batch sizes.
  ARG_CHECK(a.micro_batch_size) << "--micro-batch-size is required";
  ARG_CHECK(*a.micro_batch_size > 0)
      << "--micro-batch-size must be positive, got " << *a.micro_batch_size;
  if (!a.global_batch_size) a.global_batch_size = *a.micro_batch_size * a.data_parallel_size;
  ARG_CHECK(*a.global_batch_size > 0)
      << "--global-batch-size must be positive, got " << *a.global_batch_size;
  const int64_t per_step = *a.micro_batch_size * a.data_parallel_size;
  ARG_CHECK(*a.global_batch_size % per_step == 0)
      << "global batch size (" << *a.global_batch_size << ") is not divisible by micro batch size ("
      << *a.micro_batch_size << ") times data parallel size (" << a.data_parallel_size << ")";
  if (a.rampup_batch_size) {
    const auto& r = *a.rampup_batch_size;
    ARG_CHECK(r[0] > 0 && r[1] > 0 && r[2] >= 0)
        << "--rampup-batch-size expects <start> <increment> <ramp-up samples> with positive "
           "start and increment";
    ARG_CHECK(r[0] % per_step == 0 && r[1] % per_step == 0)
        << "--rampup-batch-size start (" << r[0] << ") and increment (" << r[1]
        << ") must be multiples of micro batch size x data parallel size (" << per_step << ")";
    ARG_CHECK(r[0] <= *a.global_batch_size && (*a.global_batch_size - r[0]) % r[1] == 0)
        << "expected global batch size interval (" << *a.global_batch_size - r[0]
        << ") to be divisible by global batch size increment (" << r[1] << ")";
    ARG_CHECK(!a.train_iters) << "--rampup-batch-size needs sample-based training "
                                 "(--train-samples instead of --train-iters)";
  }

  // Model shape.
  for (auto [v, flag] : {std::pair{&a.num_layers, "--num-layers"},
                         {&a.hidden_size, "--hidden-size"},
                         {&a.num_attention_heads, "--num-attention-heads"},
                         {&a.max_position_embeddings, "--max-position-embeddings"}}) {
    ARG_CHECK(v->has_value()) << flag << " is required (or --model NAME)";
    ARG_CHECK(**v > 0) << flag << " must be positive, got " << **v;
  }
  const int64_t layers = *a.num_layers, pp = a.pipeline_model_parallel_size;
  const bool uneven = a.decoder_first_pipeline_num_layers || a.decoder_last_pipeline_num_layers;
  int64_t layers_per_stage = layers / pp;
  if (uneven) {
    ARG_CHECK(pp > 1) << "--decoder-first/last-pipeline-num-layers need "
                         "--pipeline-model-parallel-size > 1";
    ARG_CHECK(!a.num_layers_per_virtual_pipeline_stage)
        << "please use --num-virtual-stages-per-pipeline-rank to specify virtual pipeline "
           "parallel degree when enable uneven pipeline parallelism";
    int64_t rest = layers, stages = pp;
    if (a.decoder_first_pipeline_num_layers) rest -= *a.decoder_first_pipeline_num_layers, --stages;
    if (a.decoder_last_pipeline_num_layers) rest -= *a.decoder_last_pipeline_num_layers, --stages;
    const int64_t edges = layers - rest;
    ARG_CHECK(rest >= 0) << "--decoder-first/last-pipeline-num-layers put " << edges
                         << " layers on the first and last stages, more than --num-layers ("
                         << layers << ")";
    ARG_CHECK(stages > 0 || rest == 0)
        << "with " << pp << " pipeline stages, --decoder-first-pipeline-num-layers plus "
        << "--decoder-last-pipeline-num-layers (" << edges << ") must equal --num-layers ("
        << layers << ")";
    ARG_CHECK(stages == 0 || rest % stages == 0)
        << "with uneven pipeline stages the remaining " << rest << " layers must split evenly over "
        << stages << " middle stages";
    layers_per_stage = std::max({a.decoder_first_pipeline_num_layers.value_or(0),
                                 a.decoder_last_pipeline_num_layers.value_or(0),
                                 stages ? rest / stages : int64_t{0}});
  } else {
    ARG_CHECK(layers % pp == 0) << "number of layers (" << layers
                                << ") is not divisible by pipeline model parallel size (" << pp
                                << "); or set --decoder-first/last-pipeline-num-layers";
  }
  a.virtual_pipeline_model_parallel_size.reset();
  ARG_CHECK(!(a.num_layers_per_virtual_pipeline_stage && a.num_virtual_stages_per_pipeline_rank))
      << "--num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank "
         "are exclusive: pass one";
  if (a.num_virtual_stages_per_pipeline_rank) {
    const int64_t vpp = *a.num_virtual_stages_per_pipeline_rank;
    ARG_CHECK(vpp >= 1) << "--num-virtual-stages-per-pipeline-rank must be at least 1";
    if (vpp > 1) {
      ARG_CHECK(pp > 1) << "the interleaved schedule (virtual pipeline stages) needs "
                           "--pipeline-model-parallel-size > 1";
      a.virtual_pipeline_model_parallel_size = vpp;
    }
  }
  if (a.num_layers_per_virtual_pipeline_stage) {
    ARG_CHECK(layers_per_stage % *a.num_layers_per_virtual_pipeline_stage == 0)
        << "number of layers per pipeline stage (" << layers_per_stage
        << ") is not divisible by --num-layers-per-virtual-pipeline-stage ("
        << *a.num_layers_per_virtual_pipeline_stage << ")";
    const int64_t vpp = layers_per_stage / *a.num_layers_per_virtual_pipeline_stage;
    if (vpp > 1) {
      ARG_CHECK(pp > 1) << "the interleaved schedule (virtual pipeline stages) needs "
                           "--pipeline-model-parallel-size > 1";
      a.virtual_pipeline_model_parallel_size = vpp;
    }
  }

  {
    // Every stage and virtual stage must get a whole number of layers.
    pipeline_parallel::PipelineLayout layout;
    layout.num_layers = layers;
    layout.pipeline_model_parallel_size = static_cast<int>(pp);
    layout.virtual_pipeline_model_parallel_size =
        static_cast<int>(a.virtual_pipeline_model_parallel_size.value_or(1));
    layout.decoder_first_pipeline_num_layers = a.decoder_first_pipeline_num_layers;
    layout.decoder_last_pipeline_num_layers = a.decoder_last_pipeline_num_layers;
    pipeline_parallel::validate_pipeline_layout(layout);
  }
  ARG_CHECK(!(a.calculate_per_token_loss && a.ddp_average_in_collective))
      << "--calculate-per-token-loss sums gradients over data-parallel ranks and divides by "
         "the token count: drop --ddp-average-in-collective";
  if (a.virtual_pipeline_model_parallel_size && !a.rampup_batch_size) {
    const int64_t num_mb = *a.global_batch_size / (*a.micro_batch_size * a.data_parallel_size);
    const int64_t group = a.microbatch_group_size_per_vp_stage.value_or(pp);
    ARG_CHECK(group >= pp && group <= num_mb)
        << "the interleaved schedule runs groups of " << group
        << " microbatches per virtual stage, which must lie in [pipeline size " << pp
        << ", microbatches per step " << num_mb
        << "]: raise --global-batch-size or set --microbatch-group-size-per-virtual-stage";
    ARG_CHECK(num_mb % group == 0 || num_mb % group >= pp)
        << num_mb << " microbatches per step leave a last group of " << num_mb % group
        << " (group size " << group << "), fewer than the " << pp
        << " pipeline stages: make the microbatches per step a multiple of the group size";
  }
  const int64_t h = *a.hidden_size, heads = *a.num_attention_heads,
                tp = a.tensor_model_parallel_size;
  for (auto [v, flag] :
       {std::pair{&a.ffn_hidden_size, "--ffn-hidden-size"}, {&a.kv_channels, "--kv-channels"}}) {
    ARG_CHECK(!*v || **v > 0) << flag << " must be positive, got " << **v
                              << " (leave it out for the default)";
  }
  if (!a.ffn_hidden_size) {
    // Megatron: SwiGLU's two input projections keep the parameter count near the 4h MLP's,
    // rounded down to a multiple of 64.
    a.ffn_hidden_size = a.swiglu ? static_cast<int64_t>((4.0 * h * 2 / 3) / 64) * 64 : 4 * h;
  }
  if (!a.kv_channels) {
    ARG_CHECK(h % heads == 0) << "hidden size (" << h
                              << ") is not divisible by number of attention heads (" << heads
                              << "); set --kv-channels";
    a.kv_channels = h / heads;
  }
  ARG_CHECK(heads % tp == 0) << "number of attention heads (" << heads
                             << ") is not divisible by tensor model parallel size (" << tp << ")";
  if (a.group_query_attention) {
    ARG_CHECK(a.num_query_groups > 0 && heads % a.num_query_groups == 0)
        << "number of attention heads (" << heads << ") is not divisible by --num-query-groups ("
        << a.num_query_groups << ")";
    ARG_CHECK(a.num_query_groups % tp == 0)
        << "--num-query-groups (" << a.num_query_groups
        << ") is not divisible by tensor model parallel size (" << tp << ")";
  }
  ARG_CHECK(*a.ffn_hidden_size % tp == 0)
      << "ffn hidden size (" << *a.ffn_hidden_size
      << ") is not divisible by tensor model parallel size (" << tp << ")";
  ARG_CHECK(!(a.swiglu && a.openai_gelu)) << "--swiglu and --openai-gelu are both set";

  ARG_CHECK(a.seq_length) << "--seq-length is required";
  if (a.context_parallel_size > 1) {
    ARG_CHECK(*a.seq_length % (a.context_parallel_size * 2) == 0)
        << "seq-length should be a multiple of 2 * context-parallel-size if "
           "context-parallel-size > 1 (seq-length "
        << *a.seq_length << ", context-parallel-size " << a.context_parallel_size << ")";
  }
  if (a.cp_comm_type && a.cp_comm_type->size() > 1) {
    ARG_CHECK(static_cast<int64_t>(a.cp_comm_type->size()) == *a.num_layers)
        << "--cp-comm-type takes one type for all layers or one per layer: got "
        << a.cp_comm_type->size() << " for " << *a.num_layers << " layers";
  }
  if (a.hierarchical_context_parallel_sizes) {
    int64_t product = 1;
    for (int64_t v : *a.hierarchical_context_parallel_sizes) product *= v;
    ARG_CHECK(product == a.context_parallel_size)
        << "--hierarchical-context-parallel-sizes must multiply to --context-parallel-size ("
        << a.context_parallel_size << "), got " << product;
  }
  if (a.sequence_parallel && tp > 1) {
    ARG_CHECK(*a.seq_length % (a.context_parallel_size * tp) == 0)
        << "with --sequence-parallel, seq-length (" << *a.seq_length
        << ") / context-parallel-size (" << a.context_parallel_size
        << ") must be a multiple of tensor-model-parallel-size (" << tp << ")";
  }
  ARG_CHECK(a.context_parallel_size == 1 || a.num_experts.value_or(0) <= 0)
      << "--context-parallel-size " << a.context_parallel_size
      << " with --num-experts: mixture-of-experts layers run without context parallelism here; "
         "use data, tensor, expert and pipeline parallelism (--context-parallel-size 1)";
  ARG_CHECK(*a.max_position_embeddings >= *a.seq_length)
      << "max_position_embeddings (" << *a.max_position_embeddings
      << ") must be greater than or equal to seq_length (" << *a.seq_length << ")";

  // Iteration- vs sample-based training and schedules.
  if (!a.skip_train) {
    ARG_CHECK(!(a.train_iters && a.train_samples))
        << "--train-iters and --train-samples are both set; choose iteration-based or "
           "sample-based training";
    ARG_CHECK(a.train_iters || a.train_samples) << "one of --train-iters or --train-samples is "
                                                   "required";
    if (a.train_iters) {
      ARG_CHECK(!a.lr_decay_samples) << "expected iteration-based learning rate decay: use "
                                        "--lr-decay-iters with --train-iters";
      ARG_CHECK(a.lr_warmup_samples == 0) << "expected iteration-based learning rate warmup: use "
                                             "--lr-warmup-iters with --train-iters";
      ARG_CHECK(!(a.lr_warmup_fraction && a.lr_warmup_iters != 0))
          << "can only specify one of --lr-warmup-fraction and --lr-warmup-iters";
      const int64_t decay = a.lr_decay_iters.value_or(*a.train_iters);
      ARG_CHECK(a.lr_warmup_iters < decay)
          << "--lr-warmup-iters (" << a.lr_warmup_iters << ") must be below the decay length ("
          << decay << (a.lr_decay_iters ? ", --lr-decay-iters" : ", --train-iters") << ")";
    } else {
      ARG_CHECK(!a.lr_decay_iters) << "expected sample-based learning rate decay: use "
                                      "--lr-decay-samples with --train-samples";
      ARG_CHECK(a.lr_warmup_iters == 0) << "expected sample-based learning rate warmup: use "
                                           "--lr-warmup-samples with --train-samples";
      ARG_CHECK(!(a.lr_warmup_fraction && a.lr_warmup_samples != 0))
          << "can only specify one of --lr-warmup-fraction and --lr-warmup-samples";
      const int64_t decay = a.lr_decay_samples.value_or(*a.train_samples);
      ARG_CHECK(a.lr_warmup_samples < decay)
          << "--lr-warmup-samples (" << a.lr_warmup_samples << ") must be below the decay length ("
          << decay << (a.lr_decay_samples ? ", --lr-decay-samples" : ", --train-samples") << ")";
    }
    ARG_CHECK(a.lr) << "--lr is required";
  }
  if (a.lr) {
    ARG_CHECK(a.min_lr <= *a.lr) << "--min-lr (" << a.min_lr << ") is larger than --lr (" << *a.lr
                                 << ")";
  }
  if (a.lr_decay_style == "WSD") {
    ARG_CHECK(a.lr_wsd_decay_iters || a.lr_wsd_decay_samples)
        << "--lr-decay-style WSD needs --lr-wsd-decay-iters (or --lr-wsd-decay-samples)";
  }
  if (a.weight_decay_incr_style == "constant") {
    ARG_CHECK(!a.start_weight_decay && !a.end_weight_decay)
        << "--start-weight-decay/--end-weight-decay need --weight-decay-incr-style linear or "
           "cosine (constant uses --weight-decay)";
    a.start_weight_decay = a.weight_decay;
    a.end_weight_decay = a.weight_decay;
  } else {
    ARG_CHECK(a.start_weight_decay && a.end_weight_decay)
        << "--weight-decay-incr-style " << a.weight_decay_incr_style
        << " needs --start-weight-decay and --end-weight-decay";
  }

  if (a.save) {
    ARG_CHECK(a.save_interval && *a.save_interval > 0)
        << "--save needs --save-interval (a positive number of iterations)";
  }
  ARG_CHECK(a.log_interval > 0) << "--log-interval must be positive, got " << a.log_interval;
  for (auto [v, flag] :
       {std::pair{a.eval_interval, "--eval-interval"},
        {a.exit_interval, "--exit-interval"},
        {std::optional<int64_t>(a.tensorboard_log_interval), "--tensorboard-log-interval"}}) {
    ARG_CHECK(!v || *v > 0) << flag << " must be positive, got " << *v;
  }
  ARG_CHECK(!a.eval_iters || *a.eval_iters >= 0)
      << "--eval-iters must be >= 0, got " << *a.eval_iters << " (0 turns evaluation off)";
  if (a.save) {
    std::error_code ec;
    ARG_CHECK(!std::filesystem::exists(*a.save, ec) || std::filesystem::is_directory(*a.save, ec))
        << "--save " << *a.save << " exists and is not a directory";
  }
  for (auto [v, flag] : {std::pair{a.adam_beta1, "--adam-beta1"}, {a.adam_beta2, "--adam-beta2"}}) {
    ARG_CHECK(v >= 0.0 && v < 1.0) << flag << " must lie in [0, 1), got " << v;
  }
  ARG_CHECK(a.adam_eps >= 0.0) << "--adam-eps must be >= 0, got " << a.adam_eps;
  ARG_CHECK(a.mid_level_dataset_surplus >= 0.0)
      << "--mid-level-dataset-surplus must be >= 0, got " << a.mid_level_dataset_surplus;
  ARG_CHECK(a.dataloader_type.value_or("single") == "single")
      << "--dataloader-type " << *a.dataloader_type
      << " (a random order each epoch) is not implemented; use single, the default";
  for (auto [set, flag] :
       {std::pair{a.distribute_saved_activations, "--distribute-saved-activations"},
        {a.recompute_modules.has_value(), "--recompute-modules"},
        {a.cpu_offloading, "--cpu-offloading"}}) {
    ARG_CHECK(!set) << flag
                    << " is not implemented in mcore; drop the flag (selective recompute "
                       "covers core attention; --recompute-granularity full the whole layer)";
  }
  ARG_CHECK(!a.use_torch_fsdp2) << "--use-torch-fsdp2: FSDP is not implemented in mcore; use "
                                   "--use-distributed-optimizer to shard the optimizer state";
  if (a.num_experts && *a.num_experts == 0) a.num_experts.reset();  // Megatron: 0 means dense
  if (a.num_experts) {
    ARG_CHECK(*a.num_experts > 0) << "--num-experts must be positive, got " << *a.num_experts;
    ARG_CHECK(a.moe_layer_freq == "1")
        << "--moe-layer-freq " << a.moe_layer_freq
        << ": every layer is a MoE layer in mcore; use 1 or drop the flag";
    ARG_CHECK(a.moe_router_score_function == "softmax")
        << "--moe-router-score-function " << a.moe_router_score_function
        << " is not implemented in mcore; use softmax";
    ARG_CHECK(!a.moe_input_jitter_eps)
        << "--moe-input-jitter-eps is not implemented in mcore; drop the flag";
    ARG_CHECK(!a.moe_router_enable_expert_bias)
        << "--moe-router-enable-expert-bias (aux-loss-free balancing) is not implemented in "
           "mcore; use --moe-aux-loss-coeff";
    ARG_CHECK(!a.moe_ffn_hidden_size || *a.moe_ffn_hidden_size > 0)
        << "--moe-ffn-hidden-size must be positive, got " << *a.moe_ffn_hidden_size;
    ARG_CHECK(a.moe_z_loss_coeff.value_or(0.0) >= 0)
        << "--moe-z-loss-coeff must be >= 0, got " << *a.moe_z_loss_coeff;
    if (a.moe_shared_expert_intermediate_size) {
      ARG_CHECK(*a.moe_shared_expert_intermediate_size > 0 &&
                *a.moe_shared_expert_intermediate_size % a.tensor_model_parallel_size == 0)
          << "--moe-shared-expert-intermediate-size (" << *a.moe_shared_expert_intermediate_size
          << ") must be positive and a multiple of --tensor-model-parallel-size ("
          << a.tensor_model_parallel_size << "): the shared expert is split like a dense MLP";
    }
    ARG_CHECK(!a.moe_expert_capacity_factor)
        << "--moe-expert-capacity-factor: token dropping is not implemented in mcore (every "
           "token reaches its experts)";
    if (a.tensor_model_parallel_size > 1) {
      ARG_CHECK(a.expert_tensor_parallel_size == 1)
          << "--num-experts with --tensor-model-parallel-size " << a.tensor_model_parallel_size
          << ": mcore runs experts without tensor parallelism; pass "
             "--expert-tensor-parallel-size 1 (Megatron's default is the tensor-parallel size)";
      ARG_CHECK(a.sequence_parallel)
          << "--num-experts with --tensor-model-parallel-size " << a.tensor_model_parallel_size
          << " needs --sequence-parallel (each tensor-parallel rank routes its slice of the "
             "sequence), as in Megatron";
    }
    ARG_CHECK(a.expert_tensor_parallel_size.value_or(1) == 1)
        << "--expert-tensor-parallel-size " << *a.expert_tensor_parallel_size
        << ": tensor-parallel experts are not implemented in mcore; use 1";
  }
  ARG_CHECK(!a.squared_relu) << "--squared-relu is not implemented in mcore; drop the flag";
  ARG_CHECK(!a.decoupled_lr) << "--decoupled-lr is not implemented in mcore (one learning rate "
                                "schedule for all parameters); drop the flag";
  // Megatron-LM: the deprecated flag stays valid only where it changes nothing.
  ARG_CHECK(a.add_position_embedding || a.position_embedding_type == "rope" ||
            a.position_embedding_type == "none")
      << "--no-position-embedding is deprecated and conflicts with --position-embedding-type "
      << a.position_embedding_type << "; use --position-embedding-type none (or rope)";
  ARG_CHECK(!a.use_legacy_models)
      << "--use-legacy-models: mcore has only the Megatron Core models; drop the flag";
  ARG_CHECK(!a.fp8_format) << "--fp8-format " << *a.fp8_format
                           << ": fp8 training recipes are not implemented in mcore (the fp8 "
                              "casts and GEMMs exist, delayed scaling does not); drop the flag";
  ARG_CHECK(a.rerun_mode == "disabled")
      << "--rerun-mode " << a.rerun_mode
      << ": mcore has no rerun state machine; drop the flag or use disabled";
  ARG_CHECK(a.num_distributed_optimizer_instances == 1)
      << "--num-distributed-optimizer-instances " << a.num_distributed_optimizer_instances
      << ": mcore's distributed optimizer has one instance over the data-parallel group; use 1";
  for (auto [v, flag] : {std::pair{&a.main_grads_dtype, "--main-grads-dtype"},
                         {&a.main_params_dtype, "--main-params-dtype"},
                         {&a.exp_avg_dtype, "--exp-avg-dtype"},
                         {&a.exp_avg_sq_dtype, "--exp-avg-sq-dtype"}}) {
    ARG_CHECK(*v == "fp32") << flag << " " << *v
                            << ": mcore keeps main grads, main params and Adam state in fp32; "
                               "use fp32 or drop the flag";
  }

  note_flags_without_effect(a);
  if (a.fp32_residual_connection) {
    ARG_CHECK(a.fp16 || a.bf16) << "residual connection in fp32 only supported when using fp16 "
                                   "or bf16";
  }
  if (a.overlap_param_gather) {
    ARG_CHECK(a.use_distributed_optimizer)
        << "--overlap-param-gather only supported with distributed optimizer";
    ARG_CHECK(a.overlap_grad_reduce)
        << "must use --overlap-grad-reduce when using --overlap-param-gather";
  }
  if (a.ddp_bucket_size) {
    ARG_CHECK(*a.ddp_bucket_size > 0)
        << "--ddp-bucket-size must be positive, got " << *a.ddp_bucket_size;
  }
  if (a.loss_scale) {
    ARG_CHECK(*a.loss_scale > 0) << "--loss-scale must be positive, got " << *a.loss_scale;
  }
  check_recompute(a, layers_per_stage);

  a.params_dtype = a.fp16 ? "float16" : a.bf16 ? "bfloat16" : "float32";
  if (tp == 1 && a.sequence_parallel) {
    warn(a, "Disabling sequence parallelism because tensor model parallelism is disabled");
    a.sequence_parallel = false;
  }
  a.consumed_train_samples = 0;
  a.consumed_valid_samples = 0;
}

int64_t set_padded_vocab_size(Arguments& a, int64_t vocab_size) {
  ARG_CHECK(vocab_size > 0) << "vocab_size must be positive, got " << vocab_size;
  ARG_CHECK(a.make_vocab_size_divisible_by > 0)
      << "--make-vocab-size-divisible-by must be positive, got " << a.make_vocab_size_divisible_by;
  a.padded_vocab_size = tensor_parallel::vocab_size_with_padding(
      vocab_size, a.make_vocab_size_divisible_by, a.tensor_model_parallel_size);
  return *a.padded_vocab_size;
}

}  // namespace mcore::training
