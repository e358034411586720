#include "mcore/hf_checkpoint/hf_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "mcore/base/error.h"
#include "mcore/tensor/factory.h"

namespace mcore::hf_checkpoint {
namespace {

using transformer::TransformerConfig;

// Sizes of the fused QKV layout.
struct QkvShape {
  int64_t groups, per_group, head_dim, hidden;
  int64_t q_rows() const { return groups * per_group * head_dim; }
  int64_t kv_rows() const { return groups * head_dim; }
  int64_t fused_rows() const { return q_rows() + 2 * kv_rows(); }
};

QkvShape qkv_shape(const TransformerConfig& c) {
  return {c.num_query_groups, c.num_attention_heads / c.num_query_groups, c.kv_channels,
          c.hidden_size};
}

// A tensor of `like`'s trailing shape with `rows` rows along dim 0.
Shape with_rows(const Tensor& like, int64_t rows) {
  Shape s = like.shape();
  s[0] = rows;
  return s;
}

// [q; k; v] (weights [rows, h] or biases [rows]) into Megatron's per-group interleave.
Tensor fuse_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const QkvShape& s) {
  Tensor out = empty(with_rows(q, s.fused_rows()), q.dtype());
  const int64_t qg = s.per_group * s.head_dim, d = s.head_dim;
  for (int64_t g = 0; g < s.groups; ++g) {
    const int64_t base = g * (qg + 2 * d);
    out.narrow(0, base, qg).copy_(q.narrow(0, g * qg, qg));
    out.narrow(0, base + qg, d).copy_(k.narrow(0, g * d, d));
    out.narrow(0, base + qg + d, d).copy_(v.narrow(0, g * d, d));
  }
  return out;
}

// The inverse: q, k, v (contiguous) from the fused tensor.
std::vector<Tensor> split_qkv(const Tensor& fused, const QkvShape& s) {
  MCORE_CHECK(fused.size(0) == s.fused_rows())
      << "linear_qkv has " << fused.size(0) << " rows, expected " << s.fused_rows();
  Tensor q = empty(with_rows(fused, s.q_rows()), fused.dtype());
  Tensor k = empty(with_rows(fused, s.kv_rows()), fused.dtype());
  Tensor v = empty(with_rows(fused, s.kv_rows()), fused.dtype());
  const int64_t qg = s.per_group * s.head_dim, d = s.head_dim;
  for (int64_t g = 0; g < s.groups; ++g) {
    const int64_t base = g * (qg + 2 * d);
    q.narrow(0, g * qg, qg).copy_(fused.narrow(0, base, qg));
    k.narrow(0, g * d, d).copy_(fused.narrow(0, base + qg, d));
    v.narrow(0, g * d, d).copy_(fused.narrow(0, base + qg + d, d));
  }
  return {q, k, v};
}

Tensor transposed(const Tensor& t) {
  return t.transpose(0, 1).contiguous();
}

// Reads Hugging Face tensors by name, checking shapes and remembering which were used.
class Reader {
 public:
  Reader(const HFWeightFiles& files, std::string prefix, std::string arch)
      : files_(files), prefix_(std::move(prefix)), arch_(std::move(arch)) {}

  // `name` under the model's prefix ("transformer." / "model." when the files use one).
  Tensor body(const std::string& name, const Shape& shape) { return take(prefix_ + name, shape); }
  Tensor take(const std::string& full, const Shape& shape) {
    MCORE_CHECK(files_.contains(full))
        << "Hugging Face model " << files_.dir() << " lacks tensor \"" << full << "\", which "
        << arch_ << " with this config.json has";
    // An integer or bool tensor would be cast to float without a word: a quantized or corrupt
    // file, never a model's weights.
    const DType dtype = files_.entry(full).dtype;
    MCORE_CHECK(dtype == DType::F64 || dtype == DType::F32 || dtype == DType::BF16 ||
                dtype == DType::F16)
        << "Hugging Face model " << files_.dir() << ": tensor \"" << full << "\" has dtype "
        << dtype_name(dtype) << "; weights must be float64, float32, bfloat16 or float16";
    const Shape& have = files_.entry(full).shape;
    MCORE_CHECK(have == shape) << "Hugging Face model " << files_.dir() << ": tensor \"" << full
                               << "\" has shape " << shape_str(have) << ", but config.json implies "
                               << shape_str(shape);
    used_.insert(full);
    return files_.load(full);
  }
  // Tensors in the files that no parameter took, other than `ignorable` ones.
  void check_all_used(bool (*ignorable)(const std::string&)) const {
    std::vector<std::string> extra;
    for (const std::string& n : files_.names()) {
      if (!used_.count(n) && !ignorable(n)) extra.push_back(n);
    }
    if (extra.empty()) return;
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 5; ++i)
      list += (i ? ", \"" : "\"") + extra[i] + "\"";
    MCORE_FAIL() << "Hugging Face model " << files_.dir() << " holds " << extra.size()
                 << " tensor(s) that " << arch_ << " with this config.json does not have: " << list
                 << (extra.size() > 5 ? ", ..." : "") << " (does config.json match the weights?)";
  }

 private:
  const HFWeightFiles& files_;
  std::string prefix_, arch_;
  std::set<std::string> used_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Buffers older checkpoints saved beside the weights; they hold no learned values. A tied
// output layer's copy is the embedding itself.
bool ignorable_tensor(const std::string& n) {
  return ends_with(n, ".attn.bias") || ends_with(n, ".attn.masked_bias") ||
         ends_with(n, "rotary_emb.inv_freq") || n == "lm_head.weight";
}
bool ignorable_untied(const std::string& n) {
  return n != "lm_head.weight" && ignorable_tensor(n);
}

// SwiGLU's fused fc1 (weight or bias): [gate; up], each of `shape`. Gate is read first, in
// sequence (function arguments have no evaluation order), so a config error names it.
Tensor read_fc1(Reader& r, const std::string& gate_name, const std::string& up_name,
                const Shape& shape) {
  const Tensor gate = r.body(gate_name, shape);
  const Tensor up = r.body(up_name, shape);
  Tensor out = empty(with_rows(gate, 2 * shape[0]), gate.dtype());
  out.narrow(0, 0, shape[0]).copy_(gate);
  out.narrow(0, shape[0], shape[0]).copy_(up);
  return out;
}

// Mixtral's per-layer experts under HF layer prefix `hf` into mcore's under `mc`.
void import_experts(const TransformerConfig& c, Reader& r, const std::string& hf,
                    const std::string& mc, std::map<std::string, Tensor>& sd) {
  const int64_t h = c.hidden_size, f = c.moe_ffn_hidden_size;
  const std::string p = hf + "block_sparse_moe.";
  sd[mc + "mlp.router.weight"] = r.body(p + "gate.weight", {c.num_moe_experts, h});
  // w1 is the gate projection and w3 the up projection: fc1 = [w1; w3].
  for (int64_t e = 0; e < c.num_moe_experts; ++e) {
    const std::string x = p + "experts." + std::to_string(e) + ".";
    const std::string y = mc + "mlp.experts.local_experts." + std::to_string(e) + ".";
    sd[y + "linear_fc1.weight"] = read_fc1(r, x + "w1.weight", x + "w3.weight", {f, h});
    sd[y + "linear_fc2.weight"] = r.body(x + "w2.weight", {h, f});
  }
}

Tensor pad_vocab(const Tensor& t, int64_t padded_rows) {
  Tensor out = zeros(with_rows(t, padded_rows), t.dtype());
  out.narrow(0, 0, t.size(0)).copy_(t);
  return out;
}

void import_gpt2(const HFModel& m, Reader& r, std::map<std::string, Tensor>& sd) {
  const TransformerConfig& c = m.config;
  const int64_t h = c.hidden_size, f = c.ffn_hidden_size;
  sd["embedding.word_embeddings.weight"] =
      pad_vocab(r.body("wte.weight", {m.vocab_size, h}), m.padded_vocab_size);
  sd["embedding.position_embeddings.weight"] = r.body("wpe.weight", {m.max_position_embeddings, h});
  const QkvShape s = qkv_shape(c);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string hf = "h." + std::to_string(i) + ".";
    const std::string mc = "decoder.layers." + std::to_string(i) + ".";
    sd[mc + "input_layernorm.weight"] = r.body(hf + "ln_1.weight", {h});
    sd[mc + "input_layernorm.bias"] = r.body(hf + "ln_1.bias", {h});
    // Conv1D: [in, out]; c_attn's output columns are [q | k | v].
    Tensor w = r.body(hf + "attn.c_attn.weight", {h, 3 * h}).transpose(0, 1);
    Tensor b = r.body(hf + "attn.c_attn.bias", {3 * h});
    sd[mc + "self_attention.linear_qkv.weight"] =
        fuse_qkv(w.narrow(0, 0, h), w.narrow(0, h, h), w.narrow(0, 2 * h, h), s);
    sd[mc + "self_attention.linear_qkv.bias"] =
        fuse_qkv(b.narrow(0, 0, h), b.narrow(0, h, h), b.narrow(0, 2 * h, h), s);
    sd[mc + "self_attention.linear_proj.weight"] =
        transposed(r.body(hf + "attn.c_proj.weight", {h, h}));
    sd[mc + "self_attention.linear_proj.bias"] = r.body(hf + "attn.c_proj.bias", {h});
    sd[mc + "pre_mlp_layernorm.weight"] = r.body(hf + "ln_2.weight", {h});
    sd[mc + "pre_mlp_layernorm.bias"] = r.body(hf + "ln_2.bias", {h});
    sd[mc + "mlp.linear_fc1.weight"] = transposed(r.body(hf + "mlp.c_fc.weight", {h, f}));
    sd[mc + "mlp.linear_fc1.bias"] = r.body(hf + "mlp.c_fc.bias", {f});
    sd[mc + "mlp.linear_fc2.weight"] = transposed(r.body(hf + "mlp.c_proj.weight", {f, h}));
    sd[mc + "mlp.linear_fc2.bias"] = r.body(hf + "mlp.c_proj.bias", {h});
  }
  sd["decoder.final_layernorm.weight"] = r.body("ln_f.weight", {h});
  sd["decoder.final_layernorm.bias"] = r.body("ln_f.bias", {h});
}

void import_llama(const HFModel& m, Reader& r, std::map<std::string, Tensor>& sd) {
  const TransformerConfig& c = m.config;
  const int64_t h = c.hidden_size, f = c.ffn_hidden_size;
  const QkvShape s = qkv_shape(c);
  const bool qkv_bias = c.add_qkv_bias || c.add_bias_linear;
  sd["embedding.word_embeddings.weight"] =
      pad_vocab(r.body("embed_tokens.weight", {m.vocab_size, h}), m.padded_vocab_size);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string hf = "layers." + std::to_string(i) + ".";
    const std::string mc = "decoder.layers." + std::to_string(i) + ".";
    const std::string a = hf + "self_attn.";
    sd[mc + "input_layernorm.weight"] = r.body(hf + "input_layernorm.weight", {h});
    sd[mc + "self_attention.linear_qkv.weight"] = fuse_qkv(
        r.body(a + "q_proj.weight", {s.q_rows(), h}), r.body(a + "k_proj.weight", {s.kv_rows(), h}),
        r.body(a + "v_proj.weight", {s.kv_rows(), h}), s);
    if (qkv_bias) {
      sd[mc + "self_attention.linear_qkv.bias"] = fuse_qkv(
          r.body(a + "q_proj.bias", {s.q_rows()}), r.body(a + "k_proj.bias", {s.kv_rows()}),
          r.body(a + "v_proj.bias", {s.kv_rows()}), s);
    }
    sd[mc + "self_attention.linear_proj.weight"] = r.body(a + "o_proj.weight", {h, s.q_rows()});
    sd[mc + "pre_mlp_layernorm.weight"] = r.body(hf + "post_attention_layernorm.weight", {h});
    if (c.num_moe_experts > 0) {  // Mixtral (no biases)
      import_experts(c, r, hf, mc, sd);
      continue;
    }
    const std::string p = hf + "mlp.";
    sd[mc + "mlp.linear_fc1.weight"] =
        read_fc1(r, p + "gate_proj.weight", p + "up_proj.weight", {f, h});
    sd[mc + "mlp.linear_fc2.weight"] = r.body(p + "down_proj.weight", {h, f});
    if (c.add_bias_linear) {
      sd[mc + "self_attention.linear_proj.bias"] = r.body(a + "o_proj.bias", {h});
      sd[mc + "mlp.linear_fc1.bias"] = read_fc1(r, p + "gate_proj.bias", p + "up_proj.bias", {f});
      sd[mc + "mlp.linear_fc2.bias"] = r.body(p + "down_proj.bias", {h});
    }
  }
  sd["decoder.final_layernorm.weight"] = r.body("norm.weight", {h});
}

// Reads GPTModel's state dict by name, erroring on a missing one.
const Tensor& get(const std::map<std::string, Tensor>& sd, const std::string& name) {
  auto it = sd.find(name);
  MCORE_CHECK(it != sd.end()) << "the checkpoint's model has no parameter \"" << name << "\"";
  return it->second;
}

void export_gpt2(const HFModel& m, const std::map<std::string, Tensor>& sd,
                 std::vector<std::pair<std::string, Tensor>>& out) {
  const TransformerConfig& c = m.config;
  const QkvShape s = qkv_shape(c);
  auto put = [&](const std::string& n, const Tensor& t) {
    out.emplace_back("transformer." + n, t.contiguous());
  };
  put("wte.weight", get(sd, "embedding.word_embeddings.weight").narrow(0, 0, m.vocab_size));
  put("wpe.weight", get(sd, "embedding.position_embeddings.weight"));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string hf = "h." + std::to_string(i) + ".";
    const std::string mc = "decoder.layers." + std::to_string(i) + ".";
    put(hf + "ln_1.weight", get(sd, mc + "input_layernorm.weight"));
    put(hf + "ln_1.bias", get(sd, mc + "input_layernorm.bias"));
    // [q; k; v] rows, transposed to Conv1D's [in, out].
    auto qkv = split_qkv(get(sd, mc + "self_attention.linear_qkv.weight"), s);
    Tensor w = empty({3 * c.hidden_size, c.hidden_size}, qkv[0].dtype());
    for (int j = 0; j < 3; ++j) w.narrow(0, j * c.hidden_size, c.hidden_size).copy_(qkv[j]);
    put(hf + "attn.c_attn.weight", transposed(w));
    auto qkv_b = split_qkv(get(sd, mc + "self_attention.linear_qkv.bias"), s);
    Tensor b = empty({3 * c.hidden_size}, qkv_b[0].dtype());
    for (int j = 0; j < 3; ++j) b.narrow(0, j * c.hidden_size, c.hidden_size).copy_(qkv_b[j]);
    put(hf + "attn.c_attn.bias", b);
    put(hf + "attn.c_proj.weight", transposed(get(sd, mc + "self_attention.linear_proj.weight")));
    put(hf + "attn.c_proj.bias", get(sd, mc + "self_attention.linear_proj.bias"));
    put(hf + "ln_2.weight", get(sd, mc + "pre_mlp_layernorm.weight"));
    put(hf + "ln_2.bias", get(sd, mc + "pre_mlp_layernorm.bias"));
    put(hf + "mlp.c_fc.weight", transposed(get(sd, mc + "mlp.linear_fc1.weight")));
    put(hf + "mlp.c_fc.bias", get(sd, mc + "mlp.linear_fc1.bias"));
    put(hf + "mlp.c_proj.weight", transposed(get(sd, mc + "mlp.linear_fc2.weight")));
    put(hf + "mlp.c_proj.bias", get(sd, mc + "mlp.linear_fc2.bias"));
  }
  put("ln_f.weight", get(sd, "decoder.final_layernorm.weight"));
  put("ln_f.bias", get(sd, "decoder.final_layernorm.bias"));
}

void export_llama(const HFModel& m, const std::map<std::string, Tensor>& sd,
                  std::vector<std::pair<std::string, Tensor>>& out) {
  const TransformerConfig& c = m.config;
  const QkvShape s = qkv_shape(c);
  const int64_t f = c.ffn_hidden_size;
  const bool qkv_bias = c.add_qkv_bias || c.add_bias_linear;
  auto put = [&](const std::string& n, const Tensor& t) {
    out.emplace_back("model." + n, t.contiguous());
  };
  put("embed_tokens.weight",
      get(sd, "embedding.word_embeddings.weight").narrow(0, 0, m.vocab_size));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string hf = "layers." + std::to_string(i) + ".";
    const std::string mc = "decoder.layers." + std::to_string(i) + ".";
    const std::string a = hf + "self_attn.", p = hf + "mlp.";
    put(hf + "input_layernorm.weight", get(sd, mc + "input_layernorm.weight"));
    auto qkv = split_qkv(get(sd, mc + "self_attention.linear_qkv.weight"), s);
    put(a + "q_proj.weight", qkv[0]);
    put(a + "k_proj.weight", qkv[1]);
    put(a + "v_proj.weight", qkv[2]);
    if (qkv_bias) {
      auto bias = split_qkv(get(sd, mc + "self_attention.linear_qkv.bias"), s);
      put(a + "q_proj.bias", bias[0]);
      put(a + "k_proj.bias", bias[1]);
      put(a + "v_proj.bias", bias[2]);
    }
    put(a + "o_proj.weight", get(sd, mc + "self_attention.linear_proj.weight"));
    put(hf + "post_attention_layernorm.weight", get(sd, mc + "pre_mlp_layernorm.weight"));
    if (c.num_moe_experts > 0) {  // Mixtral: infer_architecture refused biases
      const int64_t fe = c.moe_ffn_hidden_size;
      const std::string moe = hf + "block_sparse_moe.";
      put(moe + "gate.weight", get(sd, mc + "mlp.router.weight"));
      for (int64_t e = 0; e < c.num_moe_experts; ++e) {
        const std::string x = moe + "experts." + std::to_string(e) + ".";
        const std::string y = mc + "mlp.experts.local_experts." + std::to_string(e) + ".";
        const Tensor& efc1 = get(sd, y + "linear_fc1.weight");
        put(x + "w1.weight", efc1.narrow(0, 0, fe));   // gate
        put(x + "w3.weight", efc1.narrow(0, fe, fe));  // up
        put(x + "w2.weight", get(sd, y + "linear_fc2.weight"));
      }
      continue;
    }
    const Tensor& fc1 = get(sd, mc + "mlp.linear_fc1.weight");
    put(p + "gate_proj.weight", fc1.narrow(0, 0, f));
    put(p + "up_proj.weight", fc1.narrow(0, f, f));
    put(p + "down_proj.weight", get(sd, mc + "mlp.linear_fc2.weight"));
    if (c.add_bias_linear) {
      put(a + "o_proj.bias", get(sd, mc + "self_attention.linear_proj.bias"));
      const Tensor& fc1b = get(sd, mc + "mlp.linear_fc1.bias");
      put(p + "gate_proj.bias", fc1b.narrow(0, 0, f));
      put(p + "up_proj.bias", fc1b.narrow(0, f, f));
      put(p + "down_proj.bias", get(sd, mc + "mlp.linear_fc2.bias"));
    }
  }
  put("norm.weight", get(sd, "decoder.final_layernorm.weight"));
}

}  // namespace

std::map<std::string, Tensor> import_weights(const HFModel& m, const HFWeightFiles& files) {
  NoGradGuard no_grad;
  const bool gpt2 = m.architecture == HFArchitecture::kGPT2;
  // save_pretrained writes the body under "transformer." / "model."; checkpoints saved from the
  // base model class (GPT-2's own on the Hub) have no prefix.
  const std::string with_prefix = gpt2 ? "transformer." : "model.";
  const std::string probe = gpt2 ? "wte.weight" : "embed_tokens.weight";
  const std::string prefix = files.contains(with_prefix + probe) ? with_prefix : "";
  Reader r(files, prefix, architecture_name(m.architecture));
  std::map<std::string, Tensor> sd;
  if (gpt2) {
    import_gpt2(m, r, sd);
  } else {
    import_llama(m, r, sd);
  }
  if (!m.tie_word_embeddings) {
    sd["output_layer.weight"] = pad_vocab(
        r.take("lm_head.weight", {m.vocab_size, m.config.hidden_size}), m.padded_vocab_size);
  }
  r.check_all_used(m.tie_word_embeddings ? ignorable_tensor : ignorable_untied);
  return sd;
}

std::vector<std::pair<std::string, Tensor>> export_weights(
    const HFModel& m, const std::map<std::string, Tensor>& sd) {
  NoGradGuard no_grad;
  std::vector<std::pair<std::string, Tensor>> out;
  if (m.architecture == HFArchitecture::kGPT2) {
    export_gpt2(m, sd, out);
  } else {
    export_llama(m, sd, out);
  }
  // A tied output layer is the embedding: save_pretrained leaves it out, and so do we.
  if (!m.tie_word_embeddings)
    out.emplace_back("lm_head.weight",
                     get(sd, "output_layer.weight").narrow(0, 0, m.vocab_size).contiguous());
  return out;
}

std::vector<std::string> weight_value_warnings(const std::map<std::string, Tensor>& state,
                                               DType params_dtype) {
  NoGradGuard no_grad;
  std::vector<std::string> warnings;
  const bool narrow = params_dtype != DType::F64 && params_dtype != DType::F32;
  for (const auto& [name, t] : state) {
    // float64 holds every value of the files' dtypes exactly, and the cast back from the
    // parameter dtype shows what the model will hold.
    const Tensor x = t.to(DType::F64).contiguous();
    const Tensor y = narrow ? t.to(params_dtype).to(DType::F64).contiguous() : x;
    const double* a = x.data<double>();
    const double* b = y.data<double>();
    int64_t nonfinite = 0, overflowed = 0;
    double largest = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      if (!std::isfinite(a[i])) {
        ++nonfinite;
      } else if (!std::isfinite(b[i])) {
        ++overflowed;
        largest = std::max(largest, std::abs(a[i]));
      }
    }
    if (nonfinite) {
      warnings.push_back("parameter " + name + " holds " + std::to_string(nonfinite) +
                         " NaN or Inf value(s) in the Hugging Face weights");
    }
    if (overflowed) {
      char largest_str[32];
      std::snprintf(largest_str, sizeof largest_str, "%g", largest);
      warnings.push_back("parameter " + name + ": " + std::to_string(overflowed) +
                         " finite value(s) (largest magnitude " + largest_str + ") become Inf in " +
                         dtype_name(params_dtype) + "; convert " +
                         (params_dtype == DType::F16 ? "with --bf16 or " : "") +
                         "in float32 (no --fp16/--bf16) to keep them");
    }
  }
  return warnings;
}

}  // namespace mcore::hf_checkpoint
