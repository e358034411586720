#include "mcore/hf_checkpoint/hf_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "mcore/base/error.h"

namespace mcore::hf_checkpoint {
namespace {

using json = nlohmann::json;
using transformer::ActivationFunc;
using transformer::TransformerConfig;

constexpr HFArchitecture kAllArchitectures[] = {HFArchitecture::kGPT2, HFArchitecture::kLlama,
                                                HFArchitecture::kMistral, HFArchitecture::kQwen2,
                                                HFArchitecture::kMixtral};

// The shortest decimal that reads back as the same double, so flags print as "1e-05", not
// "1.0000000000000001e-05", and still round-trip exactly through the saved arguments.
std::string fmt_double(double v) {
  char buf[40];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// Typed access to config.json fields with errors naming the file and the field.
class ConfigReader {
 public:
  ConfigReader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const json& at(const std::string& key) const {
    MCORE_CHECK(has(key)) << origin_ << ": required field \"" << key << "\" is missing";
    return j_.at(key);
  }
  int64_t integer(const std::string& key) const {
    const json& v = at(key);
    MCORE_CHECK(v.is_number_integer())
        << origin_ << ": field \"" << key << "\" must be an integer, got " << v.dump();
    const int64_t i = v.get<int64_t>();
    MCORE_CHECK(i > 0) << origin_ << ": field \"" << key << "\" must be positive, got " << i;
    return i;
  }
  int64_t integer(const std::string& key, int64_t fallback) const {
    return has(key) ? integer(key) : fallback;
  }
  double number(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    MCORE_CHECK(v.is_number()) << origin_ << ": field \"" << key << "\" must be a number, got "
                               << v.dump();
    return v.get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    MCORE_CHECK(v.is_boolean()) << origin_ << ": field \"" << key
                                << "\" must be true or false, got " << v.dump();
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    MCORE_CHECK(v.is_string()) << origin_ << ": field \"" << key << "\" must be a string, got "
                               << v.dump();
    return v.get<std::string>();
  }
  // A field that must hold `expected` (when present) because mcore has no other behaviour.
  void require_bool(const std::string& key, bool expected, const std::string& why) const {
    MCORE_CHECK(boolean(key, expected) == expected)
        << origin_ << ": \"" << key << "\": " << (expected ? "false" : "true")
        << " is not supported (" << why << ")";
  }
  const std::string& origin() const { return origin_; }

 private:
  const json& j_;
  std::string origin_;
};

HFArchitecture read_architecture(const ConfigReader& r, const json& j) {
  if (r.has("architectures")) {
    const json& a = j.at("architectures");
    MCORE_CHECK(a.is_array() && a.size() == 1 && a[0].is_string())
        << r.origin() << ": field \"architectures\" must list one architecture, got " << a.dump()
        << "; supported: " << supported_architectures();
    const std::string name = a[0].get<std::string>();
    for (HFArchitecture arch : kAllArchitectures) {
      if (name == architecture_name(arch)) return arch;
    }
    MCORE_FAIL() << r.origin() << ": unsupported architecture \"" << name
                 << "\" (field \"architectures\"); supported: " << supported_architectures();
  }
  // Without "architectures" (a config written for a base model), model_type says which.
  const std::string type = r.string("model_type", "");
  if (type == "gpt2") return HFArchitecture::kGPT2;
  if (type == "llama") return HFArchitecture::kLlama;
  if (type == "mistral") return HFArchitecture::kMistral;
  if (type == "qwen2") return HFArchitecture::kQwen2;
  if (type == "mixtral") return HFArchitecture::kMixtral;
  MCORE_FAIL() << r.origin() << ": no \"architectures\" field and unsupported \"model_type\" \""
               << type << "\"; supported: " << supported_architectures();
  return HFArchitecture::kLlama;  // not reached: MCORE_FAIL throws
}

void push(std::vector<std::string>& flags, const std::string& flag, const std::string& value) {
  flags.push_back(flag);
  flags.push_back(value);
}

// The sequence length saved with the model. A model's max_position_embeddings (131072 for
// Llama-3.1) is what it can attend over, not what a fine-tune should train on by default: saving
// it would make `pretrain_gpt --use-checkpoint-args --finetune` allocate 131072-token sequences.
// Megatron's HF loaders use 4096; --seq-length on the command line overrides it.
constexpr int64_t kDefaultSeqLength = 4096;

// Attention heads split the hidden size evenly unless a head dimension is given: checked here so
// that the error names the fields rather than a derived setting.
void check_heads_divide(const ConfigReader& r, const char* hidden_key, int64_t hidden,
                        const char* heads_key, int64_t heads) {
  MCORE_CHECK(hidden % heads == 0)
      << r.origin() << ": \"" << hidden_key << "\" " << hidden << " is not divisible by \""
      << heads_key << "\" " << heads << " (each attention head gets hidden / heads channels)";
}

void import_gpt2(const ConfigReader& r, ImportedConfig& out) {
  auto& f = out.model_flags;
  const int64_t hidden = r.integer("n_embd");
  const int64_t positions = r.integer("n_positions");
  check_heads_divide(r, "n_embd", hidden, "n_head", r.integer("n_head"));
  push(f, "--num-layers", std::to_string(r.integer("n_layer")));
  push(f, "--hidden-size", std::to_string(hidden));
  push(f, "--num-attention-heads", std::to_string(r.integer("n_head")));
  push(f, "--ffn-hidden-size", std::to_string(r.integer("n_inner", 4 * hidden)));
  push(f, "--max-position-embeddings", std::to_string(positions));
  push(f, "--seq-length", std::to_string(std::min(positions, kDefaultSeqLength)));
  push(f, "--position-embedding-type", "learned_absolute");
  push(f, "--normalization", "LayerNorm");
  push(f, "--norm-epsilon", fmt_double(r.number("layer_norm_epsilon", 1e-5)));
  const std::string act = r.string("activation_function", "gelu_new");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") {
    f.push_back("--openai-gelu");  // the tanh approximation (all three are the same function)
  } else {
    MCORE_CHECK(act == "gelu") << r.origin() << ": \"activation_function\": \"" << act
                               << "\" is not supported (supported: gelu_new, gelu_pytorch_tanh, "
                                  "gelu_fast, gelu)";
  }
  r.require_bool("scale_attn_weights", true, "mcore always scales attention by 1/sqrt(head dim)");
  r.require_bool("scale_attn_by_inverse_layer_idx", false,
                 "mcore does not scale attention by the layer index");
  r.require_bool("add_cross_attention", false, "decoder-only models only");
  if (!r.boolean("tie_word_embeddings", true)) f.push_back("--untie-embeddings-and-output-weights");
  push(f, "--hidden-dropout", fmt_double(r.number("resid_pdrop", 0.1)));
  push(f, "--attention-dropout", fmt_double(r.number("attn_pdrop", 0.1)));
  push(f, "--init-method-std", fmt_double(r.number("initializer_range", 0.02)));
}

// Mixtral's sparse MLP: every layer's MLP is num_local_experts SwiGLU experts of
// intermediate_size, each token sent to its num_experts_per_tok best by the router's logits and
// weighted by the softmax over all experts renormalized over those k - the softmax of the k
// logits, which is mcore's TopKRouter without --moe-router-pre-softmax.
void import_mixtral_experts(const ConfigReader& r, ImportedConfig& out) {
  auto& f = out.model_flags;
  const int64_t experts = r.integer("num_local_experts", 8);
  const int64_t topk = r.integer("num_experts_per_tok", 2);
  MCORE_CHECK(topk <= experts) << r.origin() << ": \"num_experts_per_tok\" " << topk
                               << " exceeds \"num_local_experts\" " << experts;
  // Mixtral's renormalized top-1 weight is always 1. mcore refuses that router (it could not
  // learn); its top-1 routing (--moe-router-pre-softmax) weighs by the softmax instead.
  MCORE_CHECK(topk > 1) << r.origin()
                        << ": \"num_experts_per_tok\": 1 is not supported (mcore's top-1 "
                           "routing weighs each token by its expert's softmax probability; "
                           "Mixtral's weight is 1)";
  push(f, "--num-experts", std::to_string(experts));
  push(f, "--moe-router-topk", std::to_string(topk));
  push(f, "--moe-ffn-hidden-size", std::to_string(r.integer("intermediate_size")));
  // The load-balancing loss only changes training. transformers adds it to the loss only with
  // output_router_logits, which is a training switch and not part of the model, so it is
  // ignored; mcore adds it whenever the coefficient is positive.
  const double aux = r.number("router_aux_loss_coef", 0.001);  // MixtralConfig's default
  MCORE_CHECK(aux >= 0) << r.origin() << ": \"router_aux_loss_coef\" must be >= 0, got "
                        << fmt_double(aux);
  push(f, "--moe-aux-loss-coeff", fmt_double(aux));
  const double jitter = r.number("router_jitter_noise", 0.0);
  if (jitter != 0.0) {
    out.warnings.push_back("router_jitter_noise " + fmt_double(jitter) +
                           " is not modelled: transformers applies it in training only, and "
                           "mcore's router has no jitter, so fine-tuning runs without it");
  }
}

void import_llama(const ConfigReader& r, const json& j, HFArchitecture arch, ImportedConfig& out) {
  auto& f = out.model_flags;
  const int64_t hidden = r.integer("hidden_size");
  const int64_t heads = r.integer("num_attention_heads");
  const int64_t kv_heads = r.integer("num_key_value_heads", heads);
  const int64_t positions = r.integer("max_position_embeddings");
  push(f, "--num-layers", std::to_string(r.integer("num_hidden_layers")));
  push(f, "--hidden-size", std::to_string(hidden));
  push(f, "--ffn-hidden-size", std::to_string(r.integer("intermediate_size")));
  if (arch == HFArchitecture::kMixtral) import_mixtral_experts(r, out);
  push(f, "--num-attention-heads", std::to_string(heads));
  if (kv_heads != heads) {
    f.push_back("--group-query-attention");
    push(f, "--num-query-groups", std::to_string(kv_heads));
  }
  if (r.has("head_dim") && r.integer("head_dim") * heads != hidden) {
    push(f, "--kv-channels", std::to_string(r.integer("head_dim")));
  } else {
    check_heads_divide(r, "hidden_size", hidden, "num_attention_heads", heads);
  }
  push(f, "--max-position-embeddings", std::to_string(positions));
  push(f, "--seq-length", std::to_string(std::min(positions, kDefaultSeqLength)));
  push(f, "--position-embedding-type", "rope");
  const double theta = r.number("rope_theta", 10000.0);
  MCORE_CHECK(theta > 0 && theta == std::floor(theta) && theta < 9.0e15)
      << r.origin() << ": \"rope_theta\": " << fmt_double(theta)
      << " is not supported (mcore's --rotary-base takes a positive integer)";
  push(f, "--rotary-base", std::to_string(static_cast<int64_t>(theta)));
  if (r.has("rope_scaling")) {
    const json& s = j.at("rope_scaling");
    MCORE_CHECK(s.is_object()) << r.origin() << ": \"rope_scaling\" must be an object or null";
    const ConfigReader sr(s, r.origin() + " rope_scaling");
    const std::string type = sr.string("rope_type", sr.string("type", ""));
    MCORE_CHECK(type == "llama3" && arch == HFArchitecture::kLlama)
        << r.origin() << ": \"rope_scaling\" of type \"" << type << "\" is not supported"
        << (arch == HFArchitecture::kLlama ? "" : " for this architecture")
        << " (supported: null, or {\"rope_type\": \"llama3\"} for LlamaForCausalLM)";
    // pretrain_gpt's flags carry the factor only; the other three are Megatron's fixed values.
    const TransformerConfig defaults;
    for (auto [key, want] :
         {std::pair<const char*, double>{"low_freq_factor", defaults.rope_scaling_low_freq_factor},
          {"high_freq_factor", defaults.rope_scaling_high_freq_factor},
          {"original_max_position_embeddings",
           static_cast<double>(defaults.rope_scaling_original_max_position_embeddings)}}) {
      MCORE_CHECK(sr.number(key, want) == want)
          << r.origin() << ": rope_scaling \"" << key << "\": " << fmt_double(sr.number(key, want))
          << " is not supported (mcore's llama3 scaling uses " << fmt_double(want) << ")";
    }
    f.push_back("--use-rope-scaling");
    push(f, "--rope-scaling-factor", fmt_double(sr.number("factor", 8.0)));
  }
  push(f, "--normalization", "RMSNorm");
  push(f, "--norm-epsilon", fmt_double(r.number("rms_norm_eps", 1e-6)));
  const std::string act = r.string("hidden_act", "silu");
  MCORE_CHECK(act == "silu") << r.origin() << ": \"hidden_act\": \"" << act
                             << "\" is not supported (supported: silu, i.e. SwiGLU)";
  f.push_back("--swiglu");
  // Biases: none (LLaMA, Mistral), on q/k/v only (Qwen2), or on every linear layer (LLaMA with
  // attention_bias and mlp_bias) - the three layouts mcore's linear layers have.
  const bool attention_bias = arch == HFArchitecture::kLlama && r.boolean("attention_bias", false);
  const bool mlp_bias = arch == HFArchitecture::kLlama && r.boolean("mlp_bias", false);
  MCORE_CHECK(attention_bias == mlp_bias)
      << r.origin() << ": \"attention_bias\": " << (attention_bias ? "true" : "false")
      << " with \"mlp_bias\": " << (mlp_bias ? "true" : "false")
      << " is not supported (mcore has biases on all linear layers, on q/k/v only, or "
      << "none)";
  if (!attention_bias) f.push_back("--disable-bias-linear");
  if (arch == HFArchitecture::kQwen2) f.push_back("--add-qkv-bias");
  if (arch == HFArchitecture::kQwen2 && r.boolean("use_sliding_window", false)) {
    MCORE_FAIL() << r.origin() << ": \"use_sliding_window\": true is not supported (mcore's "
                 << "attention is causal over the whole sequence)";
  }
  const bool mistral_attention =
      arch == HFArchitecture::kMistral || arch == HFArchitecture::kMixtral;
  if (mistral_attention && r.has("sliding_window") && r.integer("sliding_window") < positions) {
    out.warnings.push_back("sliding_window " + std::to_string(r.integer("sliding_window")) +
                           " is not modelled: mcore attends causally over the whole sequence, "
                           "which equals Mistral's attention for sequences up to " +
                           std::to_string(r.integer("sliding_window")) + " tokens");
  }
  if (!r.boolean("tie_word_embeddings", false))
    f.push_back("--untie-embeddings-and-output-weights");
  push(f, "--hidden-dropout", "0");
  push(f, "--attention-dropout", fmt_double(r.number("attention_dropout", 0.0)));
  push(f, "--init-method-std", fmt_double(r.number("initializer_range", 0.02)));
}

bool is_gelu(ActivationFunc f) {
  return f == ActivationFunc::kGelu || f == ActivationFunc::kGeluTanh;
}

}  // namespace

const char* architecture_name(HFArchitecture a) {
  switch (a) {
    case HFArchitecture::kGPT2:
      return "GPT2LMHeadModel";
    case HFArchitecture::kLlama:
      return "LlamaForCausalLM";
    case HFArchitecture::kMistral:
      return "MistralForCausalLM";
    case HFArchitecture::kQwen2:
      return "Qwen2ForCausalLM";
    case HFArchitecture::kMixtral:
      return "MixtralForCausalLM";
  }
  return "?";
}

std::string supported_architectures() {
  std::string s;
  for (HFArchitecture a : kAllArchitectures)
    s += std::string(s.empty() ? "" : ", ") + architecture_name(a);
  return s;
}

HFArchitecture architecture_from_name(const std::string& name) {
  for (HFArchitecture a : kAllArchitectures) {
    if (name == architecture_name(a)) return a;
  }
  MCORE_FAIL() << "unsupported Hugging Face architecture \"" << name
               << "\"; supported: " << supported_architectures();
  return HFArchitecture::kLlama;  // not reached: MCORE_FAIL throws
}

ImportedConfig import_hf_config(const json& config, const std::string& origin) {
  MCORE_CHECK(config.is_object()) << origin << ": expected a JSON object";
  const ConfigReader r(config, origin);
  ImportedConfig out;
  out.architecture = read_architecture(r, config);
  out.vocab_size = r.integer("vocab_size");
  // Kept as written (eos may be a list, as Llama-3.1's): the export writes them back verbatim.
  for (const char* key : kSpecialTokenKeys) {
    if (!r.has(key)) continue;
    const json& v = config.at(key);
    const bool ok = v.is_number_integer() ||
                    (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& x) {
                       return x.is_number_integer();
                     }));
    MCORE_CHECK(ok) << origin << ": field \"" << key
                    << "\" must be a token id or a list of them, got " << v.dump();
    out.special_tokens[key] = v;
  }
  if (out.architecture == HFArchitecture::kGPT2) {
    import_gpt2(r, out);
  } else {
    import_llama(r, config, out.architecture, out);
  }
  return out;
}

HFArchitecture infer_architecture(const TransformerConfig& c, bool tie_word_embeddings,
                                  const std::string& requested) {
  (void)tie_word_embeddings;  // every supported architecture has both forms
  auto fail_unless = [](bool ok, const std::string& what) {
    MCORE_CHECK(ok) << "this checkpoint cannot be written as a Hugging Face model: " << what;
  };
  fail_unless(!c.qk_layernorm, "it has QK layernorm (--qk-layernorm)");
  fail_unless(!c.layernorm_zero_centered_gamma,
              "it has zero-centered norm weights (--apply-layernorm-1p)");
  fail_unless(!c.apply_residual_connection_post_layernorm,
              "its residual connections start after the norm "
              "(--apply-residual-connection-post-layernorm)");
  HFArchitecture arch;
  if (c.position_embedding_type == "learned_absolute") {
    fail_unless(c.normalization == "LayerNorm" && !c.gated_linear_unit &&
                    is_gelu(c.activation_func) && c.add_bias_linear &&
                    c.num_query_groups == c.num_attention_heads &&
                    c.kv_channels * c.num_attention_heads == c.hidden_size,
                "learned positions make it GPT-2, which needs LayerNorm, a GeLU MLP, biases on "
                "every linear layer and multi-head attention with hidden / heads channels");
    fail_unless(c.num_moe_experts == 0,
                "it has experts (--num-experts) and learned positions: GPT-2 has no "
                "mixture-of-experts form, and the one supported MoE export, "
                "MixtralForCausalLM, needs RoPE, RMSNorm and SwiGLU experts without biases");
    arch = HFArchitecture::kGPT2;
  } else {
    fail_unless(c.position_embedding_type == "rope",
                "position embedding type \"" + c.position_embedding_type +
                    "\" (supported: learned_absolute for GPT-2, rope for the LLaMA family)");
    fail_unless(c.normalization == "RMSNorm" && c.gated_linear_unit &&
                    c.activation_func == ActivationFunc::kSilu,
                "RoPE models map to the LLaMA family, which needs RMSNorm and SwiGLU (--swiglu)");
    fail_unless(c.rotary_percent == 1.0 && !c.rotary_interleaved,
                "RoPE over part of the head (--rotary-percent) or interleaved "
                "(--rotary-interleaved) has no LLaMA-family equivalent");
    const bool qkv_only = c.add_qkv_bias && !c.add_bias_linear;
    arch = qkv_only ? HFArchitecture::kQwen2 : HFArchitecture::kLlama;
    // transformers 4.40.2, the version these conversions are tested against, reads neither
    // LlamaConfig's "mlp_bias" nor "head_dim": it would load the first without its MLP biases,
    // silently a different model, and refuses the second. Later configs may carry both, and the
    // import takes them, but an export transformers 4.40.2 cannot load faithfully is an error.
    fail_unless(!c.add_bias_linear,
                "it has biases on every linear layer (pretrain_gpt without "
                "--disable-bias-linear); LlamaForCausalLM in transformers 4.40.2 (the version "
                "mcore's conversions are tested against) has no \"mlp_bias\" and would load it "
                "without its MLP biases. Supported RoPE layouts: no biases "
                "(--disable-bias-linear), or biases on q/k/v only (--disable-bias-linear "
                "--add-qkv-bias, Qwen2ForCausalLM)");
    fail_unless(c.kv_channels * c.num_attention_heads == c.hidden_size,
                "its heads have " + std::to_string(c.kv_channels) + " channels (--kv-channels) x " +
                    std::to_string(c.num_attention_heads) + " heads != hidden size " +
                    std::to_string(c.hidden_size) +
                    "; the LLaMA family in transformers 4.40.2 (the version mcore's conversions "
                    "are tested against) ignores \"head_dim\" and needs heads x head dim = "
                    "hidden size");
    fail_unless(!(qkv_only && c.rope_scaling),
                "Qwen2 (a bias on q/k/v only) has no llama3 rope scaling");
    if (c.num_moe_experts > 0) {
      // Mixtral's router: softmax over all experts, top-k, renormalized over the k - mcore's
      // default top-k softmax, unscaled.
      fail_unless(!qkv_only, "it has experts and a bias on q/k/v (Qwen2-MoE is not supported)");
      fail_unless(c.moe_shared_expert_intermediate_size == 0,
                  "it has a shared expert (--moe-shared-expert-intermediate-size), which "
                  "MixtralForCausalLM lacks (Qwen2-MoE is not supported)");
      fail_unless(!c.rope_scaling, "it has experts and llama3 rope scaling, which Mixtral lacks");
      fail_unless(!c.moe_router_pre_softmax,
                  "its router uses the softmax over all experts without renormalizing the top-k "
                  "(--moe-router-pre-softmax); Mixtral renormalizes them");
      fail_unless(c.moe_router_topk_scaling_factor == 1.0,
                  "its routing probabilities are scaled (--moe-router-topk-scaling-factor); "
                  "Mixtral's are not");
      arch = HFArchitecture::kMixtral;
    }
  }
  if (requested.empty()) return arch;
  const HFArchitecture want = architecture_from_name(requested);
  if (want == arch) return want;
  MCORE_CHECK(arch != HFArchitecture::kMixtral && want != HFArchitecture::kMixtral)
      << "--hf-architecture " << requested << " does not fit this checkpoint's model, which "
      << (arch == HFArchitecture::kMixtral ? "has experts: MixtralForCausalLM"
                                           : "has no experts, which MixtralForCausalLM needs");
  // Mistral is LLaMA's layout (without sliding window): the same model, another class.
  const bool plain_llama = arch == HFArchitecture::kLlama && !c.add_bias_linear && !c.rope_scaling;
  MCORE_CHECK(want == HFArchitecture::kMistral && plain_llama)
      << "--hf-architecture " << requested << " does not fit this checkpoint's model, which is a "
      << architecture_name(arch) << (plain_llama ? " (or MistralForCausalLM)" : "");
  return want;
}

json export_hf_config(const HFModel& m, const training::Arguments& args, DType dtype) {
  const TransformerConfig& c = m.config;
  json j;
  j["architectures"] = {architecture_name(m.architecture)};
  j["vocab_size"] = m.vocab_size;
  j["initializer_range"] = c.init_method_std;
  j["tie_word_embeddings"] = m.tie_word_embeddings;
  j["torch_dtype"] = dtype == DType::BF16  ? "bfloat16"
                     : dtype == DType::F16 ? "float16"
                                           : "float32";
  j["use_cache"] = true;
  for (const auto& [key, id] : m.special_tokens.items()) j[key] = id;
  if (m.architecture == HFArchitecture::kGPT2) {
    j["model_type"] = "gpt2";
    j["n_embd"] = c.hidden_size;
    j["n_layer"] = c.num_layers;
    j["n_head"] = c.num_attention_heads;
    j["n_inner"] = c.ffn_hidden_size;
    j["n_positions"] = m.max_position_embeddings;
    j["n_ctx"] = m.max_position_embeddings;
    j["activation_function"] = c.activation_func == ActivationFunc::kGeluTanh ? "gelu_new" : "gelu";
    j["layer_norm_epsilon"] = c.layernorm_epsilon;
    j["resid_pdrop"] = args.hidden_dropout;
    j["embd_pdrop"] = args.hidden_dropout;
    j["attn_pdrop"] = args.attention_dropout;
    j["scale_attn_weights"] = true;
    return j;
  }
  j["model_type"] = m.architecture == HFArchitecture::kQwen2     ? "qwen2"
                    : m.architecture == HFArchitecture::kMistral ? "mistral"
                    : m.architecture == HFArchitecture::kMixtral ? "mixtral"
                                                                 : "llama";
  j["hidden_size"] = c.hidden_size;
  // Every layer of a model with experts is a MoE layer: the dense size is unused.
  j["intermediate_size"] =
      m.architecture == HFArchitecture::kMixtral ? c.moe_ffn_hidden_size : c.ffn_hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_query_groups;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = m.max_position_embeddings;
  j["rms_norm_eps"] = c.layernorm_epsilon;
  j["rope_theta"] = c.rotary_base;
  j["attention_dropout"] = args.attention_dropout;
  j["rope_scaling"] = nullptr;
  if (c.rope_scaling) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling_factor},
        {"low_freq_factor", c.rope_scaling_low_freq_factor},
        {"high_freq_factor", c.rope_scaling_high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling_original_max_position_embeddings}};
  }
  if (m.architecture == HFArchitecture::kLlama) {
    j["head_dim"] = c.kv_channels;
    j["attention_bias"] = c.add_bias_linear;
    j["mlp_bias"] = c.add_bias_linear;
  } else if (m.architecture == HFArchitecture::kMistral) {
    j["head_dim"] = c.kv_channels;
    j["sliding_window"] = nullptr;
  } else if (m.architecture == HFArchitecture::kMixtral) {
    j["head_dim"] = c.kv_channels;
    j["sliding_window"] = nullptr;
    j["num_local_experts"] = c.num_moe_experts;
    j["num_experts_per_tok"] = c.moe_router_topk;
    // The coefficient the model trained with (0: no load-balancing loss). output_router_logits
    // is transformers' switch for adding that loss in training, left at its default.
    j["router_aux_loss_coef"] =
        c.moe_router_load_balancing_type == "aux_loss" ? c.moe_aux_loss_coeff : 0.0;
    j["output_router_logits"] = false;
    j["router_jitter_noise"] = 0.0;
  } else {
    j["use_sliding_window"] = false;
  }
  return j;
}

}  // namespace mcore::hf_checkpoint
