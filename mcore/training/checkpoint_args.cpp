#include "mcore/training/checkpoint_args.h"

#include <filesystem>
#include <sstream>

#include "mcore/base/error.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"

namespace mcore::training {

namespace dcp = dist_checkpointing;

std::string checkpoint_dir_to_load(const std::string& load, bool verify) {
  MCORE_CHECK(std::filesystem::exists(load)) << "--load " << load << ": no such directory";
  if (auto latest = dcp::read_latest_checkpoint_dir(load)) {
    if (verify) dcp::verify_checkpoint(*latest);  // the path of the directory it names
    return *latest;
  }
  if (std::filesystem::exists(std::filesystem::path(load) / "metadata.json")) return load;
  auto found = dcp::find_latest_valid_checkpoint(load);
  MCORE_CHECK(found) << "--load " << load << ": no checkpoint found (no " << dcp::kLatestFileName
                     << " and no valid iter_* directory)";
  return found->dir;
}

std::map<std::string, std::string> parse_saved_args(const std::string& block) {
  std::map<std::string, std::string> m;
  std::istringstream in(block);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) != 0) continue;
    const size_t name_end = line.find(' ', 2);
    const size_t dots = line.find(" ", name_end + 1);
    if (name_end == std::string::npos || dots == std::string::npos) continue;
    m[line.substr(2, name_end - 2)] = line.substr(dots + 1);
  }
  return m;
}

std::vector<std::string> flags_from_saved_args(const std::map<std::string, std::string>& saved,
                                               const Arguments& cli) {
  static const char* kDests[] = {"num_layers",
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
                                 "init_method_std",
                                 "hidden_dropout",
                                 "num_experts",
                                 "moe_ffn_hidden_size",
                                 "moe_router_topk",
                                 "moe_aux_loss_coeff",
                                 "moe_z_loss_coeff",
                                 "moe_shared_expert_intermediate_size",
                                 "moe_router_load_balancing_type",
                                 "moe_router_pre_softmax",
                                 "moe_router_topk_scaling_factor",
                                 "attention_dropout",
                                 "vocab_size",
                                 "tokenizer_type",
                                 "vocab_file",
                                 "merge_file",
                                 "tokenizer_model",
                                 "vocab_extra_ids"};
  std::map<std::string, const ArgumentSpec*> by_dest;
  for (const auto& spec : argument_table()) by_dest[spec.dest] = &spec;
  std::vector<std::string> flags;
  for (const char* dest : kDests) {
    auto s = saved.find(dest);
    auto spec = by_dest.find(dest);
    if (s == saved.end() || spec == by_dest.end() || cli.is_set(dest) || cli.model) continue;
    // --vocab-size defines the vocabulary of the NullTokenizer (and of mock data) only. Saved from
    // another run it is a preset's value the tokenizer never used (a ByteTokenizer would refuse 211
    // entries); the embedding's padded size is taken from the checkpoint itself.
    if (std::string(dest) == "vocab_size") {
      auto tok = saved.find("tokenizer_type");
      const std::string type = cli.tokenizer_type   ? *cli.tokenizer_type
                               : tok != saved.end() ? tok->second
                                                    : "";
      // Unset: mock data, whose vocabulary --vocab-size is.
      if (!type.empty() && type != "None" && type != "NullTokenizer") continue;
    }
    const std::string& v = s->second;
    using Act = ArgumentSpec::Action;
    switch (spec->second->action) {
      case Act::kStoreTrue:
        if (v == "True") flags.push_back(spec->second->flags[0]);
        break;
      case Act::kStoreFalse:
        if (v == "False") flags.push_back(spec->second->flags[0]);
        break;
      case Act::kStore:
        if (v != "None" && !v.empty() && v[0] != '[') {
          flags.push_back(spec->second->flags[0]);
          flags.push_back(v);
        }
        break;
    }
  }
  return flags;
}

std::vector<std::string> argv_with_checkpoint_args(const std::vector<std::string>& argv,
                                                   const Arguments& cli,
                                                   const std::string& checkpoint_dir) {
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(checkpoint_dir);
  if (!meta.sections.contains("args") || !meta.sections.at("args").is_string()) return argv;
  const auto saved = parse_saved_args(meta.sections.at("args").get<std::string>());
  std::vector<std::string> merged = {argv.at(0)};
  for (auto& f : flags_from_saved_args(saved, cli)) merged.push_back(f);
  merged.insert(merged.end(), argv.begin() + 1, argv.end());
  return merged;
}

}  // namespace mcore::training
