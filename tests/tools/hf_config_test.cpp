// hf_checkpoint/hf_config: Hugging Face config.json fields mapped to Megatron's flags and back,
// for what the transformers 4.40 reference cannot run (llama3 rope scaling, Mixtral's sliding
// window and router jitter), and its errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "mcore/base/error.h"
#include "mcore/hf_checkpoint/checkpoint_model.h"
#include "mcore/hf_checkpoint/hf_config.h"
#include "mcore/training/arguments.h"
#include "mcore/training/training.h"

namespace mcore {
namespace {

using json = nlohmann::json;

// The error import_hf_config raises for `config`, or "no error".
std::string import_error(const json& config) {
  try {
    hf_checkpoint::import_hf_config(config, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// llama3 rope scaling (transformers >= 4.43, so not run through 4.40 above): the factor maps to
// Megatron's flags, the other three must be Megatron's fixed values, and the export writes them.
TEST(HFConfig, Llama3RopeScaling) {
  json c = {{"architectures", {"LlamaForCausalLM"}},
            {"vocab_size", 300},
            {"hidden_size", 64},
            {"intermediate_size", 128},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"max_position_embeddings", 128},
            {"rope_theta", 500000.0},
            {"rope_scaling",
             {{"rope_type", "llama3"},
              {"factor", 32.0},
              {"low_freq_factor", 1.0},
              {"high_freq_factor", 4.0},
              {"original_max_position_embeddings", 8192}}}};
  const auto ic = hf_checkpoint::import_hf_config(c, "config.json");
  const std::string flags = [&] {
    std::string s;
    for (const auto& f : ic.model_flags) s += f + " ";
    return s;
  }();
  EXPECT_NE(flags.find("--use-rope-scaling --rope-scaling-factor 32 "), std::string::npos) << flags;
  EXPECT_NE(flags.find("--rotary-base 500000 "), std::string::npos) << flags;
  EXPECT_NE(flags.find("--norm-epsilon 1e-06 "), std::string::npos) << flags;  // LlamaConfig's

  std::vector<std::string> argv = {"x"};
  argv.insert(argv.end(), ic.model_flags.begin(), ic.model_flags.end());
  training::Arguments args = training::parse_args(argv);
  hf_checkpoint::HFModel m;
  m.config = training::transformer_config_from_args(args);
  m.vocab_size = 300;
  m.max_position_embeddings = 128;
  const json out = hf_checkpoint::export_hf_config(m, args, DType::F32);
  EXPECT_EQ(out.at("rope_scaling"), c.at("rope_scaling"));
  EXPECT_EQ(out.at("rope_theta"), 500000.0);

  c["rope_scaling"]["low_freq_factor"] = 2.0;
  EXPECT_NE(import_error(c).find("\"low_freq_factor\": 2 is not supported"), std::string::npos)
      << import_error(c);
}

// Import details: the saved sequence length is capped (a 131072-position model must not make
// fine-tunes allocate 131072-token sequences), special ids are kept, and config errors name
// their fields.
TEST(HFConfig, SeqLengthSpecialTokensAndErrors) {
  json c = {{"architectures", {"LlamaForCausalLM"}},
            {"vocab_size", 300},
            {"hidden_size", 64},
            {"intermediate_size", 128},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"max_position_embeddings", 131072},
            {"bos_token_id", 1},
            {"eos_token_id", {2, 3}}};
  const auto ic = hf_checkpoint::import_hf_config(c, "config.json");
  std::string flags;
  for (const auto& f : ic.model_flags) flags += f + " ";
  EXPECT_NE(flags.find("--max-position-embeddings 131072 --seq-length 4096 "), std::string::npos)
      << flags;
  EXPECT_EQ(ic.special_tokens, json({{"bos_token_id", 1}, {"eos_token_id", {2, 3}}}));
  json bad = c;
  bad["num_attention_heads"] = 3;
  EXPECT_NE(
      import_error(bad).find("\"hidden_size\" 64 is not divisible by \"num_attention_heads\" 3"),
      std::string::npos)
      << import_error(bad);
  bad = c;
  bad["attention_bias"] = true;
  EXPECT_NE(import_error(bad).find("\"attention_bias\": true with \"mlp_bias\": false is not"),
            std::string::npos)
      << import_error(bad);
  bad = c;
  bad["eos_token_id"] = "</s>";
  EXPECT_NE(import_error(bad).find("\"eos_token_id\" must be a token id"), std::string::npos)
      << import_error(bad);
}

// Mixtral's fields: the expert flags, Mistral's sliding-window warning, jitter (training only)
// warned about, and exports that Mixtral's router could not reproduce refused.
TEST(HFConfig, MixtralFieldsAndRouterRefusals) {
  json c = {{"architectures", {"MixtralForCausalLM"}},
            {"vocab_size", 300},
            {"hidden_size", 64},
            {"intermediate_size", 96},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"max_position_embeddings", 4096},
            {"sliding_window", 1024},
            {"num_local_experts", 8},
            {"num_experts_per_tok", 2},
            {"router_jitter_noise", 0.1},
            {"output_router_logits", true}};
  const auto ic = hf_checkpoint::import_hf_config(c, "config.json");
  EXPECT_EQ(ic.architecture, hf_checkpoint::HFArchitecture::kMixtral);
  std::string flags;
  for (const auto& f : ic.model_flags) flags += f + " ";
  // router_aux_loss_coef absent: MixtralConfig's default 0.001; rope_theta's default 1e4.
  EXPECT_NE(flags.find("--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 96 "
                       "--moe-aux-loss-coeff 0.001 "),
            std::string::npos)
      << flags;
  EXPECT_NE(flags.find("--rotary-base 10000 "), std::string::npos) << flags;
  ASSERT_EQ(ic.warnings.size(), 2u);
  EXPECT_NE(ic.warnings[0].find("router_jitter_noise 0.1 is not modelled"), std::string::npos);
  EXPECT_NE(ic.warnings[1].find("sliding_window 1024 is not modelled"), std::string::npos);

  std::vector<std::string> argv = {"x"};
  argv.insert(argv.end(), ic.model_flags.begin(), ic.model_flags.end());
  training::Arguments args = training::parse_args(argv);
  const transformer::TransformerConfig config = training::transformer_config_from_args(args);
  EXPECT_EQ(hf_checkpoint::infer_architecture(config, false, ""),
            hf_checkpoint::HFArchitecture::kMixtral);
  auto refusal = [](const transformer::TransformerConfig& tc, const std::string& requested) {
    try {
      hf_checkpoint::infer_architecture(tc, false, requested);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(refusal(config, "MistralForCausalLM").find("has experts: MixtralForCausalLM"),
            std::string::npos);
  transformer::TransformerConfig pre = config;
  pre.moe_router_pre_softmax = true;
  EXPECT_NE(refusal(pre, "").find("--moe-router-pre-softmax"), std::string::npos);
  transformer::TransformerConfig with_shared = config;
  with_shared.moe_shared_expert_intermediate_size = 64;
  EXPECT_NE(refusal(with_shared, "").find("it has a shared expert"), std::string::npos);
  transformer::TransformerConfig dense = config;
  dense.num_moe_experts = 0;
  EXPECT_NE(refusal(dense, "MixtralForCausalLM").find("has no experts"), std::string::npos);
  // A GPT-2-shaped model with experts has no Hugging Face form: said up front (it used to fail
  // later on a missing dense MLP weight).
  transformer::TransformerConfig gpt2_moe = config;
  gpt2_moe.position_embedding_type = "learned_absolute";
  gpt2_moe.normalization = "LayerNorm";
  gpt2_moe.gated_linear_unit = false;
  gpt2_moe.activation_func = transformer::ActivationFunc::kGeluTanh;
  gpt2_moe.add_bias_linear = true;
  gpt2_moe.num_query_groups = gpt2_moe.num_attention_heads;
  EXPECT_NE(refusal(gpt2_moe, "").find("GPT-2 has no mixture-of-experts form"), std::string::npos)
      << refusal(gpt2_moe, "");

  hf_checkpoint::HFModel m;
  m.architecture = hf_checkpoint::HFArchitecture::kMixtral;
  m.config = config;
  m.vocab_size = 300;
  m.max_position_embeddings = 4096;
  const json out = hf_checkpoint::export_hf_config(m, args, DType::BF16);
  EXPECT_EQ(out.at("model_type"), "mixtral");
  EXPECT_EQ(out.at("num_local_experts"), 8);
  EXPECT_EQ(out.at("num_experts_per_tok"), 2);
  EXPECT_EQ(out.at("intermediate_size"), 96);
  EXPECT_EQ(out.at("router_aux_loss_coef"), 0.001);
  EXPECT_EQ(out.at("sliding_window"), nullptr);  // mcore attends over the whole sequence

  c["num_experts_per_tok"] = 1;
  EXPECT_NE(import_error(c).find("\"num_experts_per_tok\": 1 is not supported"), std::string::npos)
      << import_error(c);
  c["num_experts_per_tok"] = 9;
  EXPECT_NE(import_error(c).find("\"num_experts_per_tok\" 9 exceeds \"num_local_experts\" 8"),
            std::string::npos)
      << import_error(c);
}

}  // namespace
}  // namespace mcore
