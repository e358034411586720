#include "mcore/hf_checkpoint/convert.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "mcore/base/error.h"
#include "mcore/base/file_io.h"
#include "mcore/comm/local_backend.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/hf_checkpoint/checkpoint_model.h"
#include "mcore/hf_checkpoint/hf_files.h"
#include "mcore/hf_checkpoint/hf_tokenizer.h"
#include "mcore/hf_checkpoint/hf_weights.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/tensor_parallel/utils.h"
#include "mcore/training/checkpointing.h"
#include "mcore/training/setup.h"
#include "mcore/training/training.h"

namespace mcore::hf_checkpoint {
namespace {

namespace fs = std::filesystem;
namespace dcp = dist_checkpointing;

void check_fresh_output(const std::string& dir, const char* flag) {
  MCORE_CHECK(!dir.empty()) << flag << " is required";
  MCORE_CHECK(!fs::exists(dir) || (fs::is_directory(dir) && fs::is_empty(dir)))
      << flag << " " << dir << " exists and is not an empty directory; choose a new one";
}

// pretrain_gpt's tokenizer flags for the tokenizer files in `dir` (absolute paths, so the flags
// work from anywhere), or NullTokenizer over the model's vocabulary when there are none.
std::vector<std::string> tokenizer_flags(const std::string& dir, int64_t vocab_size,
                                         std::vector<std::string>& warnings) {
  const fs::path d = fs::absolute(dir).lexically_normal();
  if (fs::exists(d / "tokenizer.json"))
    return {"--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", d.string()};
  if (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")) {
    return {"--tokenizer-type",          "GPT2BPETokenizer", "--vocab-file",
            (d / "vocab.json").string(), "--merge-file",     (d / "merges.txt").string()};
  }
  if (fs::exists(d / "tokenizer.model")) {
    return {"--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model",
            (d / "tokenizer.model").string()};
  }
  // NullTokenizer's ids are < --vocab-size plus one end-of-document id: V - 1 keeps all V rows.
  warnings.push_back(
      "no tokenizer files (tokenizer.json, vocab.json + merges.txt, "
      "tokenizer.model) in " +
      dir + ": the checkpoint names NullTokenizer over the " + std::to_string(vocab_size) +
      " ids; pass your tokenizer's flags to pretrain_gpt and generate");
  return {"--tokenizer-type", "NullTokenizer", "--vocab-size", std::to_string(vocab_size - 1)};
}

// Moves `from` into place as `to` (empty or absent, checked before the work started).
void publish(const std::string& from, const std::string& to) {
  if (fs::exists(to)) fs::remove(to);
  MCORE_CHECK(std::rename(from.c_str(), to.c_str()) == 0)
      << "cannot rename " << from << " to " << to << ": " << std::strerror(errno);
  fsync_directory(fs::absolute(to).parent_path().string());
}

// Adds the kHFImportSection to the saved checkpoint's metadata.json: config.json's values that
// the saved arguments have no place for (metadata.json is not checksummed; its shards are).
void add_hf_import_section(const std::string& checkpoint_dir, const ImportedConfig& ic) {
  dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(checkpoint_dir);
  nlohmann::json section = ic.special_tokens;
  section["vocab_size"] = ic.vocab_size;
  meta.sections[kHFImportSection] = section;
  write_file_atomic((fs::path(checkpoint_dir) / dcp::kMetadataFileName).string(),
                    meta.to_json().dump(1) + "\n");
}

}  // namespace

HFToMcoreResult convert_hf_to_mcore(const HFToMcoreOptions& options) {
  MCORE_CHECK(!options.hf_dir.empty()) << "--hf-dir is required";
  MCORE_CHECK(!options.save_dir.empty()) << "--save is required";
  HFToMcoreOptions o = options;
  o.save_dir = normalized_dir(o.save_dir);
  check_fresh_output(o.save_dir, "--save");
  HFToMcoreResult res;
  const nlohmann::json hf_config = read_hf_config(o.hf_dir);
  const ImportedConfig ic =
      import_hf_config(hf_config, (fs::path(o.hf_dir) / kConfigFileName).string());
  const HFWeightFiles files(o.hf_dir);  // every file validated before anything is written
  res.architecture = ic.architecture;
  res.warnings = ic.warnings;
  res.special_tokens = ic.special_tokens;
  res.model_flags = ic.model_flags;
  res.vocab_size = ic.vocab_size;
  res.tokenizer_flags = tokenizer_flags(o.hf_dir, ic.vocab_size, res.warnings);

  std::vector<std::string> argv = {"convert_checkpoint"};
  argv.insert(argv.end(), ic.model_flags.begin(), ic.model_flags.end());
  argv.insert(argv.end(), res.tokenizer_flags.begin(), res.tokenizer_flags.end());
  // Hugging Face's vocabulary size, kept in the saved arguments so that an export drops exactly
  // the padding (only NullTokenizer takes its size from --vocab-size).
  if (res.tokenizer_flags[1] != "NullTokenizer") {
    argv.push_back("--vocab-size");
    argv.push_back(std::to_string(ic.vocab_size));
  }
  argv.push_back("--make-vocab-size-divisible-by");
  argv.push_back(std::to_string(o.make_vocab_size_divisible_by));
  if (o.params_dtype == "bfloat16") argv.push_back("--bf16");
  if (o.params_dtype == "float16") argv.push_back("--fp16");
  training::Arguments args = training::parse_args(argv);
  args.params_dtype = o.params_dtype;
  args.no_save_optim = true;  // a release checkpoint: the model alone, as Megatron's converters
  args.no_save_rng = true;
  res.padded_vocab_size = training::set_padded_vocab_size(args, ic.vocab_size);
  res.seq_length = *args.seq_length;
  if (!args.kv_channels) args.kv_channels = *args.hidden_size / *args.num_attention_heads;
  if (!args.group_query_attention) args.num_query_groups = *args.num_attention_heads;

  transformer::TransformerConfig config = training::transformer_config_from_args(args);
  config.perform_initialization = false;  // every weight comes from the files
  HFModel m;
  m.architecture = ic.architecture;
  m.config = config;
  m.vocab_size = ic.vocab_size;
  m.padded_vocab_size = res.padded_vocab_size;
  m.max_position_embeddings = *args.max_position_embeddings;
  m.tie_word_embeddings = !args.untie_embeddings_and_output_weights;
  const std::map<std::string, Tensor> state = import_weights(m, files);
  for (std::string& w : weight_value_warnings(state, config.params_dtype))
    res.warnings.push_back(std::move(w));

  models::GPTModelOptions mo;
  mo.share_embeddings_and_output_weights = m.tie_word_embeddings;
  mo.tp_group = comm::make_local_group();
  models::GPTModel model(config, transformer::get_gpt_layer_local_spec(args.qk_layernorm),
                         m.padded_vocab_size, m.max_position_embeddings, mo);
  model.load_state_dict(state);  // strict: every parameter filled, cast to params_dtype

  // Saved as iteration 0 into a staging directory, then made Megatron's release layout.
  const std::string staging = make_staging_dir(o.save_dir);
  std::error_code ec;
  try {
    args.save = staging;
    const std::string saved = training::save_trainer_checkpoint(
        args, model.named_parameters(), nullptr, nullptr, training::TrainerState{});
    const std::string release = (fs::path(staging) / "release").string();
    MCORE_CHECK(std::rename(saved.c_str(), release.c_str()) == 0)
        << "cannot rename " << saved << " to " << release << ": " << std::strerror(errno);
    add_hf_import_section(release, ic);
    write_file_atomic((fs::path(staging) / dcp::kLatestFileName).string(), "release");
    fs::remove(fs::path(staging) / ".mcore_save.lock", ec);
    publish(staging, o.save_dir);
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
  res.checkpoint_dir = (fs::path(o.save_dir) / "release").string();
  return res;
}

McoreToHFResult convert_mcore_to_hf(const McoreToHFOptions& o) {
  MCORE_CHECK(!o.load_dir.empty()) << "--load is required";
  MCORE_CHECK(!o.save_hf_dir.empty()) << "--save-hf is required";
  const std::string save_hf_dir = normalized_dir(o.save_hf_dir);
  check_fresh_output(save_hf_dir, "--save-hf");
  McoreToHFResult res;
  const CheckpointModel cm = load_checkpoint_model(o.load_dir, /*keep_dtype=*/true);
  res.checkpoint_dir = cm.dir;
  res.padded_vocab_size = cm.padded_vocab_size;
  const bool tied = !cm.args.untie_embeddings_and_output_weights;
  HFModel m;
  m.architecture = infer_architecture(cm.model->config(), tied, o.architecture);
  m.config = cm.model->config();
  const TokenizerExport tok = export_tokenizer(cm.args);
  m.vocab_size = export_vocab_size(cm, tok, o.vocab_size, res.warnings);
  m.padded_vocab_size = cm.padded_vocab_size;
  m.max_position_embeddings =
      cm.args.max_position_embeddings.value_or(cm.args.seq_length.value_or(0));
  m.tie_word_embeddings = tied;
  m.special_tokens = export_special_tokens(cm, tok, m.vocab_size);
  res.architecture = m.architecture;
  res.vocab_size = m.vocab_size;
  res.warnings.insert(res.warnings.end(), tok.warnings.begin(), tok.warnings.end());

  const auto tensors = export_weights(m, cm.model->state_dict());
  std::map<std::string, nlohmann::json> json_files = tok.json_files;
  json_files[kConfigFileName] = export_hf_config(m, cm.args, cm.dtype);
  // transformers' generate() reads the special ids from here (it derives the file from
  // config.json when absent, but save_pretrained writes both).
  if (!m.special_tokens.empty()) {
    nlohmann::json g = m.special_tokens;
    g["_from_model_config"] = true;
    json_files["generation_config.json"] = g;
  }
  for (const auto& [from, name] : tok.copies) res.copied_files.push_back(name);
  for (const auto& [name, j] : tok.json_files) res.copied_files.push_back(name);
  write_hf_directory(save_hf_dir, json_files, tensors, tok.copies);
  return res;
}

}  // namespace mcore::hf_checkpoint
