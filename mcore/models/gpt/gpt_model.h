// GPTModel (Megatron's models/gpt/gpt_model.py): the decoder-only language model behind GPT,
// LLaMA, Qwen and Mistral, selected by TransformerConfig and the layer spec.
//
//   embedding      LanguageModelEmbedding (vocab-parallel words + learned positions) - first
//                  pipeline stage only (pre_process)
//   rotary_pos_emb angles for position_embedding_type "rope" / "yarn" (no parameters)
//   decoder        TransformerBlock over this stage's layers (+ final norm on the last stage)
//   output_layer   ColumnParallelLinear to the vocabulary shard - last stage only
//                  (post_process); with share_embeddings_and_output_weights it multiplies by
//                  the word embedding instead of owning a weight (a last stage without the
//                  embedding keeps its own copy, initialized from the same Philox stream as
//                  the embedding, so it starts equal to it without communication)
//   loss           vocab_parallel_cross_entropy, never gathering the [s, b, V] logits.
//
// State-dict names are Megatron's: embedding.word_embeddings.weight,
// embedding.position_embeddings.weight, decoder.layers.{i}.…, decoder.final_layernorm.*,
// output_layer.weight.
#pragma once

#include <memory>
#include <optional>

#include "mcore/models/common/language_model_embedding.h"
#include "mcore/models/common/rotary_pos_embedding.h"
#include "mcore/nn/module.h"
#include "mcore/transformer/spec.h"
#include "mcore/transformer/transformer_block.h"

namespace mcore::models {

struct GPTModelOptions {
  bool pre_process = true;
  bool post_process = true;
  // true: logits stay split over the vocabulary (what the loss needs); false: all-gathered.
  bool parallel_output = true;
  bool share_embeddings_and_output_weights = false;
  // This stage's layers (see TransformerBlockOptions); -1: all.
  int64_t layer_offset = 0;
  int64_t num_layers_in_stage = -1;
  comm::ProcessGroupPtr tp_group;  // null: parallel_state's tensor-model-parallel group
};

class GPTModel : public nn::Module {
 public:
  // vocab_size: the (padded) vocabulary, divisible by tensor_model_parallel_size.
  GPTModel(const transformer::TransformerConfig& config,
           const transformer::TransformerLayerSpec& transformer_layer_spec, int64_t vocab_size,
           int64_t max_sequence_length, GPTModelOptions options = {});

  // input_ids [b, s] int64 (first stage), position_ids [b, s] or [1, s] (optional),
  // attention_mask bool (optional, TRUE = masked; causal masking is always applied),
  // labels [b, s] (optional).
  // Returns the per-token loss [b, s] (float32) when labels are given, else logits
  // [b, s, V/tp] ([b, s, V] without parallel_output). A stage without post_process returns
  // the hidden states [s, b, h] ([s/tp, b, h] under sequence parallelism).
  // inference_context (text generation, mcore/inference): the new tokens sit at positions
  // sequence_len_offset() onwards - position_ids default to them and the RoPE angles start
  // there - and attention reads/extends the context's KV caches. The caller advances the offset.
  Tensor forward(const Tensor& input_ids, const Tensor& position_ids = Tensor(),
                 const Tensor& attention_mask = Tensor(), const Tensor& labels = Tensor(),
                 inference::InferenceContext* inference_context = nullptr) const;

  // Pipeline stages after the first: the hidden states [s, b, h] coming from the previous
  // stage (Megatron's set_input_tensor). Used by forward() instead of the embedding.
  void set_input_tensor(const Tensor& input_tensor) { input_tensor_ = input_tensor; }

  const transformer::TransformerConfig& config() const { return config_; }
  int64_t vocab_size() const { return vocab_size_; }
  const std::shared_ptr<LanguageModelEmbedding>& embedding() const { return embedding_; }
  const std::shared_ptr<transformer::TransformerBlock>& decoder() const { return decoder_; }
  const std::shared_ptr<tensor_parallel::ColumnParallelLinear>& output_layer() const {
    return output_layer_;
  }
  // The weight the output layer multiplies by (the word embedding when shared).
  nn::ParameterPtr shared_embedding_or_output_weight() const;

 private:
  transformer::TransformerConfig config_;
  int64_t vocab_size_;
  GPTModelOptions options_;
  std::shared_ptr<LanguageModelEmbedding> embedding_;
  std::optional<RotaryEmbedding> rotary_pos_emb_;
  std::shared_ptr<transformer::TransformerBlock> decoder_;
  std::shared_ptr<tensor_parallel::ColumnParallelLinear> output_layer_;
  Tensor input_tensor_;
};

}  // namespace mcore::models
