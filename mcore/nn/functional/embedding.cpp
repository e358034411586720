#include "mcore/nn/functional/embedding.h"

#include "mcore/autograd/function.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Saves only the ids and V: the backward is a deterministic scatter-add of the output gradient.
struct EmbeddingFn : Function<EmbeddingFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& ids, const Tensor& weight) {
    ctx->save_for_backward({ids});
    ctx->save("num_embeddings", weight.dim() == 2 ? weight.size(0) : int64_t{0});
    return ops::embedding_forward(weight, ids);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    Tensor gw =
        ops::embedding_backward(g[0], ctx->saved_tensors()[0], ctx->get<int64_t>("num_embeddings"));
    return {Tensor(), gw};
  }
};

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& weight) {
  return EmbeddingFn::apply(ids, weight);
}

}  // namespace mcore::F
