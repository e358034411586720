#include "mcore/models/gpt/gpt_model.h"

#include "mcore/inference/inference_context.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/cross_entropy.h"
#include "mcore/tensor_parallel/utils.h"
#include "mcore/transformer/context_parallel.h"

namespace mcore::models {

GPTModel::GPTModel(const transformer::TransformerConfig& config,
                   const transformer::TransformerLayerSpec& spec, int64_t vocab_size,
                   int64_t max_sequence_length, GPTModelOptions options)
    : config_(config.finalized()), vocab_size_(vocab_size), options_(std::move(options)) {
  MCORE_CHECK(vocab_size > 0 && vocab_size % config_.tensor_model_parallel_size == 0)
      << "GPTModel: vocab_size (" << vocab_size << ") must be positive and a multiple of "
      << "tensor_model_parallel_size (" << config_.tensor_model_parallel_size
      << "): pad it with tensor_parallel::vocab_size_with_padding";
  {
    const int group_size = tensor_parallel::resolve_tp_group(options_.tp_group)->size();
    MCORE_CHECK(group_size == config_.tensor_model_parallel_size)
        << "GPTModel: config.tensor_model_parallel_size is " << config_.tensor_model_parallel_size
        << " but the tensor-parallel group has " << group_size
        << " ranks: set the config from parallel_state (or pass the matching group)";
  }
  if (options_.pre_process) {
    embedding_ = register_module(
        "embedding", std::make_shared<LanguageModelEmbedding>(
                         config_, vocab_size, max_sequence_length, "embedding", options_.tp_group));
  }
  const std::string& pe = config_.position_embedding_type;
  if (pe == "rope" || pe == "yarn") rotary_pos_emb_.emplace(config_);

  transformer::TransformerBlockOptions bo;
  bo.pre_process = options_.pre_process;
  bo.post_process = options_.post_process;
  bo.layer_offset = options_.layer_offset;
  bo.num_layers = options_.num_layers_in_stage;
  bo.tp_group = options_.tp_group;
  bo.prefix = "decoder";
  decoder_ = register_module("decoder",
                             std::make_shared<transformer::TransformerBlock>(config_, spec, bo));

  if (options_.post_process) {
    tensor_parallel::ColumnParallelLinearOptions o;
    o.bias = false;
    o.gather_output = !options_.parallel_output;
    o.sequence_parallel = config_.sequence_parallel;
    o.skip_weight_param_allocation =
        options_.pre_process && options_.share_embeddings_and_output_weights;
    o.perform_initialization = config_.perform_initialization;
    // Untied: its own stream. Tied on a stage without the embedding: the embedding's stream, so
    // both copies start equal (Megatron zeroes this copy and all-reduces it from stage 0).
    o.init = {config_.seed,
              nn::stream_for_name(options_.share_embeddings_and_output_weights
                                      ? "embedding.word_embeddings.weight"
                                      : "output_layer.weight"),
              config_.init_method_std};
    o.dtype = config_.params_dtype;
    o.tp_group = options_.tp_group;
    output_layer_ =
        register_module("output_layer", std::make_shared<tensor_parallel::ColumnParallelLinear>(
                                            config_.hidden_size, vocab_size, o));
    if (options_.share_embeddings_and_output_weights && !options_.pre_process) {
      output_layer_->weight()->shared = true;
      output_layer_->weight()->shared_embedding = true;
    }
  }
  // The first stage's copy is the one counted in the grad norm: not `shared`.
  if (embedding_ && options_.share_embeddings_and_output_weights)
    embedding_->word_embeddings()->weight()->shared_embedding = true;
}

nn::ParameterPtr GPTModel::shared_embedding_or_output_weight() const {
  if (options_.pre_process && options_.share_embeddings_and_output_weights)
    return embedding_->word_embeddings()->weight();
  return output_layer_ ? output_layer_->weight() : nullptr;
}

Tensor GPTModel::forward(const Tensor& input_ids, const Tensor& position_ids,
                         const Tensor& attention_mask, const Tensor& labels,
                         inference::InferenceContext* inference_context) const {
  const int64_t offset = inference_context ? inference_context->sequence_len_offset() : 0;
  Tensor hidden;
  if (options_.pre_process) {
    Tensor positions = position_ids;
    if (!positions.defined() && offset > 0) {
      const int64_t s = input_ids.size(1);
      positions = arange(offset, offset + s, 1, {DType::I64, input_ids.device()}).view({1, s});
    }
    hidden = embedding_->forward(input_ids, positions);
  } else {
    MCORE_CHECK(input_tensor_.defined())
        << "GPTModel: a stage without pre_process needs set_input_tensor(hidden) first";
    hidden = input_tensor_;
  }
  transformer::AttentionInputs in;
  in.attention_mask = attention_mask;
  in.inference_context = inference_context;
  if (rotary_pos_emb_) {
    int64_t s = hidden.size(0);
    if (config_.sequence_parallel) s *= config_.tensor_model_parallel_size;
    // Under context parallelism the rank's sequence is two chunks of the global one: the
    // table for the whole sequence, cut as the batch was (Megatron's get_pos_emb_on_this_cp_rank).
    const transformer::ContextParallelLayout cp =
        transformer::context_parallel_layout(config_.context_parallel_size);
    MCORE_CHECK(cp.size == 1 || !inference_context)
        << "GPTModel: inference runs without context parallelism (context_parallel_size " << cp.size
        << ")";
    in.rotary_pos_emb = transformer::slice_for_context_parallel_rank(
        rotary_pos_emb_->forward(s * cp.size, offset, hidden.device()), 0, cp);
    in.rotary_mscale = rotary_pos_emb_->mscale();
  }
  hidden = decoder_->forward(hidden, in);
  if (!options_.post_process) return hidden;

  Tensor weight;
  if (options_.share_embeddings_and_output_weights) weight = *shared_embedding_or_output_weight();
  Tensor logits = output_layer_->forward(hidden, weight).output;            // [s, b, V/tp]
  if (!labels.defined()) return F::contiguous(F::transpose(logits, 0, 1));  // [b, s, V/tp]

  MCORE_CHECK(labels.dim() == 2 && labels.size(0) == logits.size(1) &&
              labels.size(1) == logits.size(0))
      << "GPTModel: labels must be [b, s] = [" << logits.size(1) << ", " << logits.size(0)
      << "], got " << shape_str(labels.shape());
  Tensor labels_sb = labels.to(logits.device()).transpose(0, 1).contiguous();  // [s, b]
  // Gathered logits (parallel_output false) hold the whole vocabulary: a plain cross-entropy.
  Tensor loss = options_.parallel_output ? tensor_parallel::vocab_parallel_cross_entropy(
                                               logits, labels_sb, 0.0, Tensor(), options_.tp_group)
                                         : F::cross_entropy(logits, labels_sb);
  return F::contiguous(F::transpose(loss, 0, 1));  // [b, s]
}

}  // namespace mcore::models
