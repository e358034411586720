#include "mcore/nn/functional/norm.h"

#include "mcore/autograd/function.h"
#include "mcore/ops/norm.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Saves x, weight and the forward's per-row statistics; the backward skips the gradients no
// input needs.
struct LayerNormFn : Function<LayerNormFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                        double eps) {
    ops::LayerNormOutput out = ops::layer_norm_forward(x, w, b, eps);
    ctx->save_for_backward({x, w, out.mean, out.rstd});
    ctx->save("has_bias", b.defined());
    return out.y;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    const bool want_bias = ctx->get<bool>("has_bias") && ctx->needs_input_grad(2);
    ops::NormGrads d = ops::layer_norm_backward(g[0], s[0], s[2], s[3], s[1], want_bias,
                                                ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {d.dx, d.dweight, d.dbias};
  }
};

struct RMSNormFn : Function<RMSNormFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, double eps) {
    ops::RMSNormOutput out = ops::rms_norm_forward(x, w, eps);
    ctx->save_for_backward({x, w, out.rstd});
    return out.y;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    ops::NormGrads d = ops::rms_norm_backward(g[0], s[0], s[2], s[1], ctx->needs_input_grad(0),
                                              ctx->needs_input_grad(1));
    return {d.dx, d.dweight};
  }
};

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return LayerNormFn::apply(x, weight, bias, eps);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return RMSNormFn::apply(x, weight, eps);
}

}  // namespace mcore::F
