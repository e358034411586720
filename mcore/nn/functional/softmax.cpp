#include "mcore/nn/functional/softmax.h"

#include "mcore/autograd/function.h"
#include "mcore/ops/softmax.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Saves the output only: the backward needs y, and masked positions have y = 0.
struct SoftmaxFn : Function<SoftmaxFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double scale, bool causal) {
    Tensor y = ops::softmax_forward(x, scale, causal);
    ctx->save_for_backward({y});
    ctx->save("scale", scale);
    return y;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {ops::softmax_backward(g[0], ctx->saved_tensors()[0], ctx->get<double>("scale"))};
  }
};

}  // namespace

Tensor softmax(const Tensor& x, double scale, bool causal) {
  return SoftmaxFn::apply(x, scale, causal);
}

}  // namespace mcore::F
