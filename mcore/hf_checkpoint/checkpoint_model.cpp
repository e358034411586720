#include "mcore/hf_checkpoint/checkpoint_model.h"

#include <filesystem>
#include <sstream>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/comm/local_backend.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/training/checkpointing.h"
#include "mcore/training/training.h"

namespace mcore::hf_checkpoint {
namespace {

namespace fs = std::filesystem;
namespace dcp = dist_checkpointing;

// The saved arguments that shape the model and name the tokenizer.
constexpr const char* kModelDests[] = {"num_layers",
                                       "hidden_size",
                                       "ffn_hidden_size",
                                       "num_attention_heads",
                                       "kv_channels",
                                       "group_query_attention",
                                       "num_query_groups",
                                       "max_position_embeddings",
                                       "seq_length",
                                       "position_embedding_type",
                                       "rotary_base",
                                       "rotary_percent",
                                       "rotary_interleaved",
                                       "use_rope_scaling",
                                       "rope_scaling_factor",
                                       "normalization",
                                       "layernorm_epsilon",
                                       "layernorm_zero_centered_gamma",
                                       "openai_gelu",
                                       "qk_layernorm",
                                       "swiglu",
                                       "add_bias_linear",
                                       "add_qkv_bias",
                                       "untie_embeddings_and_output_weights",
                                       "make_vocab_size_divisible_by",
                                       "apply_residual_connection_post_layernorm",
                                       "hidden_dropout",
                                       "attention_dropout",
                                       "init_method_std",
                                       "seed",
                                       "mock_data",
                                       "vocab_size",
                                       "tokenizer_type",
                                       "vocab_file",
                                       "merge_file",
                                       "tokenizer_model",
                                       "vocab_extra_ids"};

// The flags that reproduce the saved values (Megatron's argument table gives each dest's flag).
std::vector<std::string> flags_from_saved(const std::map<std::string, std::string>& saved) {
  std::map<std::string, const training::ArgumentSpec*> by_dest;
  for (const auto& spec : training::argument_table()) by_dest[spec.dest] = &spec;
  std::vector<std::string> flags = {"convert_checkpoint"};
  using Act = training::ArgumentSpec::Action;
  for (const char* dest : kModelDests) {
    auto s = saved.find(dest);
    auto spec = by_dest.find(dest);
    if (s == saved.end() || spec == by_dest.end()) continue;
    const std::string& v = s->second;
    const std::string& flag = spec->second->flags[0];
    switch (spec->second->action) {
      case Act::kStoreTrue:
        if (v == "True") flags.push_back(flag);
        break;
      case Act::kStoreFalse:
        if (v == "False") flags.push_back(flag);
        break;
      case Act::kStore:
        if (v != "None" && !v.empty() && v[0] != '[') {
          flags.push_back(flag);
          flags.push_back(v);
        }
        break;
    }
  }
  return flags;
}

}  // namespace

std::string resolve_checkpoint_dir(const std::string& load) {
  MCORE_CHECK(fs::is_directory(load)) << "--load " << load << ": no such directory";
  if (auto latest = dcp::read_latest_checkpoint_dir(load)) {
    dcp::verify_checkpoint(*latest);
    return *latest;
  }
  if (fs::exists(fs::path(load) / dcp::kMetadataFileName)) {
    dcp::verify_checkpoint(load);
    return load;
  }
  auto found = dcp::find_latest_valid_checkpoint(load);
  MCORE_CHECK(found) << "--load " << load << ": no checkpoint found (no " << dcp::kLatestFileName
                     << ", no metadata.json and no valid iter_* directory)";
  return found->dir;
}

std::map<std::string, std::string> parse_saved_args(const std::string& block) {
  std::map<std::string, std::string> m;
  std::istringstream in(block);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) != 0) continue;
    const size_t name_end = line.find(' ', 2);
    if (name_end == std::string::npos) continue;
    const size_t value_start = line.find(' ', name_end + 1);  // after the dots
    if (value_start == std::string::npos) continue;
    m[line.substr(2, name_end - 2)] = line.substr(value_start + 1);
  }
  return m;
}

CheckpointModel load_checkpoint_model(const std::string& load, bool keep_dtype) {
  CheckpointModel out;
  out.dir = resolve_checkpoint_dir(load);
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(out.dir);
  out.iteration = meta.iteration;
  MCORE_CHECK(meta.sections.contains("args") && meta.sections.at("args").is_string())
      << "checkpoint " << out.dir << " has no saved arguments (\"args\" section): it was not "
      << "written by pretrain_gpt or convert_checkpoint, so its model shape is unknown";
  const auto saved = parse_saved_args(meta.sections.at("args").get<std::string>());
  out.args = training::parse_args(flags_from_saved(saved));

  const std::string emb_key = "model.embedding.word_embeddings.weight";
  auto emb = meta.tensors.find(emb_key);
  MCORE_CHECK(emb != meta.tensors.end() && emb->second.global_shape.size() == 2)
      << "checkpoint " << out.dir << " has no word embedding (\"" << emb_key << "\")";
  out.padded_vocab_size = emb->second.global_shape[0];
  out.args.padded_vocab_size = out.padded_vocab_size;

  training::Arguments a = out.args;
  auto dtype = saved.find("params_dtype");
  if (keep_dtype && dtype != saved.end() && dtype->second.rfind("torch.", 0) == 0)
    a.params_dtype = dtype->second.substr(6);
  a.hidden_dropout = 0.0;
  a.attention_dropout = 0.0;
  a.tensor_model_parallel_size = 1;
  a.pipeline_model_parallel_size = 1;
  a.sequence_parallel = false;
  transformer::TransformerConfig config = training::transformer_config_from_args(a);
  config.perform_initialization = false;  // every weight comes from the checkpoint
  out.dtype = config.params_dtype;
  const int64_t max_seq = a.max_position_embeddings.value_or(a.seq_length.value_or(0));
  MCORE_CHECK(max_seq > 0) << "checkpoint " << out.dir
                           << ": the saved arguments have neither max_position_embeddings nor "
                              "seq_length";
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = !a.untie_embeddings_and_output_weights;
  o.tp_group = comm::make_local_group();
  out.model = std::make_shared<models::GPTModel>(
      config, transformer::get_gpt_layer_local_spec(a.qk_layernorm), out.padded_vocab_size, max_seq,
      o);

  std::vector<dcp::ShardedTensor> requests =
      training::model_load_requests(out.model->named_parameters(), meta);
  NoGradGuard no_grad;
  dcp::LoadOptions options;
  options.allow_dtype_cast = true;  // keep_dtype = false: bf16/fp16 weights widen exactly
  dcp::LoadResult r = dcp::load_checkpoint(out.dir, requests, options);
  MCORE_CHECK(r.missing_keys.empty())
      << "checkpoint " << out.dir << " lacks " << r.missing_keys.size()
      << " model tensors its saved arguments imply (first: " << r.missing_keys.front() << ")";
  return out;
}

}  // namespace mcore::hf_checkpoint
