// Named model presets with the published architectures' shapes (from each model card's
// config.json), plus tiny variants of every family for tests. The parameter count of a preset
// follows from its shapes alone (count_parameters); tools/model_info prints them and the tests
// check them against the published totals:
//
//   gpt2-124m  124,439,808    llama2-7b   6,738,415,616    qwen2.5-7b  7,615,616,512
//   gpt2-355m  354,823,168    llama2-13b 13,015,864,320    mistral-7b  7,241,732,096
//   gpt2-774m  774,030,080    llama3-8b   8,030,261,248
//   gpt2-1.5b 1,557,611,200   llama3-70b 70,553,706,496
//
// GPT-2 counts use the unpadded vocabulary (50257) and tied embeddings, as Hugging Face
// reports them; training pads the vocabulary (tensor_parallel::vocab_size_with_padding).
// Mistral-7B's sliding-window attention (4096) is not modelled: with sequences up to 4096 it
// is plain causal attention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mcore/transformer/transformer_config.h"

namespace mcore::models {

struct ModelPreset {
  std::string name;
  std::string family;                     // "gpt2", "llama2", "llama3", "qwen2.5", "mistral"
  transformer::TransformerConfig config;  // finalized
  int64_t vocab_size = 0;                 // the model card's, unpadded
  int64_t max_sequence_length = 0;
  bool share_embeddings_and_output_weights = false;
  int64_t published_parameter_count = 0;  // 0 for the tiny test variants
};

// Every preset name, real models first, then "<family>-tiny".
std::vector<std::string> preset_names();
// The preset, or an error listing the known names.
const ModelPreset& get_preset(const std::string& name);

// Parameters of a GPTModel with these shapes on one rank (no tensor/pipeline split):
// embeddings (+ learned positions), every layer's norms, QKV, projection, MLP (and biases as
// configured), the final norm, and the output layer unless tied.
int64_t count_parameters(const transformer::TransformerConfig& config, int64_t vocab_size,
                         int64_t max_sequence_length, bool share_embeddings_and_output_weights);
inline int64_t count_parameters(const ModelPreset& p) {
  return count_parameters(p.config, p.vocab_size, p.max_sequence_length,
                          p.share_embeddings_and_output_weights);
}

}  // namespace mcore::models
