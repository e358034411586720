#include "mcore/nn/functional/attention.h"

#include "mcore/autograd/function.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Saves q, k, v, out and the logsumexp: the backward recomputes the scores tile by tile, so
// nothing of size Sq x Sk is kept between forward and backward.
struct AttentionFn : Function<AttentionFn> {
  static std::vector<Tensor> forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const ops::AttentionOptions& options) {
    ops::AttentionForwardResult r = ops::attention_forward(q, k, v, options);
    ctx->save_for_backward({q, k, v, r.out, r.softmax_lse});
    ctx->save("options", options);
    return {r.out, r.softmax_lse};
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    ops::AttentionGrads r = ops::attention_backward(g[0], s[0], s[1], s[2], s[3], s[4],
                                                    ctx->get<ops::AttentionOptions>("options"));
    return {r.dq, r.dk, r.dv};
  }
};

}  // namespace

std::vector<Tensor> attention_with_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const ops::AttentionOptions& options) {
  return AttentionFn::apply(q, k, v, options);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const ops::AttentionOptions& options) {
  return attention_with_lse(q, k, v, options)[0];
}

}  // namespace mcore::F
