// Parameter: a leaf tensor that requires grad, plus the attributes Megatron attaches to
// parameters: how it is split across tensor-parallel ranks, whether sequence-parallel
// gradients must be all-reduced, whether it is shared (tied embeddings), and `main_grad`, the
// fp32 gradient slice the DDP buffer gives it.
#pragma once

#include <memory>

#include "mcore/tensor/tensor.h"

namespace mcore::nn {

class Parameter : public Tensor {
 public:
  explicit Parameter(const Tensor& data);

  // Tensor-parallel layout (Megatron's tensor_model_parallel / partition_dim / partition_stride).
  bool tensor_model_parallel = false;
  int partition_dim = -1;
  int partition_stride = 1;
  // LayerNorm weights under sequence parallelism: grads need an all-reduce over TP.
  bool sequence_parallel = false;
  // Megatron's two tied-embedding flags. `shared_embedding`: a copy of the tied word-embedding /
  // output weight (both copies carry it); their grads are all-reduced over the embedding group.
  // `shared`: the duplicate copy on the last pipeline stage only, which grad-norm computation
  // skips so the weight is counted once.
  bool shared_embedding = false;
  bool shared = false;
  // Megatron's `allreduce`: false for the weights of an expert under expert parallelism. Each
  // expert-parallel rank holds other experts, so their grads are reduced (and their copies kept
  // equal) over the expert-data-parallel group instead of the data-parallel one.
  bool allreduce = true;
  // Excluded from weight decay (biases and norm weights, as Megatron does).
  bool no_weight_decay = false;
  // fp32 gradient accumulation buffer slice (set by DistributedDataParallel).
  Tensor main_grad;
};

using ParameterPtr = std::shared_ptr<Parameter>;

}  // namespace mcore::nn
