// Next-token sampling from one row of logits (Megatron Core's inference sampling,
// text_generation_controllers' sample_from_logits): greedy (argmax), or temperature, then
// top-k, then top-p (nucleus) filtering, then one draw from the softmax of what is left.
//
// Draws are reproducible: the uniform for (row, step) is Philox(seed, stream = row, index =
// step), so the same seed, prompt and settings give the same text, whatever else ran before.
// Only the first `vocab_size` logits are candidates (the padded tail of a padded vocabulary is
// never sampled).
#pragma once

#include <cstdint>

namespace mcore::inference {

struct SamplingParams {
  bool greedy = false;       // argmax (also what top_k == 1 gives)
  double temperature = 1.0;  // logits / temperature before filtering; > 0
  int64_t top_k = 0;         // keep the k largest logits; 0: off
  double top_p = 0.0;        // keep the smallest set of tokens whose probability >= top_p; 0: off
  uint64_t seed = 1234;
};

// Checks the parameters (temperature > 0, top_k >= 0, 0 <= top_p <= 1), naming the bad value.
void validate(const SamplingParams& params);

// The sampled token id in [0, vocab_size). logits: vocab_size contiguous floats.
int64_t sample_token(const float* logits, int64_t vocab_size, const SamplingParams& params,
                     uint64_t row, uint64_t step);

}  // namespace mcore::inference
