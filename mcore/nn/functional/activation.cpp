#include "mcore/nn/functional/activation.h"

#include "mcore/autograd/function.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Each saves its input (not the output): the derivatives are functions of x.
struct GeluFn : Function<GeluFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, GeluApproximate approximate) {
    ctx->save_for_backward({x});
    ctx->save("approximate", approximate);
    return ops::gelu_forward(x, approximate);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {ops::gelu_backward(g[0], ctx->saved_tensors()[0],
                               ctx->get<GeluApproximate>("approximate"))};
  }
};

struct SiluFn : Function<SiluFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return ops::silu_forward(x);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {ops::silu_backward(g[0], ctx->saved_tensors()[0])};
  }
};

struct SwigluFn : Function<SwigluFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return ops::swiglu_forward(x);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {ops::swiglu_backward(g[0], ctx->saved_tensors()[0])};
  }
};

}  // namespace

Tensor gelu(const Tensor& x, GeluApproximate approximate) {
  return GeluFn::apply(x, approximate);
}
Tensor silu(const Tensor& x) {
  return SiluFn::apply(x);
}
Tensor swiglu(const Tensor& x) {
  return SwigluFn::apply(x);
}

}  // namespace mcore::F
