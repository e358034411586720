// ModuleSpec: Megatron Core's way of composing layers (transformer/spec_utils.py). A layer is
// described by *which class fills each slot* - input_layernorm, self_attention (itself made of
// linear_qkv, core_attention, linear_proj, q/k_layernorm), pre_mlp_layernorm, mlp (linear_fc1,
// linear_fc2) - so research code swaps a slot instead of forking our classes:
//
//   auto spec = get_gpt_layer_local_spec();                       // TransformerLayerSpec
//   spec.submodules.mlp.module = module_class<MyMlp>();           // my class in the mlp slot
//   spec.submodules.self_attention.submodules.core_attention = {module_class<MyAttn>()};
//
// A spec is ModuleSpec<Fn, Args, Submodules>: `module` builds the slot's module from the build
// arguments (sizes, config, the global parameter-name prefix that keys its Philox init, the
// tensor-parallel group) and the spec's own `submodules`. The built Slot keeps the module
// (registered under the slot name, so parameters get Megatron's state-dict names) and its
// forward as a std::function, so any nn::Module subclass with a matching `forward` fits - no
// common base class is imposed. An empty `module` leaves the slot empty (Megatron's IdentityOp).
//
// Slot signatures (activations are Megatron's [s, b, h]):
//   norm            Tensor(x)                                -> Tensor
//   linear          LinearOutput(x)                          -> {output, output_bias}
//   core_attention  Tensor(q, k, v, attention_mask)         q [s,b,np,hn], k/v [s,b,ng,hn]
//                                                            -> context [s, b, np*hn]
//   self_attention  LinearOutput(hidden, AttentionInputs)    -> {output, output_bias}
//   mlp             LinearOutput(hidden)                     -> {output, output_bias}
//   layer           Tensor(hidden, AttentionInputs)          -> hidden
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

#include "mcore/comm/process_group.h"
#include "mcore/nn/module.h"
#include "mcore/tensor_parallel/layers.h"
#include "mcore/transformer/transformer_config.h"

namespace mcore::inference {
class InferenceContext;  // mcore/inference/inference_context.h
}  // namespace mcore::inference

namespace mcore::transformer {

using comm::ProcessGroupPtr;
using tensor_parallel::LinearOutput;

// A built slot: the module and its type-erased forward.
template <class Fn>
struct Slot {
  std::shared_ptr<nn::Module> module;
  std::function<Fn> forward;
  explicit operator bool() const { return static_cast<bool>(forward); }
};

struct NoSubmodules {};

template <class Fn, class Args, class Submodules = NoSubmodules>
struct ModuleSpec {
  using Builder = std::function<Slot<Fn>(const Args&, const Submodules&)>;
  Builder module;  // which class fills the slot; empty: the slot stays empty (IdentityOp)
  Submodules submodules{};

  explicit operator bool() const { return static_cast<bool>(module); }
  // The built slot, or an empty Slot when `module` is empty.
  Slot<Fn> build(const Args& args) const { return module ? module(args, submodules) : Slot<Fn>{}; }
};

// Megatron's AttnMaskType.
enum class AttnMaskType { kNoMask, kPadding, kCausal, kPaddingCausal };

// What every slot's constructor gets.
struct SlotArgs {
  const TransformerConfig* config = nullptr;  // finalized; outlives the module
  // Global dotted name of the module being built ("decoder.layers.3.mlp.linear_fc1"):
  // parameters draw their init from Philox streams keyed by their full names, so a layer
  // starts from the same weights whatever pipeline stage or rank builds it.
  std::string prefix;
  ProcessGroupPtr tp_group;  // null: parallel_state's tensor-model-parallel group
  int64_t layer_number = 1;  // 1-based global layer number (Megatron's layer_number)
  // Stable name for the init stream of parameter `name` of this module.
  std::string param_name(const std::string& name) const {
    return prefix.empty() ? name : prefix + "." + name;
  }
};

struct NormArgs : SlotArgs {
  int64_t hidden_size = 0;
  double eps = 1e-5;
};

struct LinearArgs : SlotArgs {
  int64_t input_size = 0;
  int64_t output_size = 0;  // full (global) sizes
  bool bias = true;
  bool skip_bias_add = false;
  bool gather_output = false;     // column-parallel slots
  bool input_is_parallel = true;  // row-parallel slots
  double init_std = 0.02;         // init_method or output_layer_init_method
  int partition_stride = 1;       // 2 for a fused [gate; up] fc1
};

struct CoreAttentionArgs : SlotArgs {
  AttnMaskType attn_mask_type = AttnMaskType::kCausal;
};

// Extra inputs an attention (and the layer around it) needs besides the hidden states.
struct AttentionInputs {
  // Optional bool mask, TRUE = masked out (Megatron's convention): [b, sk] key padding or
  // 4-D broadcastable to [b, np, sq, sk].
  Tensor attention_mask;
  // Rotary angles [s, 1, 1, rot_dim] (undefined without RoPE) and YaRN's attention scale.
  Tensor rotary_pos_emb;
  double rotary_mscale = 1.0;
  // Text generation: the KV caches and how many tokens they hold (null in training). The
  // rotary angles above then already start at that offset.
  inference::InferenceContext* inference_context = nullptr;
};

using NormFn = Tensor(const Tensor&);
using LinearFn = LinearOutput(const Tensor&);
using CoreAttentionFn = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&);
using AttentionFn = LinearOutput(const Tensor&, const AttentionInputs&);
using MLPFn = LinearOutput(const Tensor&);
using TransformerLayerFn = Tensor(const Tensor&, const AttentionInputs&);

using NormSpec = ModuleSpec<NormFn, NormArgs>;
using LinearSpec = ModuleSpec<LinearFn, LinearArgs>;
using CoreAttentionSpec = ModuleSpec<CoreAttentionFn, CoreAttentionArgs>;

struct SelfAttentionSubmodules {
  LinearSpec linear_qkv;
  CoreAttentionSpec core_attention;
  LinearSpec linear_proj;
  NormSpec q_layernorm;  // empty: no QK-norm
  NormSpec k_layernorm;
};
struct SelfAttentionArgs : SlotArgs {
  AttnMaskType attn_mask_type = AttnMaskType::kCausal;
};
using SelfAttentionSpec = ModuleSpec<AttentionFn, SelfAttentionArgs, SelfAttentionSubmodules>;

struct MLPSubmodules {
  LinearSpec linear_fc1;
  LinearSpec linear_fc2;
};
struct MLPArgs : SlotArgs {
  int64_t input_size = 0;       // 0: config->hidden_size
  int64_t ffn_hidden_size = 0;  // 0: config->ffn_hidden_size (experts: moe_ffn_hidden_size)
};
using MLPSpec = ModuleSpec<MLPFn, MLPArgs, MLPSubmodules>;

struct TransformerLayerSubmodules {
  NormSpec input_layernorm;
  SelfAttentionSpec self_attention;
  NormSpec pre_mlp_layernorm;
  MLPSpec mlp;
};
using TransformerLayerArgs = SlotArgs;
using TransformerLayerSpec =
    ModuleSpec<TransformerLayerFn, TransformerLayerArgs, TransformerLayerSubmodules>;

// The builder for class M: std::make_shared<M>(args, submodules), or M(args) when the spec has
// no submodules. M must be an nn::Module with a forward matching Fn.
template <class M, class Fn, class Args, class Submodules>
typename ModuleSpec<Fn, Args, Submodules>::Builder module_builder() {
  return [](const Args& args, const Submodules& subs) {
    std::shared_ptr<M> m;
    if constexpr (std::is_constructible_v<M, const Args&, const Submodules&>) {
      m = std::make_shared<M>(args, subs);
    } else {
      (void)subs;
      m = std::make_shared<M>(args);
    }
    Slot<Fn> slot;
    slot.module = m;
    slot.forward = [m](auto&&... xs) { return m->forward(std::forward<decltype(xs)>(xs)...); };
    return slot;
  };
}

// `module_class<M>()` converts to whichever spec's Builder it is assigned to:
//   spec.submodules.mlp.module = module_class<MyMlp>();
template <class M>
struct module_class {
  template <class Fn, class Args, class Submodules>
  operator std::function<Slot<Fn>(const Args&, const Submodules&)>() const {  // NOLINT
    return module_builder<M, Fn, Args, Submodules>();
  }
};

// ---- the built-in slot fillers ----
// Megatron's local (non-Transformer-Engine) classes.
// LayerNorm or RMSNorm by config->normalization, zero-centred gamma by
// config->layernorm_zero_centered_gamma.
NormSpec::Builder layer_norm_builder();
LinearSpec::Builder column_parallel_linear_builder();
LinearSpec::Builder row_parallel_linear_builder();

// Megatron's get_gpt_layer_local_spec: LayerNorm/RMSNorm (config.normalization), SelfAttention
// with ColumnParallelLinear QKV, DotProductAttention, RowParallelLinear projection, optional
// QK-norm, and the MLP with ColumnParallelLinear fc1 / RowParallelLinear fc2 - or, when the
// config has num_moe_experts, a MoELayer whose experts are such MLPs (transformer/moe/).
TransformerLayerSpec get_gpt_layer_local_spec(bool qk_layernorm = false);

}  // namespace mcore::transformer
