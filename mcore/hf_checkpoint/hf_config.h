// Hugging Face config.json <-> mcore's model description, for checkpoint conversion
// (tools/convert_checkpoint). Importing turns a config.json into pretrain_gpt's (Megatron-LM's)
// model flags, so that the checkpoint's saved arguments rebuild exactly the model the converter
// filled, in pretrain_gpt and generate alike. Exporting writes the config.json that transformers
// reads for the model a checkpoint's arguments describe.
//
// Supported: GPT2LMHeadModel (LayerNorm, learned positions, GeLU, biases everywhere) and the
// LLaMA family - LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (RMSNorm, rotate-half
// RoPE with rope_theta and llama3 rope scaling, SwiGLU, grouped-query attention, tied or untied
// output layer; Qwen2's bias on q/k/v only) - and MixtralForCausalLM, Mistral's layers with a
// mixture-of-experts MLP (num_local_experts -> --num-experts, num_experts_per_tok ->
// --moe-router-topk, intermediate_size -> each expert's --moe-ffn-hidden-size). A field mcore
// cannot reproduce is an error naming the field, its value and what is supported; nothing is
// silently approximated.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mcore/base/dtype.h"
#include "mcore/training/arguments.h"
#include "mcore/transformer/transformer_config.h"

namespace mcore::hf_checkpoint {

enum class HFArchitecture { kGPT2, kLlama, kMistral, kQwen2, kMixtral };

// "GPT2LMHeadModel", "LlamaForCausalLM", ... and back (the latter errors listing the supported).
const char* architecture_name(HFArchitecture a);
HFArchitecture architecture_from_name(const std::string& name);
std::string supported_architectures();  // "GPT2LMHeadModel, LlamaForCausalLM, ..."

// config.json's special token ids, which transformers' generate() reads (with
// generation_config.json, written from the same values).
inline constexpr const char* kSpecialTokenKeys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};

// What both directions need to map the weights: the finalized model config and the vocabulary
// on either side (Hugging Face's rows, mcore's padded rows).
struct HFModel {
  HFArchitecture architecture = HFArchitecture::kLlama;
  transformer::TransformerConfig config;  // finalized
  int64_t vocab_size = 0;                 // Hugging Face's vocab_size: rows kept on export
  int64_t padded_vocab_size = 0;          // mcore's embedding rows (>= vocab_size)
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  nlohmann::json special_tokens = nlohmann::json::object();  // kSpecialTokenKeys present
};

// config.json read as pretrain_gpt flags: ["--num-layers", "2", "--hidden-size", "64", ...].
struct ImportedConfig {
  HFArchitecture architecture = HFArchitecture::kLlama;
  std::vector<std::string> model_flags;
  int64_t vocab_size = 0;
  nlohmann::json special_tokens = nlohmann::json::object();  // kSpecialTokenKeys present
  // Fields accepted with a caveat (e.g. Mistral's sliding window), for the user.
  std::vector<std::string> warnings;
};
// `origin` names the file in errors.
ImportedConfig import_hf_config(const nlohmann::json& config, const std::string& origin);

// The architecture the model of `config` has in transformers: GPT-2 for LayerNorm with learned
// positions, Mixtral for RoPE with experts, Qwen2 for RoPE with a q/k/v-only bias, LLaMA
// otherwise; errors name the settings no supported architecture has. `requested` (non-empty) must
// fit the model, else an error.
HFArchitecture infer_architecture(const transformer::TransformerConfig& config,
                                  bool tie_word_embeddings, const std::string& requested);

// config.json for `model`, with torch_dtype from `dtype` and the dropout and init settings from
// the arguments the checkpoint was trained with.
nlohmann::json export_hf_config(const HFModel& model, const training::Arguments& args, DType dtype);

}  // namespace mcore::hf_checkpoint
