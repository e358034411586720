// model_info: the named model presets (mcore/models/presets.h) with their shapes and parameter
// counts, beside the published totals.
//
//   model_info                 every preset
//   model_info llama3-8b ...   the named ones
//   model_info --tp 8 NAME     also the parameters one tensor-parallel rank holds
//   model_info --ep 8 NAME     also the parameters one expert-parallel rank holds (MoE)
//
// For a mixture-of-experts preset the table shows its experts and top-k, and the parameters
// active per token (every weight outside the experts plus top-k experts per layer).
//
// A --tp that the model build would reject (it must divide the attention heads, the query
// groups and the FFN hidden size) is an error for a named preset; in the listing of every
// preset, such rows show "-" and a note below the table says why and which sizes fit.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/models/presets.h"
#include "mcore/tensor_parallel/utils.h"

namespace {

// Parameters on one rank of a tensor-parallel group of `tp` (no pipeline split): the sharded
// GEMM weights, the padded vocabulary and (column-parallel) biases divide by tp; norms, learned
// positions and row-parallel biases are replicated.
int64_t per_rank_parameters(const mcore::models::ModelPreset& p, int64_t tp) {
  using mcore::transformer::TransformerConfig;
  const TransformerConfig& c = p.config;
  const int64_t h = c.hidden_size;
  const int64_t norm = c.normalization == "LayerNorm" ? 2 * h : h;
  const int64_t qkv = c.query_projection_size() + 2 * c.kv_projection_size();
  const int64_t fc1 = c.gated_linear_unit ? 2 * c.ffn_hidden_size : c.ffn_hidden_size;
  int64_t layer =
      2 * norm + (h * qkv + c.query_projection_size() * h + h * fc1 + c.ffn_hidden_size * h) / tp;
  if (c.add_bias_linear || c.add_qkv_bias) layer += qkv / tp;
  if (c.add_bias_linear) layer += fc1 / tp + 2 * h;
  if (c.qk_layernorm) layer += 2 * (c.normalization == "LayerNorm" ? 2 : 1) * c.kv_channels;
  // Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by (128) x tp.
  const int64_t vocab = mcore::tensor_parallel::vocab_size_with_padding(p.vocab_size, 128, tp) / tp;
  int64_t total = c.num_layers * layer + norm + vocab * h;
  if (c.position_embedding_type == "learned_absolute") total += p.max_sequence_length * h;
  if (!p.share_embeddings_and_output_weights) total += vocab * h;
  return total;
}

// The weights of one expert (an MLP of moe_ffn_hidden_size); 0 for a dense preset.
int64_t expert_parameters(const mcore::models::ModelPreset& p) {
  const auto& c = p.config;
  if (c.num_moe_experts == 0) return 0;
  const int64_t ffn = c.moe_ffn_hidden_size > 0 ? c.moe_ffn_hidden_size : c.ffn_hidden_size;
  const int64_t fc1 = c.gated_linear_unit ? 2 * ffn : ffn;
  int64_t n = c.hidden_size * fc1 + ffn * c.hidden_size;
  if (c.add_bias_linear) n += fc1 + c.hidden_size;
  return n;
}

// Why `tp` cannot shard preset `p`, or "" when it can. The check is the model build's own
// (TransformerConfig::validate, which pretrain_gpt's config goes through), so model_info accepts
// exactly the layouts training accepts. The padded vocabulary needs no check: Megatron pads it
// to a multiple of 128 x tp.
std::string tp_misfit(const mcore::models::ModelPreset& p, int64_t tp) {
  mcore::transformer::TransformerConfig c = p.config;
  c.tensor_model_parallel_size = tp;
  try {
    c.validate();
  } catch (const mcore::Error& e) {
    return e.message();
  }
  return "";
}

// The message for a --tp that does not fit preset `name`: the sizes it must divide, the build's
// reason, and the sizes that do fit (the fix).
std::string tp_error(const std::string& name, const mcore::models::ModelPreset& p, int64_t tp) {
  const auto& c = p.config;
  std::string fits;
  for (int64_t t = 1; t <= c.num_attention_heads; ++t) {
    if (!tp_misfit(p, t).empty()) continue;
    if (!fits.empty()) fits += ", ";
    fits += std::to_string(t);
  }
  const int64_t groups = c.num_query_groups;
  std::string msg = "--tp " + std::to_string(tp) + " does not fit " + name + " (";
  msg += std::to_string(c.num_attention_heads) + " attention heads, ";
  if (groups != c.num_attention_heads) {
    msg += std::to_string(groups) + (groups == 1 ? " query group, " : " query groups, ");
  }
  msg += "FFN hidden size " + std::to_string(c.ffn_hidden_size) + "; --tp must divide each): ";
  msg += tp_misfit(p, tp);
  msg += ". Sizes that fit: --tp " + fits;
  return msg;
}

std::string grouped(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mcore::models;
  int64_t tp = 1, ep = 1;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tp" && i + 1 < argc) {
      tp = std::atoll(argv[++i]);
    } else if (a == "--ep" && i + 1 < argc) {
      ep = std::atoll(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: model_info [--tp N] [--ep N] [PRESET...]\n");
      return 0;
    } else {
      names.push_back(a);
    }
  }
  if (tp < 1 || ep < 1) {
    std::fprintf(stderr, "model_info: --tp and --ep must be positive integers\n");
    return 2;
  }
  // Named presets: a --tp the model build would reject is an error. The listing of every
  // preset marks those rows instead, so `model_info --tp 2` still shows the presets it fits.
  const bool listing_all = names.empty();
  try {
    for (const std::string& name : names) {  // every name, before output
      const ModelPreset& p = get_preset(name);
      if (!tp_misfit(p, tp).empty()) {
        std::fprintf(stderr, "model_info: %s\n", tp_error(name, p, tp).c_str());
        return 2;
      }
      const int64_t experts = p.config.num_moe_experts;
      if (ep > 1 && (experts == 0 || experts % ep != 0)) {
        std::fprintf(stderr,
                     "model_info: --ep %lld does not fit %s (%lld experts per layer): --ep must "
                     "divide the experts of a mixture-of-experts preset\n",
                     static_cast<long long>(ep), name.c_str(), static_cast<long long>(experts));
        return 2;
      }
    }
    if (listing_all) names = preset_names();
    std::vector<std::string> notes;
    std::printf("%-14s %6s %6s %5s %4s %6s %7s %-9s %5s %8s %16s %16s %16s %s\n", "preset",
                "layers", "hidden", "heads", "kv", "ffn", "vocab", "norm", "tied", "experts",
                "parameters", "published", "active",
                tp > 1   ? "per TP rank"
                : ep > 1 ? "per EP rank"
                         : "");
    for (const std::string& name : names) {
      const ModelPreset& p = get_preset(name);
      const auto& c = p.config;
      const int64_t n = count_parameters(p);
      const bool fits = tp_misfit(p, tp).empty();
      // Each expert-parallel rank holds every weight outside the experts and 1/ep of these.
      const int64_t expert_total = c.num_layers * c.num_moe_experts * expert_parameters(p);
      std::string per_rank = tp == 1 ? std::string()
                             : fits  ? grouped(per_rank_parameters(p, tp))
                                     : std::string(1, '-');
      if (tp == 1 && ep > 1)
        per_rank = c.num_moe_experts > 0 && c.num_moe_experts % ep == 0
                       ? grouped(n - expert_total + expert_total / ep)
                       : std::string(1, '-');
      const std::string experts = c.num_moe_experts ? std::to_string(c.num_moe_experts) + "/top" +
                                                          std::to_string(c.moe_router_topk)
                                                    : "-";
      const std::string active =
          c.num_moe_experts ? grouped(n - c.num_layers * (c.num_moe_experts - c.moe_router_topk) *
                                              expert_parameters(p))
                            : "-";
      if (!fits) notes.push_back("- " + tp_error(name, p, tp));
      std::string published = p.published_parameter_count
                                  ? grouped(p.published_parameter_count) +
                                        (n == p.published_parameter_count ? " ok" : " MISMATCH")
                                  : "-";
      std::printf("%-14s %6ld %6ld %5ld %4ld %6ld %7ld %-9s %5s %8s %16s %19s %16s %s\n",
                  name.c_str(), static_cast<long>(c.num_layers), static_cast<long>(c.hidden_size),
                  static_cast<long>(c.num_attention_heads), static_cast<long>(c.num_query_groups),
                  static_cast<long>(c.ffn_hidden_size), static_cast<long>(p.vocab_size),
                  c.normalization.c_str(), p.share_embeddings_and_output_weights ? "yes" : "no",
                  experts.c_str(), grouped(n).c_str(), published.c_str(), active.c_str(),
                  per_rank.c_str());
      if (p.published_parameter_count && n != p.published_parameter_count) return 1;
    }
    for (const std::string& note : notes) std::printf("%s\n", note.c_str());
  } catch (const mcore::Error& e) {
    std::fprintf(stderr, "model_info: %s\n", e.what());
    return 2;
  }
  return 0;
}
