// Embedding table [num_embeddings, embedding_dim] looked up by integer ids; weights start as
// N(0, init std) from a Philox stream (Megatron's init_method for word embeddings).
#pragma once

#include "mcore/nn/init.h"
#include "mcore/nn/module.h"

namespace mcore::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, InitSpec init = {},
            DType dtype = DType::F32);
  // ids: int64/int32 of any shape -> [..., embedding_dim].
  Tensor forward(const Tensor& ids) const;
  const ParameterPtr& weight() const { return weight_; }

 private:
  ParameterPtr weight_;
};

}  // namespace mcore::nn
