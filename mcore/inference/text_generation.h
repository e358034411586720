// Autoregressive text generation with a GPTModel (Megatron Core's
// TextGenerationController / generate loop, reduced to one process):
//
//   prefill  one forward over the prompt fills every layer's KV cache and gives the logits of
//            the first new token;
//   decode   then one forward per token over just that token, at position
//            sequence_len_offset(), attending over the cache;
//   stop     at the end-of-document token (when given) or after max_new_tokens.
//
// use_kv_cache = false recomputes the whole sequence every step instead - the reference the
// cache is tested against, and the path for models whose attention cannot cache.
// The model must return the whole vocabulary: a tensor-parallel model needs
// parallel_output = false (logits gathered); under TP = 1 either setting works.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "mcore/inference/sampling.h"
#include "mcore/models/gpt/gpt_model.h"

namespace mcore::inference {

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  SamplingParams sampling;
  bool use_kv_cache = true;
  int64_t eod = -1;         // stop after sampling this token; -1: never
  int64_t vocab_size = -1;  // the tokenizer's (unpadded) vocabulary; -1: the model's
  // Called with each new token as soon as it is chosen (streaming output); may be empty.
  std::function<void(int64_t token)> on_token;
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // the generated tokens (the eod token included if hit)
  bool stopped_on_eod = false;
  int64_t prompt_length = 0;
};

// Generates from `prompt` (token ids, at least one). Puts the model in eval mode and runs
// without autograd. The sequence (prompt + new tokens) must fit the model's position range for
// learned absolute positions.
GenerationResult generate(models::GPTModel& model, const std::vector<int64_t>& prompt,
                          const GenerationOptions& options, int64_t max_sequence_length);

}  // namespace mcore::inference
