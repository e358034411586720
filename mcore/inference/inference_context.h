// InferenceContext and KVCache: what text generation threads through GPTModel::forward so each
// new token attends to the keys and values of the tokens before it without recomputing them
// (Megatron Core's StaticInferenceContext, inference/contexts/static_context.py).
//
// One KVCache per transformer layer holds that layer's rotated keys and values in a buffer
// [max_sequence_length, b, ng, hn] allocated on first use (from the first keys' batch, groups,
// head size and dtype). A forward pass with a context
//   1. reads sequence_len_offset() = how many tokens the cache already holds,
//   2. embeds its s new tokens at positions offset .. offset + s - 1 (learned positions and
//      RoPE angles alike),
//   3. in every layer appends the s new keys/values and attends over all offset + s of them
//      (causal, bottom-right aligned: new token i sees cached tokens and new tokens <= i),
// and the caller then advances the offset by s (increment_sequence_len_offset), as Megatron's
// generation loop does. Prefill is one forward over the prompt; decoding is one token a step.
// Inference only: run under NoGradGuard with the model in eval mode.
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "mcore/tensor/tensor.h"

namespace mcore::inference {

class KVCache {
 public:
  KVCache(int64_t max_sequence_length, int64_t batch_size, int64_t num_groups, int64_t head_dim,
          DType dtype, Device device = Device::cpu());

  // Writes key/value [s, b, ng, hn] at rows [offset, offset + s) and returns the views of rows
  // [0, offset + s) - the keys/values attention needs. Errors past max_sequence_length or on a
  // shape that does not match the buffer.
  std::pair<Tensor, Tensor> update(const Tensor& key, const Tensor& value, int64_t offset);

  int64_t max_sequence_length() const { return key_.size(0); }
  const Tensor& key() const { return key_; }
  const Tensor& value() const { return value_; }

 private:
  Tensor key_, value_;  // [max_sequence_length, b, ng, hn]
};

class InferenceContext {
 public:
  // max_sequence_length: the most tokens (prompt + generated) any sequence will hold.
  InferenceContext(int64_t max_sequence_length, int64_t max_batch_size);

  int64_t max_sequence_length() const { return max_sequence_length_; }
  int64_t max_batch_size() const { return max_batch_size_; }
  int64_t sequence_len_offset() const { return sequence_len_offset_; }
  void increment_sequence_len_offset(int64_t n);

  // The cache of 1-based layer `layer_number`, created on the first call from the shapes of the
  // first keys it will hold: key [s, b, ng, hn].
  KVCache& cache_for_layer(int64_t layer_number, const Tensor& key);
  bool has_cache(int64_t layer_number) const { return caches_.count(layer_number) > 0; }

  // Forgets every cached token (a new prompt); keeps the buffers.
  void reset() { sequence_len_offset_ = 0; }

 private:
  int64_t max_sequence_length_, max_batch_size_;
  int64_t sequence_len_offset_ = 0;
  std::map<int64_t, KVCache> caches_;
};

}  // namespace mcore::inference
