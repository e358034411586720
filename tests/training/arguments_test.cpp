// The pretrain_gpt argument parser: Megatron-LM's defaults (checked against
// megatron/training/arguments.py and the config dataclasses it builds its groups from, NVIDIA/
// Megatron-LM commit d98e8a6), parsing forms (values, `=`, switches, lists, aliases), the config
// file (YAML subset and JSON, dash or underscore keys, the command line wins), every
// inconsistency error with its reason, the derived values of validate_args, the `--model`
// preset fill, and the printed arguments block.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "mcore/base/error.h"
#include "mcore/training/arguments.h"
#include "mcore/training/config_file.h"

namespace mcore::training {
namespace {

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_ERROR(stmt, substring)                                          \
  do {                                                                         \
    const std::string msg_ = error_of([&] { stmt; });                          \
    EXPECT_NE(msg_.find(substring), std::string::npos) << "message: " << msg_; \
  } while (0)

std::vector<std::string> base_argv() {
  return {"pretrain_gpt",
          "--num-layers",
          "4",
          "--hidden-size",
          "64",
          "--num-attention-heads",
          "4",
          "--seq-length",
          "32",
          "--max-position-embeddings",
          "32",
          "--micro-batch-size",
          "2",
          "--train-iters",
          "10",
          "--lr",
          "1e-3",
          "--mock-data"};
}

std::vector<std::string> with(std::vector<std::string> argv, const std::vector<std::string>& more) {
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

Arguments validated(const std::vector<std::string>& argv, int world = 1) {
  Arguments a = parse_args(argv);
  validate_args(a, world);
  return a;
}

// The printed value of one argument, from the arguments block.
std::map<std::string, std::string> printed(const Arguments& a) {
  std::map<std::string, std::string> out;
  std::istringstream in(format_args(a));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) != 0) continue;
    const size_t name_end = line.find(' ', 2);
    const size_t value_start = line.find(' ', line.find_first_of('.', name_end)) + 1;
    out[line.substr(2, name_end - 2)] = line.substr(value_start);
  }
  return out;
}

std::string write_temp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("mcore_args_" + name);
  std::ofstream(path) << text;
  return path.string();
}

TEST(Arguments, DefaultsEqualMegatron) {
  const auto p = printed(parse_args(std::vector<std::string>{"pretrain_gpt"}));
  // dest -> Megatron's default as argparse prints it.
  const std::map<std::string, std::string> megatron = {
      // model_parallel_config.py: ModelParallelConfig
      {"tensor_model_parallel_size", "1"},
      {"pipeline_model_parallel_size", "1"},
      {"context_parallel_size", "1"},
      {"expert_model_parallel_size", "1"},
      {"sequence_parallel", "False"},
      {"fp16", "False"},
      {"bf16", "False"},
      // transformer_config.py: TransformerConfig (num_layers etc. default None on the CLI)
      {"num_layers", "None"},
      {"hidden_size", "None"},
      {"num_attention_heads", "None"},
      {"ffn_hidden_size", "None"},
      {"kv_channels", "None"},
      {"num_query_groups", "1"},
      {"hidden_dropout", "0.1"},
      {"attention_dropout", "0.1"},
      {"init_method_std", "0.02"},
      {"normalization", "LayerNorm"},
      {"layernorm_epsilon", "1e-05"},
      {"add_bias_linear", "True"},
      {"qk_layernorm", "False"},
      {"recompute_granularity", "None"},
      {"recompute_method", "None"},
      {"recompute_num_layers", "None"},
      {"calculate_per_token_loss", "False"},
      {"fp32_residual_connection", "False"},
      {"rotary_interleaved", "False"},
      {"apply_residual_connection_post_layernorm", "False"},
      // arguments.py _add_network_size_args
      {"group_query_attention", "False"},
      {"max_position_embeddings", "None"},
      {"position_embedding_type", "learned_absolute"},
      {"rotary_base", "10000"},
      {"rotary_percent", "1.0"},
      {"use_rope_scaling", "False"},
      {"rope_scaling_factor", "8.0"},
      {"make_vocab_size_divisible_by", "128"},
      {"swiglu", "False"},
      {"openai_gelu", "False"},
      {"untie_embeddings_and_output_weights", "False"},
      // training_config.py: TrainingConfig, ValidationConfig
      {"micro_batch_size", "None"},
      {"global_batch_size", "None"},
      {"rampup_batch_size", "None"},
      {"train_iters", "None"},
      {"train_samples", "None"},
      {"exit_interval", "None"},
      {"exit_duration_in_mins", "None"},
      {"exit_signal_handler", "False"},
      {"eval_iters", "100"},
      {"eval_interval", "None"},
      {"skip_train", "False"},
      // arguments.py _add_training_args / _add_regularization_args
      {"optimizer", "adam"},
      {"recompute_activations", "False"},
      {"check_for_nan_in_loss_and_grad", "True"},
      {"dataloader_type", "None"},
      {"weight_decay", "0.01"},
      {"clip_grad", "1.0"},
      {"adam_beta1", "0.9"},
      {"adam_beta2", "0.999"},
      {"adam_eps", "1e-08"},
      {"sgd_momentum", "0.9"},
      // training_config.py: SchedulerConfig; arguments.py _add_learning_rate_args
      {"lr", "None"},
      {"min_lr", "0.0"},
      {"lr_decay_style", "linear"},
      {"lr_wsd_decay_style", "exponential"},
      {"lr_decay_iters", "None"},
      {"lr_decay_samples", "None"},
      {"lr_wsd_decay_iters", "None"},
      {"lr_warmup_fraction", "None"},
      {"lr_warmup_iters", "0"},
      {"lr_warmup_samples", "0"},
      {"lr_warmup_init", "0.0"},
      {"start_weight_decay", "None"},
      {"end_weight_decay", "None"},
      {"weight_decay_incr_style", "constant"},
      {"override_opt_param_scheduler", "False"},
      {"use_checkpoint_opt_param_scheduler", "False"},
      // arguments.py _add_mixed_precision_args (2**32 prints as an int there)
      {"loss_scale", "None"},
      {"initial_loss_scale", "4294967296.0"},
      {"min_loss_scale", "1.0"},
      {"hysteresis", "2"},
      {"accumulate_allreduce_grads_in_fp32", "False"},
      // common_config.py: RNGConfig, DistributedInitConfig; arguments.py _add_distributed_args
      {"seed", "1234"},
      {"distributed_timeout_minutes", "10"},
      {"use_distributed_optimizer", "False"},
      {"overlap_grad_reduce", "False"},
      {"overlap_param_gather", "False"},
      {"ddp_bucket_size", "None"},
      {"ddp_average_in_collective", "False"},
      // arguments.py _add_data_args; training_config.py: TokenizerConfig
      {"data_path", "None"},
      {"split", "None"},
      {"train_data_path", "None"},
      {"mock_data", "False"},
      {"seq_length", "None"},
      {"num_workers", "2"},
      {"reset_position_ids", "False"},
      {"eod_mask_loss", "False"},
      {"create_attention_mask_in_dataloader", "True"},
      {"mmap_bin_files", "True"},
      {"tokenizer_type", "None"},
      {"vocab_file", "None"},
      {"merge_file", "None"},
      {"tokenizer_model", "None"},
      {"vocab_extra_ids", "0"},
      {"vocab_size", "None"},
      // training_config.py: CheckpointConfig
      {"save", "None"},
      {"load", "None"},
      {"save_interval", "None"},
      {"finetune", "False"},
      {"exit_on_missing_checkpoint", "False"},
      // training_config.py: LoggerConfig
      {"log_interval", "100"},
      {"log_throughput", "False"},
      {"log_params_norm", "False"},
      {"timing_log_level", "0"},
      {"tensorboard_dir", "None"},
      {"tensorboard_log_interval", "1"},
      {"tensorboard_queue_size", "1000"},
      {"log_timers_to_tensorboard", "False"},
      {"log_loss_scale_to_tensorboard", "True"},
      {"log_memory_to_tensorboard", "False"},
      {"log_validation_ppl_to_tensorboard", "False"},
  };
  for (const auto& [dest, value] : megatron) {
    ASSERT_TRUE(p.count(dest)) << dest << " is not printed";
    EXPECT_EQ(p.at(dest), value) << dest;
  }
  // Every table row's flag spells its destination the Megatron way.
  for (const auto& spec : argument_table()) EXPECT_EQ(spec.flags[0].rfind("--", 0), 0u);
}

TEST(Arguments, ParsingForms) {
  Arguments a =
      parse_args(with(base_argv(), {"--lr=3e-4", "--disable-bias-linear", "--swiglu", "--data-path",
                                    "0.3", "a/b", "0.7", "c/d", "--persistent-save-interval", "50",
                                    "--rampup-batch-size", "4", "4", "100", "--min-lr", "-0.0"}));
  EXPECT_EQ(*a.lr, 3e-4);
  EXPECT_FALSE(a.add_bias_linear);
  EXPECT_TRUE(a.swiglu);
  EXPECT_EQ(*a.data_path, (std::vector<std::string>{"0.3", "a/b", "0.7", "c/d"}));
  EXPECT_EQ(*a.save_interval, 50);
  EXPECT_EQ(*a.rampup_batch_size, (std::vector<int64_t>{4, 4, 100}));
  EXPECT_TRUE(a.is_set("lr"));
  EXPECT_FALSE(a.is_set("seed"));
  EXPECT_TRUE(parse_args(std::vector<std::string>{"p", "--help"}).help);
  EXPECT_NE(help_text().find("--micro-batch-size VALUE"), std::string::npos);
}

TEST(Arguments, UnknownFlagsSuggestTheClosest) {
  EXPECT_ERROR(parse_args(with(base_argv(), {"--micro-batch-sze", "2"})),
               "unrecognized argument --micro-batch-sze; did you mean --micro-batch-size?");
  EXPECT_ERROR(parse_args(with(base_argv(), {"--tensor-parallel-size", "2"})),
               "did you mean --tensor-model-parallel-size?");
  EXPECT_ERROR(parse_args(with(base_argv(), {"stray"})), "unexpected positional argument 'stray'");
}

TEST(Arguments, BadValues) {
  EXPECT_ERROR(parse_args(with(base_argv(), {"--num-layers", "four"})),
               "argument --num-layers: invalid int value: 'four'");
  EXPECT_ERROR(parse_args(with(base_argv(), {"--lr", "fast"})),
               "argument --lr: invalid float value: 'fast'");
  EXPECT_ERROR(parse_args(with(base_argv(), {"--lr-decay-style", "exp"})),
               "argument --lr-decay-style: invalid choice: 'exp' (choose from 'constant', "
               "'linear', 'cosine', 'inverse-square-root', 'WSD')");
  EXPECT_ERROR(parse_args(with(base_argv(), {"--seed"})),
               "argument --seed: expected 1 value, got 0");
  EXPECT_ERROR(parse_args(with(base_argv(), {"--rampup-batch-size", "1", "2"})),
               "argument --rampup-batch-size: expected 3 values, got 2");
  EXPECT_ERROR(parse_args(with(base_argv(), {"--bf16=yes"})), "it is a switch and takes no value");
}

TEST(Arguments, YamlConfigFileCommandLineWins) {
  const std::string path = write_temp("c.yaml",
                                      "# training config\n"
                                      "num-layers: 8\n"
                                      "hidden_size: 128   # underscores work too\n"
                                      "num-attention-heads: 8\n"
                                      "seq-length: 64\n"
                                      "max-position-embeddings: 64\n"
                                      "micro-batch-size: 4\n"
                                      "train-samples: 1000\n"
                                      "global-batch-size: 32\n"
                                      "lr: 0.0003\n"
                                      "lr-decay-style: cosine\n"
                                      "bf16: true\n"
                                      "sequence-parallel: false\n"
                                      "add_bias_linear: false\n"
                                      "tokenizer-type: 'GPT2BPETokenizer'\n"
                                      "vocab-file: \"v.json\"\n"
                                      "merge-file: m.txt\n"
                                      "data-path:\n"
                                      "  - 0.5\n"
                                      "  - corpus_a\n"
                                      "  - 0.5\n"
                                      "  - corpus_b\n"
                                      "rampup-batch-size: [8, 8, 1000]\n"
                                      "save: null\n");
  Arguments a = parse_args({"pretrain_gpt", "--config", path, "--lr", "1e-4", "--num-layers", "2"});
  EXPECT_EQ(*a.num_layers, 2);  // command line wins
  EXPECT_EQ(*a.lr, 1e-4);
  EXPECT_EQ(*a.hidden_size, 128);
  EXPECT_EQ(a.lr_decay_style, "cosine");
  EXPECT_TRUE(a.bf16);
  EXPECT_FALSE(a.sequence_parallel);
  EXPECT_FALSE(a.add_bias_linear);
  EXPECT_EQ(*a.tokenizer_type, "GPT2BPETokenizer");
  EXPECT_EQ(*a.vocab_file, "v.json");
  EXPECT_EQ(*a.data_path, (std::vector<std::string>{"0.5", "corpus_a", "0.5", "corpus_b"}));
  EXPECT_EQ(*a.rampup_batch_size, (std::vector<int64_t>{8, 8, 1000}));
  EXPECT_FALSE(a.save.has_value());
  EXPECT_EQ(*a.config, path);
  validate_args(a, 1);
  EXPECT_EQ(a.params_dtype, "bfloat16");
}

TEST(Arguments, JsonConfigFile) {
  const std::string path =
      write_temp("c.json", R"({"num_layers": 6, "micro-batch-size": 3, "swiglu": true,
                              "data_path": ["x"], "lr_warmup_fraction": 0.01, "load": null})");
  Arguments a = parse_args({"p", "--config", path});
  EXPECT_EQ(*a.num_layers, 6);
  EXPECT_EQ(*a.micro_batch_size, 3);
  EXPECT_TRUE(a.swiglu);
  EXPECT_EQ(*a.data_path, std::vector<std::string>{"x"});
  EXPECT_EQ(*a.lr_warmup_fraction, 0.01);
}

TEST(Arguments, ConfigFileErrors) {
  EXPECT_ERROR(parse_args({"p", "--config", write_temp("u.yaml", "micro-batch-sise: 2\n")}),
               "did you mean --micro-batch-size?");
  EXPECT_ERROR(parse_args({"p", "--config", write_temp("b.yaml", "bf16: maybe\n")}),
               "expected true or false, got 'maybe'");
  EXPECT_ERROR(parse_args({"p", "--config", write_temp("n.yaml", "model:\n  layers: 2\n")}),
               "nested mappings are not supported");
  EXPECT_ERROR(parse_args({"p", "--config", write_temp("j.json", "{\"lr\": }")}),
               "is not valid JSON");
  EXPECT_ERROR(parse_args({"p", "--config", "/nonexistent/x.yaml"}),
               "cannot read config file /nonexistent/x.yaml");
  EXPECT_ERROR(parse_args({"p", "--config", write_temp("v.yaml", "seed: x\n")}),
               "invalid int value: 'x'");
}

TEST(Arguments, InconsistentValuesAreErrorsWithTheReason) {
  const auto b = base_argv();
  EXPECT_ERROR(validated(with(b, {"--global-batch-size", "6"}), 2),
               "global batch size (6) is not divisible by micro batch size (2) times data "
               "parallel size (2)");
  EXPECT_ERROR(
      validated(
          with(b, {"--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"}), 6),
      "world size (6) is not divisible by tensor (2) x pipeline (2) x context (1) "
      "parallel size = 4");
  EXPECT_ERROR(validated(with(b, {"--pipeline-model-parallel-size", "3"}), 3),
               "number of layers (4) is not divisible by pipeline model parallel size (3)");
  EXPECT_ERROR(validated(with(b, {"--tensor-model-parallel-size", "8"}), 8),
               "number of attention heads (4) is not divisible by tensor model parallel size (8)");
  EXPECT_ERROR(validated(with(b, {"--fp16", "--bf16"})), "--fp16 and --bf16 are both set");
  EXPECT_ERROR(validated(with(b, {"--lr-warmup-fraction", "0.1", "--lr-warmup-iters", "5"})),
               "can only specify one of --lr-warmup-fraction and --lr-warmup-iters");
  EXPECT_ERROR(validated(with(b, {"--train-samples", "100"})),
               "--train-iters and --train-samples are both set");
  EXPECT_ERROR(validated(with(b, {"--lr-decay-samples", "100"})),
               "expected iteration-based learning rate decay");
  EXPECT_ERROR(validated(with(b, {"--hidden-size", "66"})),
               "hidden size (66) is not divisible by number of attention heads (4)");
  EXPECT_ERROR(validated(with(b, {"--group-query-attention", "--num-query-groups", "3"})),
               "number of attention heads (4) is not divisible by --num-query-groups (3)");
  EXPECT_ERROR(validated(with(b, {"--seq-length", "64"})),
               "max_position_embeddings (32) must be greater than or equal to seq_length (64)");
  EXPECT_ERROR(validated(with(b, {"--context-parallel-size", "3"}), 3),
               "seq-length should be a multiple of 2 * context-parallel-size");
  EXPECT_ERROR(validated(with(b, {"--save", "/tmp/x"})), "--save needs --save-interval");
  EXPECT_ERROR(validated(with(b, {"--min-lr", "1"})), "--min-lr (1) is larger than --lr (0.001)");
  EXPECT_ERROR(validated(with(b, {"--start-weight-decay", "0.1"})),
               "--start-weight-decay/--end-weight-decay need --weight-decay-incr-style");
  EXPECT_ERROR(validated(with(b, {"--weight-decay-incr-style", "linear"})),
               "needs --start-weight-decay and --end-weight-decay");
  EXPECT_ERROR(validated(with(b, {"--recompute-granularity", "full"})),
               "--recompute-granularity full needs --recompute-method");
  EXPECT_ERROR(
      validated(with(b, {"--recompute-granularity", "full", "--recompute-method", "uniform",
                         "--recompute-num-layers", "5"})),
      "--recompute-num-layers (5) must be between 1 and the layers per pipeline stage (4)");
  EXPECT_ERROR(
      validated(with(b, {"--recompute-granularity", "selective", "--recompute-method", "block"})),
      "--recompute-method is not supported with --recompute-granularity selective");
  EXPECT_ERROR(validated(with(b, {"--recompute-method", "block"})),
               "--recompute-method needs --recompute-granularity full");
  EXPECT_ERROR(validated(with(b, {"--overlap-param-gather"})),
               "--overlap-param-gather only supported with distributed optimizer");
  EXPECT_ERROR(validated(with(b, {"--fp32-residual-connection"})),
               "residual connection in fp32 only supported when using fp16 or bf16");
  EXPECT_ERROR(validated(with(b, {"--tokenizer-type", "GPT2BPETokenizer"})),
               "GPT2BPETokenizer needs --vocab-file and --merge-file");
  EXPECT_ERROR(validated(with(b, {"--data-path", "0.5", "a", "b"})),
               "--data-path has 3 entries; weighted blends are 'weight prefix' pairs");
  EXPECT_ERROR(validated(with(b, {"--rampup-batch-size", "2", "2", "10"})),
               "--rampup-batch-size needs sample-based training");
  EXPECT_ERROR(validated(with(b, {"--lr-decay-style", "WSD"})),
               "--lr-decay-style WSD needs --lr-wsd-decay-iters");

  // Missing required values.
  auto without = [](std::vector<std::string> v, const std::string& flag) {
    auto it = std::find(v.begin(), v.end(), flag);
    v.erase(it, it + 2);
    return v;
  };
  EXPECT_ERROR(validated(without(b, "--micro-batch-size")), "--micro-batch-size is required");
  EXPECT_ERROR(validated(without(b, "--num-layers")), "--num-layers is required (or --model NAME)");
  EXPECT_ERROR(validated(without(b, "--seq-length")), "--seq-length is required");
  EXPECT_ERROR(validated(without(b, "--train-iters")),
               "one of --train-iters or --train-samples is required");
  std::vector<std::string> no_data = b;
  no_data.pop_back();  // --mock-data
  EXPECT_ERROR(validated(no_data), "no training data: give --data-path");
}

TEST(Arguments, DerivedValuesFollowValidateArgs) {
  Arguments a = validated(with(base_argv(), {"--tensor-model-parallel-size", "2",
                                             "--sequence-parallel", "--data-path", "corpus"}),
                          8);
  EXPECT_EQ(a.world_size, 8);
  EXPECT_EQ(a.data_parallel_size, 4);
  EXPECT_EQ(*a.global_batch_size, 8);  // micro batch x DP
  EXPECT_EQ(*a.ffn_hidden_size, 256);  // 4h
  EXPECT_EQ(*a.kv_channels, 16);
  EXPECT_TRUE(a.sequence_parallel);
  EXPECT_EQ(*a.split, "969, 30, 1");  // Megatron's legacy default with --data-path
  EXPECT_EQ(*a.start_weight_decay, 0.01);
  EXPECT_EQ(*a.end_weight_decay, 0.01);
  EXPECT_EQ(a.params_dtype, "float32");
  EXPECT_EQ(set_padded_vocab_size(a, 50257), 50432);  // multiple of 128 x TP 2 = 256
  EXPECT_EQ(printed(a).at("padded_vocab_size"), "50432");

  // SwiGLU: int((4h * 2/3) / 64) * 64, as Megatron (11008 for h = 4096 would need an explicit
  // --ffn-hidden-size; the rule gives 10880).
  Arguments s = validated(
      with(base_argv(), {"--hidden-size", "4096", "--num-attention-heads", "32", "--swiglu"}));
  EXPECT_EQ(*s.ffn_hidden_size, 10880);
  // Sequence parallelism is switched off without tensor parallelism; recompute-activations
  // means selective recompute.
  Arguments t = validated(with(base_argv(), {"--sequence-parallel", "--recompute-activations"}));
  EXPECT_FALSE(t.sequence_parallel);
  EXPECT_EQ(*t.recompute_granularity, "selective");
  // Uneven pipeline: 6 layers = 1 + 2 + 3 over 3 stages.
  Arguments u = validated(with(base_argv(), {"--num-layers", "6", "--pipeline-model-parallel-size",
                                             "3", "--decoder-first-pipeline-num-layers", "1",
                                             "--decoder-last-pipeline-num-layers", "3"}),
                          3);
  EXPECT_EQ(u.data_parallel_size, 1);
  EXPECT_ERROR(validated(with(base_argv(), {"--num-layers", "7", "--pipeline-model-parallel-size",
                                            "4", "--decoder-first-pipeline-num-layers", "1",
                                            "--decoder-last-pipeline-num-layers", "3"}),
                         4),
               "the remaining 3 layers must split evenly over 2 middle stages");
  Arguments v = validated(with(base_argv(), {"--pipeline-model-parallel-size", "2",
                                             "--num-layers-per-virtual-pipeline-stage", "1",
                                             "--global-batch-size", "4"}),
                          2);
  EXPECT_EQ(*v.virtual_pipeline_model_parallel_size, 2);
  Arguments w = validated(with(base_argv(), {"--pipeline-model-parallel-size", "2",
                                             "--num-virtual-stages-per-pipeline-rank", "2",
                                             "--global-batch-size", "4"}),
                          2);
  EXPECT_EQ(*w.virtual_pipeline_model_parallel_size, 2);
  // The interleaved schedule needs at least as many microbatches per step as stages, and
  // every virtual stage a whole number of layers.
  EXPECT_ERROR(validated(with(base_argv(), {"--pipeline-model-parallel-size", "2",
                                            "--num-virtual-stages-per-pipeline-rank", "2"}),
                         2),
               "microbatches per step 1");
  EXPECT_ERROR(validated(with(base_argv(), {"--pipeline-model-parallel-size", "2",
                                            "--num-virtual-stages-per-pipeline-rank", "4",
                                            "--global-batch-size", "4"}),
                         2),
               "do not split evenly into 4 virtual pipeline stages");
}

TEST(Arguments, ModelPresetFillsShapesNotGiven) {
  Arguments a = parse_args({"p", "--model", "llama3-tiny", "--num-layers", "3"});
  EXPECT_EQ(*a.num_layers, 3);  // explicit wins
  EXPECT_EQ(*a.hidden_size, 64);
  EXPECT_EQ(*a.num_attention_heads, 4);
  EXPECT_TRUE(a.group_query_attention);
  EXPECT_EQ(a.num_query_groups, 2);
  EXPECT_TRUE(a.swiglu);
  EXPECT_EQ(a.normalization, "RMSNorm");
  EXPECT_EQ(a.position_embedding_type, "rope");
  EXPECT_FALSE(a.add_bias_linear);
  EXPECT_TRUE(a.untie_embeddings_and_output_weights);
  EXPECT_EQ(*a.ffn_hidden_size, 160);
  Arguments g = parse_args({"p", "--model", "gpt2-124m"});
  EXPECT_EQ(*g.hidden_size, 768);
  EXPECT_TRUE(g.openai_gelu);
  EXPECT_FALSE(g.untie_embeddings_and_output_weights);
  EXPECT_EQ(*g.max_position_embeddings, 1024);
  EXPECT_ERROR(parse_args({"p", "--model", "gpt5"}), "unknown model preset 'gpt5'");
  // A preset reshaped by --hidden-size or --num-attention-heads leaves the sizes that follow
  // from its shape to Megatron's defaults (validate_args: 4 h, h / heads), unless given too.
  Arguments r = parse_args({"p", "--model", "gpt2-tiny", "--hidden-size", "256"});
  EXPECT_FALSE(r.ffn_hidden_size.has_value());
  EXPECT_FALSE(r.kv_channels.has_value());
  Arguments f =
      parse_args({"p", "--model", "gpt2-tiny", "--hidden-size", "256", "--ffn-hidden-size", "300"});
  EXPECT_EQ(*f.ffn_hidden_size, 300);
}

TEST(Arguments, PrintsMegatronsBlock) {
  Arguments a = validated(base_argv());
  const std::string s = format_args(a);
  EXPECT_EQ(s.rfind("------------------------ arguments ------------------------\n", 0), 0u);
  EXPECT_NE(s.find("\n-------------------- end of arguments ---------------------\n"),
            std::string::npos);
  // '.' * (48 - len(name)), then the value, in case-insensitive sorted order.
  EXPECT_NE(s.find("\n  adam_beta1 " + std::string(38, '.') + " 0.9\n"), std::string::npos);
  EXPECT_NE(s.find("\n  lr " + std::string(46, '.') + " 0.001\n"), std::string::npos);
  EXPECT_NE(s.find("\n  params_dtype " + std::string(36, '.') + " torch.float32\n"),
            std::string::npos);
  EXPECT_LT(s.find("  adam_beta1 "), s.find("  adam_beta2 "));
  EXPECT_LT(s.find("  tensor_model_parallel_size "), s.find("  train_iters "));
}

}  // namespace
}  // namespace mcore::training
