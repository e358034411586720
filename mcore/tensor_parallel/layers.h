// Megatron's tensor-parallel layers (tensor_parallel/layers.py):
//
//   ColumnParallelLinear  Y = X A + b, A split by columns: rank r holds output features
//                         [r*out/tp, (r+1)*out/tp) (weight [out/tp, in], partition_dim 0).
//   RowParallelLinear     Y = X A + b, A split by rows: rank r holds input features
//                         [r*in/tp, ...) (weight [out, in/tp], partition_dim 1); the partial
//                         products are summed across ranks, then the bias is added.
//   VocabParallelEmbedding  rank r holds vocabulary rows [r*V/tp, (r+1)*V/tp); ids outside the
//                         shard look up zeros and the partial lookups are all-reduced.
//
// Activations are Megatron's [s, b, h]. With sequence_parallel, the activations outside the
// tensor-parallel region are split along s: ColumnParallelLinear all-gathers its input
// ([s/tp, b, h] -> [s, b, h]) and RowParallelLinear reduce-scatters its output
// ([s, b, h] -> [s/tp, b, h]) instead of all-reducing it.
//
// Parameters are named "weight" and "bias" and carry Megatron's attributes
// (tensor_model_parallel, partition_dim, partition_stride; RowParallelLinear's bias has
// sequence_parallel set under SP since its gradient needs an all-reduce over TP). Weights are
// initialized layout-invariantly (see init.h): the full weight is the same for any tp.
// Biases start at zero, as Megatron's.
#pragma once

#include <cstdint>

#include "mcore/comm/process_group.h"
#include "mcore/nn/init.h"
#include "mcore/nn/module.h"

namespace mcore::tensor_parallel {

using comm::ProcessGroupPtr;

// forward() result: (output, output_bias) as Megatron returns it. output_bias is the bias
// parameter when skip_bias_add (the caller fuses the add, e.g. into bias-GeLU or
// bias-dropout-add), else undefined.
struct LinearOutput {
  Tensor output;
  Tensor output_bias;
};

struct ColumnParallelLinearOptions {
  bool bias = true;
  // All-gather the output along the last dim, so every rank gets all output features.
  bool gather_output = false;
  // Return the bias instead of adding it.
  bool skip_bias_add = false;
  // Input is [s/tp, b, h]; all-gathered along s before the GEMM (its grad reduce-scattered).
  bool sequence_parallel = false;
  // No weight parameter: forward() must be given one (the output layer tied to the word
  // embedding).
  bool skip_weight_param_allocation = false;
  // Megatron's partition_stride (see init.h); 2 for a fused [gate; up] weight.
  int partition_stride = 1;
  // false: weight starts at zero (to be loaded from a checkpoint).
  bool perform_initialization = true;
  nn::InitSpec init;  // seed, stream, std of the full weight
  DType dtype = DType::F32;
  ProcessGroupPtr tp_group;  // null: parallel_state's tensor-model-parallel group
};

class ColumnParallelLinear : public nn::Module {
 public:
  // input_size: in features; output_size: full (global) out features, divisible by tp.
  ColumnParallelLinear(int64_t input_size, int64_t output_size,
                       ColumnParallelLinearOptions options = {});

  // input [..., in] ([s/tp, b, in] under sequence parallel). output [..., out/tp], or
  // [..., out] with gather_output. `weight` overrides (and with skip_weight_param_allocation
  // replaces) the layer's own; shape [out/tp, in].
  LinearOutput forward(const Tensor& input, const Tensor& weight = Tensor()) const;

  const nn::ParameterPtr& weight() const { return weight_; }  // null when skipped
  const nn::ParameterPtr& bias() const { return bias_; }      // null without bias
  int64_t input_size() const { return input_size_; }
  int64_t output_size() const { return output_size_; }
  int64_t output_size_per_partition() const { return output_size_per_partition_; }
  const ColumnParallelLinearOptions& options() const { return options_; }
  const ProcessGroupPtr& tp_group() const { return tp_group_; }

 private:
  int64_t input_size_, output_size_, output_size_per_partition_;
  ColumnParallelLinearOptions options_;
  ProcessGroupPtr tp_group_;
  nn::ParameterPtr weight_, bias_;
};

struct RowParallelLinearOptions {
  bool bias = true;
  // Input already split along its last dim (the output of a ColumnParallelLinear); false:
  // the full input is scattered first. Sequence parallel needs true.
  bool input_is_parallel = true;
  bool skip_bias_add = false;
  // Output reduce-scattered along dim 0 ([s, b, h] -> [s/tp, b, h]) instead of all-reduced.
  bool sequence_parallel = false;
  bool perform_initialization = true;
  nn::InitSpec init;  // Megatron passes output_layer_init_method (std / sqrt(2 L)) here
  DType dtype = DType::F32;
  ProcessGroupPtr tp_group;
};

class RowParallelLinear : public nn::Module {
 public:
  // input_size: full (global) in features, divisible by tp; output_size: out features.
  RowParallelLinear(int64_t input_size, int64_t output_size, RowParallelLinearOptions options = {});

  // input [..., in/tp] (or [..., in] without input_is_parallel) -> [..., out]
  // ([s/tp, b, out] under sequence parallel).
  LinearOutput forward(const Tensor& input) const;

  const nn::ParameterPtr& weight() const { return weight_; }
  const nn::ParameterPtr& bias() const { return bias_; }
  int64_t input_size() const { return input_size_; }
  int64_t output_size() const { return output_size_; }
  int64_t input_size_per_partition() const { return input_size_per_partition_; }
  const RowParallelLinearOptions& options() const { return options_; }
  const ProcessGroupPtr& tp_group() const { return tp_group_; }

 private:
  int64_t input_size_, output_size_, input_size_per_partition_;
  RowParallelLinearOptions options_;
  ProcessGroupPtr tp_group_;
  nn::ParameterPtr weight_, bias_;
};

struct VocabParallelEmbeddingOptions {
  // Megatron's reduce_scatter_embeddings: ids are [b, s]; the output is transposed to
  // [s, b, h] and reduce-scattered along s ([s/tp, b, h]) instead of all-reduced.
  // LanguageModelEmbedding sets it when sequence_parallel and there is nothing else to add
  // (no learned positions, no token types); otherwise it all-reduces here, transposes and
  // calls scatter_to_sequence_parallel_region itself.
  bool reduce_scatter_embeddings = false;
  bool perform_initialization = true;
  nn::InitSpec init;
  DType dtype = DType::F32;
  ProcessGroupPtr tp_group;
};

class VocabParallelEmbedding : public nn::Module {
 public:
  // num_embeddings: the padded vocabulary (see vocab_size_with_padding in utils.h), divisible
  // by tp.
  VocabParallelEmbedding(int64_t num_embeddings, int64_t embedding_dim,
                         VocabParallelEmbeddingOptions options = {});

  // ids int64/int32 [...] in [0, num_embeddings) -> [..., h]; with reduce_scatter_embeddings
  // ids [b, s] -> [s/tp, b, h].
  Tensor forward(const Tensor& ids) const;

  const nn::ParameterPtr& weight() const { return weight_; }  // [V/tp, h], partition_dim 0
  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  int64_t vocab_start_index() const { return vocab_start_index_; }
  int64_t vocab_end_index() const { return vocab_end_index_; }
  int64_t num_embeddings_per_partition() const { return vocab_end_index_ - vocab_start_index_; }
  const ProcessGroupPtr& tp_group() const { return tp_group_; }

 private:
  int64_t num_embeddings_, embedding_dim_, vocab_start_index_, vocab_end_index_;
  VocabParallelEmbeddingOptions options_;
  ProcessGroupPtr tp_group_;
  nn::ParameterPtr weight_;
};

}  // namespace mcore::tensor_parallel
