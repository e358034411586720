#include "mcore/nn/embedding.h"

#include "mcore/nn/functional/embedding.h"

namespace mcore::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, InitSpec init, DType dtype) {
  MCORE_CHECK(num_embeddings > 0 && embedding_dim > 0)
      << "Embedding: sizes must be positive, got " << num_embeddings << " x " << embedding_dim;
  weight_ = register_parameter("weight", init_normal({num_embeddings, embedding_dim}, init, dtype));
}

Tensor Embedding::forward(const Tensor& ids) const {
  return F::embedding(ids, *weight_);
}

}  // namespace mcore::nn
