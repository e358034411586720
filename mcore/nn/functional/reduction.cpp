#include "mcore/nn/functional/reduction.h"

#include "mcore/autograd/function.h"
#include "mcore/ops/reduction.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

struct SumDimsFn : Function<SumDimsFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const std::vector<int64_t>& dims,
                        bool keepdim, bool mean) {
    ctx->save("shape", x.shape());
    ctx->save("dims", dims);
    ctx->save("keepdim", keepdim);
    ctx->save("mean", mean);
    return mean ? ops::mean(x, dims, keepdim) : ops::sum(x, dims, keepdim);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    auto shape = ctx->get<Shape>("shape");
    auto dims = ctx->get<std::vector<int64_t>>("dims");
    bool keepdim = ctx->get<bool>("keepdim");
    return {ctx->get<bool>("mean") ? ops::mean_backward(g[0], shape, dims, keepdim)
                                   : ops::sum_backward(g[0], shape, dims, keepdim)};
  }
};

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return SumDimsFn::apply(x, dims, keepdim, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return SumDimsFn::apply(x, dims, keepdim, true);
}

}  // namespace mcore::F
