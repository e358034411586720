// LanguageModelEmbedding (Megatron's models/common/embeddings/language_model_embedding.py):
// word embeddings (VocabParallelEmbedding, the vocabulary split across tensor-parallel ranks)
// plus, for position_embedding_type "learned_absolute", learned position embeddings
// (replicated), then [b, s, h] -> [s, b, h], the sequence-parallel scatter, and dropout
// (hidden_dropout) keyed by the global element index.
// Parameter names: "word_embeddings.weight", "position_embeddings.weight".
#pragma once

#include <memory>

#include "mcore/comm/process_group.h"
#include "mcore/nn/embedding.h"
#include "mcore/nn/module.h"
#include "mcore/tensor_parallel/layers.h"
#include "mcore/transformer/context_parallel.h"
#include "mcore/transformer/transformer_config.h"

namespace mcore::models {

class LanguageModelEmbedding : public nn::Module {
 public:
  // prefix: this module's global name ("embedding"), which keys the init streams.
  LanguageModelEmbedding(const transformer::TransformerConfig& config, int64_t vocab_size,
                         int64_t max_sequence_length, const std::string& prefix = "embedding",
                         comm::ProcessGroupPtr tp_group = nullptr);

  // input_ids [b, s]; position_ids [b, s] (or [1, s]; undefined: 0..s-1) -> [s, b, h]
  // ([s/tp, b, h] under sequence parallelism).
  Tensor forward(const Tensor& input_ids, const Tensor& position_ids = Tensor()) const;

  const std::shared_ptr<tensor_parallel::VocabParallelEmbedding>& word_embeddings() const {
    return word_embeddings_;
  }
  const std::shared_ptr<nn::Embedding>& position_embeddings() const { return position_embeddings_; }

 private:
  const transformer::TransformerConfig* config_;
  comm::ProcessGroupPtr tp_group_;
  std::shared_ptr<tensor_parallel::VocabParallelEmbedding> word_embeddings_;
  std::shared_ptr<nn::Embedding> position_embeddings_;  // null unless learned_absolute
  uint64_t dropout_stream_;
  transformer::ContextParallelLayout cp_;
};

}  // namespace mcore::models
