// model_info: the named model presets (mcore/models/presets.h) with their shapes and parameter
// counts, beside the published totals.
//
//   model_info                 every preset
//   model_info llama3-8b ...   the named ones
//   model_info --tp 8 NAME     also the parameters one tensor-parallel rank holds
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
  int64_t tp = 1;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tp" && i + 1 < argc) {
      tp = std::atoll(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: model_info [--tp N] [PRESET...]\n");
      return 0;
    } else {
      names.push_back(a);
    }
  }
  if (names.empty()) names = preset_names();
  if (tp < 1) {
    std::fprintf(stderr, "model_info: --tp must be a positive integer\n");
    return 2;
  }
  try {
    for (const std::string& name : names) (void)get_preset(name);  // every name, before output
    std::printf("%-14s %6s %6s %5s %4s %6s %7s %-9s %5s %16s %16s %s\n", "preset", "layers",
                "hidden", "heads", "kv", "ffn", "vocab", "norm", "tied", "parameters", "published",
                tp > 1 ? "per TP rank" : "");
    for (const std::string& name : names) {
      const ModelPreset& p = get_preset(name);
      const auto& c = p.config;
      const int64_t n = count_parameters(p);
      std::string published = p.published_parameter_count
                                  ? grouped(p.published_parameter_count) +
                                        (n == p.published_parameter_count ? " ok" : " MISMATCH")
                                  : "-";
      std::printf("%-14s %6ld %6ld %5ld %4ld %6ld %7ld %-9s %5s %16s %19s %s\n", name.c_str(),
                  static_cast<long>(c.num_layers), static_cast<long>(c.hidden_size),
                  static_cast<long>(c.num_attention_heads), static_cast<long>(c.num_query_groups),
                  static_cast<long>(c.ffn_hidden_size), static_cast<long>(p.vocab_size),
                  c.normalization.c_str(), p.share_embeddings_and_output_weights ? "yes" : "no",
                  grouped(n).c_str(), published.c_str(),
                  tp > 1 ? grouped(per_rank_parameters(p, tp)).c_str() : "");
      if (p.published_parameter_count && n != p.published_parameter_count) return 1;
    }
  } catch (const mcore::Error& e) {
    std::fprintf(stderr, "model_info: %s\n", e.what());
    return 2;
  }
  return 0;
}
