#include "mcore/nn/functional/linear.h"

#include "mcore/autograd/function.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/matmul.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// C = op(A) op(B). dA = dC op(B)^T (transposed back if A was), dB likewise.
struct MatmulFn : Function<MatmulFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b, bool ta, bool tb) {
    ctx->save_for_backward({a, b});
    ctx->save("ta", ta);
    ctx->save("tb", tb);
    return ops::matmul(a, b, ta, tb);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    const Tensor &a = s[0], &b = s[1];
    bool ta = ctx->get<bool>("ta"), tb = ctx->get<bool>("tb");
    Tensor ga, gb;
    if (ctx->needs_input_grad(0)) {
      // A = op(A): dop(A) = dC op(B)^T.  If ta: dA = (dC op(B)^T)^T = op(B) dC^T.
      ga = ta ? ops::matmul(b, g[0], tb, true) : ops::matmul(g[0], b, false, !tb);
    }
    if (ctx->needs_input_grad(1)) {
      if (b.dim() == 2 && a.dim() > 2) {
        // Shared 2-D B: fold the batch into rows.
        Tensor a2 = a.contiguous().reshape({-1, a.size(-1)});
        Tensor g2 = g[0].contiguous().reshape({-1, g[0].size(-1)});
        MCORE_CHECK(!ta) << "matmul backward: transposed batched A with shared B is unsupported";
        gb = tb ? ops::matmul(g2, a2, true, false) : ops::matmul(a2, g2, true, false);
      } else {
        gb = tb ? ops::matmul(g[0], a, true, ta) : ops::matmul(a, g[0], !ta, false);
      }
    }
    return {ga, gb};
  }
};

// y = x W^T (+ b) with x: [..., in]. One GEMM forward, two backward, bias grad as a column sum.
struct LinearFn : Function<LinearFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w,
                        const Tensor& bias) {
    MCORE_CHECK(w.dim() == 2) << "linear: weight must be 2-d [out, in], got "
                              << shape_str(w.shape());
    MCORE_CHECK(x.size(-1) == w.size(1))
        << "linear: input " << shape_str(x.shape()) << " has " << x.size(-1)
        << " features but weight " << shape_str(w.shape()) << " expects " << w.size(1);
    ctx->save_for_backward({x, w});
    ctx->save("has_bias", bias.defined());
    Shape out_shape = x.shape();
    out_shape.back() = w.size(0);
    Tensor x2 = x.reshape({-1, x.size(-1)});
    if (bias.defined()) {
      MCORE_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0))
          << "linear: bias " << shape_str(bias.shape()) << " does not match weight "
          << shape_str(w.shape());
    }
    Tensor y;
    if (bias.defined() && x2.device().is_cpu() && bias.dtype() == x2.dtype()) {
      // On CPU the bias is added as the GEMM stores its output (float32), not in a second pass.
      y = ops::matmul_bias_act(x2, w, bias, ops::MatmulActivation::kNone, false, true);
    } else {
      y = ops::matmul(x2, w, false, true);
      if (bias.defined()) ops::add_(y, bias);
    }
    return y.view(out_shape);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    const Tensor &x = s[0], &w = s[1];
    Tensor g2 = g[0].contiguous().reshape({-1, w.size(0)});
    Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = ops::matmul(g2, w).view(x.shape());
    if (ctx->needs_input_grad(1)) gw = ops::matmul(g2, x.reshape({-1, x.size(-1)}), true, false);
    if (ctx->get<bool>("has_bias") && ctx->needs_input_grad(2)) gb = ops::sum_to(g2, {w.size(0)});
    return {gx, gw, gb};
  }
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  return MatmulFn::apply(a, b, trans_a, trans_b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return LinearFn::apply(x, weight, bias);
}

}  // namespace mcore::F
