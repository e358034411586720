#include "mcore/models/presets.h"

#include <map>
#include <sstream>

#include "mcore/base/error.h"

namespace mcore::models {

namespace {

using transformer::ActivationFunc;
using transformer::TransformerConfig;

ModelPreset gpt2(const std::string& name, int64_t layers, int64_t hidden, int64_t heads,
                 int64_t published) {
  ModelPreset p;
  p.name = name;
  p.family = "gpt2";
  TransformerConfig& c = p.config;
  c.num_layers = layers;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.ffn_hidden_size = 4 * hidden;
  c.normalization = "LayerNorm";
  c.layernorm_epsilon = 1e-5;
  c.add_bias_linear = true;
  c.activation_func = ActivationFunc::kGeluTanh;  // GPT-2's "gelu_new"
  c.position_embedding_type = "learned_absolute";
  c.hidden_dropout = 0.1;
  c.attention_dropout = 0.1;
  c.init_method_std = 0.02;
  p.vocab_size = 50257;
  p.max_sequence_length = 1024;
  p.share_embeddings_and_output_weights = true;
  p.published_parameter_count = published;
  return p;
}

// LLaMA-style: RMSNorm, SwiGLU, RoPE, no biases, untied output layer.
ModelPreset llama(const std::string& name, const std::string& family, int64_t layers,
                  int64_t hidden, int64_t heads, int64_t kv_heads, int64_t ffn, int64_t vocab,
                  int64_t max_seq, double rope_base, double eps, int64_t published) {
  ModelPreset p;
  p.name = name;
  p.family = family;
  TransformerConfig& c = p.config;
  c.num_layers = layers;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.num_query_groups = kv_heads;
  c.ffn_hidden_size = ffn;
  c.normalization = "RMSNorm";
  c.layernorm_epsilon = eps;
  c.add_bias_linear = false;
  c.gated_linear_unit = true;
  c.activation_func = ActivationFunc::kSilu;
  c.position_embedding_type = "rope";
  c.rotary_base = rope_base;
  c.hidden_dropout = 0.0;
  c.attention_dropout = 0.0;
  c.init_method_std = 0.02;
  p.vocab_size = vocab;
  p.max_sequence_length = max_seq;
  p.share_embeddings_and_output_weights = false;
  p.published_parameter_count = published;
  return p;
}

std::vector<ModelPreset> build_presets() {
  std::vector<ModelPreset> v;
  v.push_back(gpt2("gpt2-124m", 12, 768, 12, 124439808));
  v.push_back(gpt2("gpt2-355m", 24, 1024, 16, 354823168));
  v.push_back(gpt2("gpt2-774m", 36, 1280, 20, 774030080));
  v.push_back(gpt2("gpt2-1.5b", 48, 1600, 25, 1557611200));
  v.push_back(
      llama("llama2-7b", "llama2", 32, 4096, 32, 32, 11008, 32000, 4096, 1e4, 1e-5, 6738415616));
  v.push_back(
      llama("llama2-13b", "llama2", 40, 5120, 40, 40, 13824, 32000, 4096, 1e4, 1e-5, 13015864320));
  v.push_back(
      llama("llama3-8b", "llama3", 32, 4096, 32, 8, 14336, 128256, 8192, 5e5, 1e-5, 8030261248));
  v.push_back(
      llama("llama3-70b", "llama3", 80, 8192, 64, 8, 28672, 128256, 8192, 5e5, 1e-5, 70553706496));
  ModelPreset qwen =
      llama("qwen2.5-7b", "qwen2.5", 28, 3584, 28, 4, 18944, 152064, 32768, 1e6, 1e-6, 7615616512);
  qwen.config.add_qkv_bias = true;  // Qwen2 keeps a bias on q, k and v only
  v.push_back(qwen);
  v.push_back(
      llama("mistral-7b", "mistral", 32, 4096, 32, 8, 14336, 32000, 32768, 1e4, 1e-5, 7241732096));
  // Mixtral: Mistral's attention with 8 SwiGLU experts per layer, each token to the top 2.
  ModelPreset mixtral = llama("mixtral-8x7b", "mixtral", 32, 4096, 32, 8, 14336, 32000, 32768, 1e6,
                              1e-5, 46702792704);
  mixtral.config.num_moe_experts = 8;
  mixtral.config.moe_router_topk = 2;
  v.push_back(mixtral);

  // Tiny variants: the same structure (bias, norm, GLU, GQA ratio, positions), small sizes with
  // odd-ish vocabularies, for tests and examples.
  v.push_back(gpt2("gpt2-tiny", 2, 64, 4, 0));
  v.back().vocab_size = 211;
  v.back().max_sequence_length = 64;
  v.push_back(llama("llama2-tiny", "llama2", 2, 64, 4, 4, 172, 203, 64, 1e4, 1e-5, 0));
  v.push_back(llama("llama3-tiny", "llama3", 2, 64, 4, 2, 160, 256, 64, 5e5, 1e-5, 0));
  ModelPreset qt = llama("qwen2.5-tiny", "qwen2.5", 2, 64, 4, 2, 176, 256, 64, 1e6, 1e-6, 0);
  qt.config.add_qkv_bias = true;
  v.push_back(qt);
  v.push_back(llama("mistral-tiny", "mistral", 2, 64, 4, 1, 160, 256, 64, 1e4, 1e-5, 0));
  ModelPreset mt = llama("mixtral-tiny", "mixtral", 2, 64, 4, 2, 96, 256, 64, 1e6, 1e-5, 0);
  mt.config.num_moe_experts = 4;
  mt.config.moe_router_topk = 2;
  v.push_back(mt);
  for (ModelPreset& p : v) p.config.finalize();
  return v;
}

const std::vector<ModelPreset>& presets() {
  static const std::vector<ModelPreset> all = build_presets();
  return all;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const ModelPreset& p : presets()) names.push_back(p.name);
  return names;
}

const ModelPreset& get_preset(const std::string& name) {
  for (const ModelPreset& p : presets())
    if (p.name == name) return p;
  std::ostringstream known;
  for (const ModelPreset& p : presets()) known << " " << p.name;
  MCORE_FAIL() << "unknown model preset '" << name << "'; known presets:" << known.str();
  return presets().front();  // unreachable
}

int64_t count_parameters(const TransformerConfig& config, int64_t vocab_size,
                         int64_t max_sequence_length, bool tied) {
  TransformerConfig c = config.finalized();
  const int64_t h = c.hidden_size;
  const int64_t norm = c.normalization == "LayerNorm" ? 2 * h : h;  // weight (+ bias)
  const int64_t qkv_out = c.query_projection_size() + 2 * c.kv_projection_size();
  // One MLP (dense, or each expert of a mixture-of-experts layer, plus its router).
  const int64_t ffn = c.num_moe_experts > 0 ? c.moe_ffn_hidden_size : c.ffn_hidden_size;
  const int64_t fc1_out = c.gated_linear_unit ? 2 * ffn : ffn;
  const int64_t mlp =
      h * fc1_out + (c.add_bias_linear ? fc1_out : 0) + ffn * h + (c.add_bias_linear ? h : 0);
  int64_t layer = 2 * norm;
  layer += h * qkv_out + ((c.add_bias_linear || c.add_qkv_bias) ? qkv_out : 0);
  layer += c.query_projection_size() * h + (c.add_bias_linear ? h : 0);
  layer += c.num_moe_experts > 0 ? c.num_moe_experts * (mlp + h) : mlp;
  if (c.qk_layernorm) {
    layer += 2 * (c.normalization == "LayerNorm" ? 2 * c.kv_channels : c.kv_channels);
  }
  int64_t total = c.num_layers * layer + norm + vocab_size * h;
  if (c.position_embedding_type == "learned_absolute") total += max_sequence_length * h;
  if (!tied) total += vocab_size * h;
  return total;
}

}  // namespace mcore::models
