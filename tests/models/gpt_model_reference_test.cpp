// GPTModel against a plain PyTorch implementation of the same architectures
// (tests/reference/gen_gpt_model.py): the generator's fp32 weights are loaded by Megatron
// state-dict name, and logits, the per-token loss and the gradient of every parameter (of the
// mean loss) must match the float64 reference to 1e-5 relative (max |ours - ref| / max |ref| per
// tensor). Our fp32 GEMMs, norms and softmax accumulate in fp32, giving ~1e-6 relative error on
// these sizes; a layout mistake (e.g. a wrong q/k/v interleave or gate/up order) gives O(1).
#include <gtest/gtest.h>

#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/nn/functional.h"
#include "mcore/transformer/moe/moe_utils.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using models::GPTModel;
using testing::load_ref;
using testing::max_rel_error;

struct Variant {
  std::string group;
  std::string preset;
  transformer::TransformerConfig config;
  int64_t vocab;
  int64_t max_pos;
  bool tied;
};

Variant make_variant(const std::string& name) {
  Variant v;
  v.group = "gpt_ref_" + name;
  if (name == "gpt2") {
    const auto& p = models::get_preset("gpt2-tiny");
    v.config = p.config;
    v.config.ffn_hidden_size = 256;
    v.vocab = 211;
    v.max_pos = 64;
    v.tied = true;
  } else {
    const char* preset = name == "llama"  ? "llama3-tiny"
                         : name == "qwen" ? "qwen2.5-tiny"
                         : name == "mixtral" || name == "moe_shared"
                             ? "mixtral-tiny"
                             : "mistral-tiny";  // mistral_qknorm: MQA, rope 1e4
    v.config = models::get_preset(preset).config;
    v.config.qk_layernorm = name == "mistral_qknorm";
    if (name == "mixtral" || name == "moe_shared") {
      v.config.moe_aux_loss_coeff = 0.01;
      v.config.moe_z_loss_coeff = 0.001;  // as gen_gpt_model.py
    }
    if (name == "moe_shared") v.config.moe_shared_expert_intermediate_size = 80;
    v.vocab = 256;
    v.max_pos = 64;
    v.tied = false;
  }
  v.config.hidden_dropout = 0.0;
  v.config.attention_dropout = 0.0;
  return v;
}

void check_against_reference(const std::string& name, const std::string& recompute = "") {
  if (!testing::has_ref("gpt_ref_" + name, "logits")) GTEST_SKIP() << "no reference data";
  Variant v = make_variant(name);
  if (recompute == "selective") {
    v.config.recompute_granularity = "selective";
  } else if (!recompute.empty()) {
    v.config.recompute_granularity = "full";
    v.config.recompute_method = recompute;
    v.config.recompute_num_layers = 1;
  }
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = v.tied;
  o.tp_group = comm::make_local_group();
  GPTModel model(v.config, transformer::get_gpt_layer_local_spec(v.config.qk_layernorm), v.vocab,
                 v.max_pos, o);

  nn::StateDict sd;
  for (auto& [pname, p] : model.named_parameters()) sd[pname] = load_ref(v.group, "w." + pname);
  model.load_state_dict(sd);  // strict: every Megatron name must exist both ways

  Tensor ids = load_ref(v.group, "input_ids"), labels = load_ref(v.group, "labels");
  {
    NoGradGuard no_grad;
    Tensor logits = model.forward(ids);
    EXPECT_LT(max_rel_error(logits, load_ref(v.group, "logits")), 1e-5) << "logits";
  }
  transformer::moe::set_aux_loss_backward_scale(1.0);  // the aux loss enters as it is
  Tensor loss = model.forward(ids, Tensor(), Tensor(), labels);
  EXPECT_LT(max_rel_error(loss, load_ref(v.group, "loss")), 1e-5) << "loss";
  F::mean(loss).backward();
  for (auto& [pname, p] : model.named_parameters()) {
    SCOPED_TRACE(pname);
    ASSERT_TRUE(p->grad().defined());
    EXPECT_LT(max_rel_error(p->grad(), load_ref(v.group, "g." + pname)), 1e-5);
  }
}

TEST(GPTModelReference, Gpt2StyleMatchesPyTorch) {
  check_against_reference("gpt2");
}
TEST(GPTModelReference, LlamaStyleMatchesPyTorch) {
  check_against_reference("llama");
}
TEST(GPTModelReference, QwenStyleMatchesPyTorch) {
  check_against_reference("qwen");
}
// Multi-query attention (one kv head) with QK-norm weights loaded by Megatron's names.
TEST(GPTModelReference, MistralStyleMqaWithQkNormMatchesPyTorch) {
  check_against_reference("mistral_qknorm");
}
// Mixture of experts: top-2 routing over 4 SwiGLU experts per layer, the router's weights and
// every expert's gradients (through the routing probabilities and the load-balancing loss).
TEST(GPTModelReference, MixtralStyleMoeMatchesPyTorch) {
  check_against_reference("mixtral");
}
TEST(GPTModelReference, SharedExpertMoeMatchesPyTorch) {
  check_against_reference("moe_shared");
}
TEST(GPTModelReference, MixtralFullRecomputeMatchesPyTorch) {
  check_against_reference("mixtral", "uniform");
}
// Recompute replays the same forward: the same values and gradients as the reference.
TEST(GPTModelReference, LlamaFullUniformRecomputeMatchesPyTorch) {
  check_against_reference("llama", "uniform");
}
TEST(GPTModelReference, Gpt2FullBlockRecomputeMatchesPyTorch) {
  check_against_reference("gpt2", "block");
}
TEST(GPTModelReference, QwenSelectiveRecomputeMatchesPyTorch) {
  check_against_reference("qwen", "selective");
}

}  // namespace
}  // namespace mcore
