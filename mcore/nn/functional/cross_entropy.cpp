#include "mcore/nn/functional/cross_entropy.h"

#include "mcore/autograd/function.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Saves logits and the per-token logsumexp (not the probabilities): the backward recomputes
// softmax - onehot in one pass.
struct CrossEntropyFn : Function<CrossEntropyFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& logits, const Tensor& target,
                        const Tensor& loss_mask, int64_t ignore_index) {
    ops::CrossEntropyForwardResult r =
        ops::cross_entropy_forward(logits, target, loss_mask, ignore_index);
    ctx->save_for_backward({logits, target, r.logsumexp});
    ctx->save("loss_mask", loss_mask.defined() ? loss_mask.detach() : Tensor());
    ctx->save("ignore_index", ignore_index);
    return r.loss;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    Tensor dx = ops::cross_entropy_backward(g[0], s[0], s[1], s[2], ctx->get<Tensor>("loss_mask"),
                                            ctx->get<int64_t>("ignore_index"));
    return {dx, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss_mask,
                     int64_t ignore_index) {
  return CrossEntropyFn::apply(logits, target, loss_mask, ignore_index);
}

}  // namespace mcore::F
