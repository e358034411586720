#include "mcore/models/common/language_model_embedding.h"

#include "mcore/base/rng_state.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/tensor_parallel/utils.h"

namespace mcore::models {

LanguageModelEmbedding::LanguageModelEmbedding(const transformer::TransformerConfig& config,
                                               int64_t vocab_size, int64_t max_sequence_length,
                                               const std::string& prefix,
                                               comm::ProcessGroupPtr tp_group)
    : config_(&config), tp_group_(std::move(tp_group)) {
  const std::string p = prefix.empty() ? "" : prefix + ".";
  tensor_parallel::VocabParallelEmbeddingOptions wo;
  wo.init = {config.seed, nn::stream_for_name(p + "word_embeddings.weight"),
             config.init_method_std};
  wo.perform_initialization = config.perform_initialization;
  wo.dtype = config.params_dtype;
  wo.tp_group = tp_group_;
  word_embeddings_ =
      register_module("word_embeddings", std::make_shared<tensor_parallel::VocabParallelEmbedding>(
                                             vocab_size, config.hidden_size, wo));
  if (config.position_embedding_type == "learned_absolute") {
    MCORE_CHECK(max_sequence_length > 0)
        << "LanguageModelEmbedding: learned_absolute positions need max_sequence_length > 0, got "
        << max_sequence_length;
    nn::InitSpec pi{config.seed, nn::stream_for_name(p + "position_embeddings.weight"),
                    config.init_method_std};
    position_embeddings_ =
        register_module("position_embeddings",
                        std::make_shared<nn::Embedding>(max_sequence_length, config.hidden_size, pi,
                                                        config.params_dtype));
  }
  dropout_stream_ = nn::stream_for_name(p + "embedding_dropout");
  cp_ = transformer::context_parallel_layout(config.context_parallel_size);
}

Tensor LanguageModelEmbedding::forward(const Tensor& input_ids, const Tensor& position_ids) const {
  MCORE_CHECK(input_ids.dim() == 2)
      << "LanguageModelEmbedding: input_ids must be [b, s], got " << shape_str(input_ids.shape());
  const int64_t b = input_ids.size(0), s = input_ids.size(1);
  Tensor emb = word_embeddings_->forward(input_ids);  // [b, s, h]
  if (position_embeddings_) {
    Tensor pos = position_ids;
    const Device dev = position_embeddings_->weight()->device();
    pos = pos.defined() ? pos.to(dev) : arange(s, {DType::I64, dev}).view({1, s});
    MCORE_CHECK(pos.dim() == 2 && pos.size(1) == s && (pos.size(0) == b || pos.size(0) == 1))
        << "LanguageModelEmbedding: position_ids must be [b, s] or [1, s] with b=" << b
        << " s=" << s << ", got " << shape_str(pos.shape());
    MCORE_CHECK(s <= position_embeddings_->weight()->size(0))
        << "LanguageModelEmbedding: sequence length " << s << " exceeds max_sequence_length "
        << position_embeddings_->weight()->size(0);
    emb = F::add(emb, position_embeddings_->forward(pos));  // broadcasts [1, s, h]
  }
  emb = F::contiguous(F::transpose(emb, 0, 1));  // [s, b, h]
  // Under sequence parallelism this rank keeps rows [rank * s/tp, (rank + 1) * s/tp) of its
  // (context-parallel rank's) sequence; sequence_dropout keys each row by its global place.
  const int64_t local_len = emb.size(0);
  int64_t first_row = 0;
  if (config_->sequence_parallel) {
    emb = tensor_parallel::scatter_to_sequence_parallel_region(emb, tp_group_);
    first_row = tensor_parallel::resolve_tp_group(tp_group_)->rank() * emb.size(0);
  }
  if (is_training() && config_->hidden_dropout > 0) {
    RngState rng = get_rng_state();
    emb = transformer::sequence_dropout(emb, config_->hidden_dropout, true, rng.seed,
                                        mix_stream(dropout_stream_, rng.step), first_row, local_len,
                                        cp_);
  }
  return emb;
}

}  // namespace mcore::models
