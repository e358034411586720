#include "mcore/transformer/attention.h"

#include "mcore/autograd/checkpoint.h"
#include "mcore/inference/inference_context.h"
#include "mcore/nn/functional.h"

namespace mcore::transformer {

namespace {

template <class Fn>
Slot<Fn> require(Slot<Fn> slot, const char* name) {
  MCORE_CHECK(static_cast<bool>(slot))
      << "SelfAttention: the " << name << " slot is empty; give its spec a module";
  return slot;
}

}  // namespace

SelfAttention::SelfAttention(const SelfAttentionArgs& args, const SelfAttentionSubmodules& subs)
    : config_(args.config), layer_number_(args.layer_number) {
  const TransformerConfig& c = *config_;
  const int64_t tp = c.tensor_model_parallel_size;
  np_ = c.num_attention_heads / tp;
  ng_ = c.num_query_groups / tp;
  hn_ = c.kv_channels;

  LinearArgs qkv;
  static_cast<SlotArgs&>(qkv) = args;
  qkv.prefix = args.param_name("linear_qkv");
  qkv.input_size = c.hidden_size;
  qkv.output_size = c.query_projection_size() + 2 * c.kv_projection_size();
  qkv.bias = c.add_bias_linear || c.add_qkv_bias;
  qkv.skip_bias_add = false;
  qkv.gather_output = false;
  qkv.init_std = c.init_method_std;
  linear_qkv_ = require(subs.linear_qkv.build(qkv), "linear_qkv");
  register_module("linear_qkv", linear_qkv_.module);

  CoreAttentionArgs core;
  static_cast<SlotArgs&>(core) = args;
  core.prefix = args.param_name("core_attention");
  core.attn_mask_type = args.attn_mask_type;
  core_attention_ = require(subs.core_attention.build(core), "core_attention");
  register_module("core_attention", core_attention_.module);

  LinearArgs proj;
  static_cast<SlotArgs&>(proj) = args;
  proj.prefix = args.param_name("linear_proj");
  proj.input_size = c.query_projection_size();
  proj.output_size = c.hidden_size;
  proj.bias = c.add_bias_linear;
  proj.skip_bias_add = true;
  proj.input_is_parallel = true;
  proj.init_std = c.output_layer_init_std();
  linear_proj_ = require(subs.linear_proj.build(proj), "linear_proj");
  register_module("linear_proj", linear_proj_.module);

  if (c.qk_layernorm) {
    NormArgs n;
    static_cast<SlotArgs&>(n) = args;
    n.hidden_size = hn_;
    n.eps = c.layernorm_epsilon;
    n.prefix = args.param_name("q_layernorm");
    q_layernorm_ = require(subs.q_layernorm.build(n), "q_layernorm");
    register_module("q_layernorm", q_layernorm_.module);
    n.prefix = args.param_name("k_layernorm");
    k_layernorm_ = require(subs.k_layernorm.build(n), "k_layernorm");
    register_module("k_layernorm", k_layernorm_.module);
    // Every rank normalizes its own heads with the same weights: their grads are partial sums
    // to all-reduce over the TP group, like sequence-parallel norm weights.
    for (auto* slot : {&q_layernorm_, &k_layernorm_})
      for (auto& p : slot->module->parameters()) p->sequence_parallel = tp > 1;
  }
}

std::vector<Tensor> SelfAttention::get_query_key_value_tensors(const Tensor& hidden) const {
  Tensor mixed = linear_qkv_.forward(hidden).output;  // [s, b, ng * (np/ng + 2) * hn]
  const int64_t s = mixed.size(0), b = mixed.size(1), per_group = np_ / ng_;
  MCORE_CHECK(mixed.dim() == 3 && mixed.size(2) == ng_ * (per_group + 2) * hn_)
      << "SelfAttention: linear_qkv returned " << shape_str(mixed.shape()) << ", expected [s, b, "
      << ng_ * (per_group + 2) * hn_ << "] (ng=" << ng_ << " groups of " << per_group
      << " query heads + k + v, head size " << hn_ << ")";
  mixed = F::reshape(mixed, {s, b, ng_, (per_group + 2) * hn_});  // a view: mixed is contiguous
  std::vector<Tensor> qkv = F::split(mixed, {per_group * hn_, hn_, hn_}, 3);
  qkv[0] = F::reshape(qkv[0], {s, b, np_, hn_});  // [s, b, ng, np/ng * hn] -> [s, b, np, hn]
  return qkv;
}

LinearOutput SelfAttention::forward(const Tensor& hidden, const AttentionInputs& in) const {
  std::vector<Tensor> qkv = get_query_key_value_tensors(hidden);
  Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  if (q_layernorm_) q = q_layernorm_.forward(q);
  if (k_layernorm_) k = k_layernorm_.forward(k);
  if (in.rotary_pos_emb.defined()) {
    Tensor freqs = in.rotary_pos_emb;
    if (freqs.size(0) != q.size(0)) freqs = freqs.narrow(0, 0, q.size(0));
    q = F::apply_rotary_pos_emb(q, freqs, config_->rotary_interleaved, in.rotary_mscale);
    k = F::apply_rotary_pos_emb(k, freqs, config_->rotary_interleaved, in.rotary_mscale);
  }
  Tensor ctx;
  if (in.inference_context) {
    inference::InferenceContext& ic = *in.inference_context;
    auto [k_all, v_all] =
        ic.cache_for_layer(layer_number_, k).update(k, v, ic.sequence_len_offset());
    ctx = core_attention_.forward(q, k_all, v_all, in.attention_mask);
  } else if (config_->recompute_granularity == "selective") {
    // Megatron's _checkpointed_attention_forward: keep q, k, v; recompute the attention.
    ctx = autograd::checkpoint(
        [core = core_attention_.forward, mask = in.attention_mask](const std::vector<Tensor>& x)
            -> std::vector<Tensor> { return {core(x[0], x[1], x[2], mask)}; },
        {q, k, v})[0];
  } else {
    ctx = core_attention_.forward(q, k, v, in.attention_mask);
  }
  return linear_proj_.forward(ctx);
}

}  // namespace mcore::transformer
