#include "mcore/tensor_parallel/linear_with_comm.h"

#include "mcore/autograd/function.h"
#include "mcore/nn/functional/linear.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/matmul.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/mappings.h"

namespace mcore::tensor_parallel {

using autograd::AutogradContext;
using autograd::Function;
using comm::ProcessGroupPtr;

namespace {

struct LinearWithCommFn : Function<LinearWithCommFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        bool allreduce_dgrad, bool sp, const ProcessGroupPtr& group) {
    MCORE_CHECK(w.dim() == 2 && x.size(-1) == w.size(1))
        << "linear: input " << shape_str(x.shape()) << " does not match weight "
        << shape_str(w.shape());
    const Tensor total = sp ? all_gather_along_dim(x, 0, group) : x.contiguous();
    Shape out_shape = total.shape();
    out_shape.back() = w.size(0);
    Tensor y = ops::matmul(total.reshape({-1, total.size(-1)}), w, false, true);
    if (bias.defined()) ops::add_(y, bias);
    // Under SP only the local chunk is kept; the backward gathers it again.
    ctx->save_for_backward({x, w});
    ctx->save("has_bias", bias.defined());
    ctx->save("allreduce_dgrad", allreduce_dgrad);
    ctx->save("sp", sp);
    ctx->save("group", group);
    return y.view(out_shape);
  }

  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const Tensor& x = ctx->saved_tensors()[0];
    const Tensor& w = ctx->saved_tensors()[1];
    const bool sp = ctx->get<bool>("sp");
    const auto group = ctx->get<ProcessGroupPtr>("group");
    const bool need_dx = ctx->needs_input_grad(0), need_dw = ctx->needs_input_grad(1);
    const int64_t in = w.size(1), out = w.size(0);
    const Tensor g2 = g[0].contiguous().reshape({-1, out});

    // Start re-gathering the input for d W while d X is computed (Megatron's order).
    Tensor total = x.contiguous();
    comm::WorkPtr gather;
    if (sp && need_dw) {
      Shape full = x.shape();
      full[0] *= group->size();
      total = empty(full, {x.dtype(), x.device()});
      gather = group->all_gather_async(total, x.contiguous());
    }
    Tensor dx;
    comm::WorkPtr reduce;
    if (need_dx) {
      Tensor dx_total = ops::matmul(g2, w);  // [rows of the full input, in]
      if (sp) {
        // One collective in flight at a time: finish the gather before the reduce-scatter.
        if (gather) gather->wait();
        gather.reset();
        dx = empty(x.shape(), {dx_total.dtype(), dx_total.device()});
        Shape full = x.shape();
        full[0] *= group->size();
        dx_total = dx_total.view(full);
        reduce = group->reduce_scatter_async(dx, dx_total);
        ctx->save("dx_total", dx_total);  // keeps the send buffer alive until the wait
      } else {
        dx = dx_total.view(x.shape());
        if (ctx->get<bool>("allreduce_dgrad")) reduce = group->all_reduce_async(dx);
      }
    }
    Tensor dw, db;
    if (need_dw) {
      if (gather) gather->wait();
      dw = ops::matmul(g2, total.reshape({-1, in}), true, false);
    }
    if (ctx->get<bool>("has_bias") && ctx->needs_input_grad(2)) db = ops::sum_to(g2, {out});
    if (reduce) reduce->wait();
    return {dx, dw, db};
  }
};

}  // namespace

Tensor linear_with_grad_accumulation_and_async_allreduce(const Tensor& input, const Tensor& weight,
                                                         const Tensor& bias, bool allreduce_dgrad,
                                                         bool sequence_parallel,
                                                         const ProcessGroupPtr& group) {
  if (!sequence_parallel && (!allreduce_dgrad || group->size() == 1)) {
    return F::linear(input, weight, bias);
  }
  return LinearWithCommFn::apply(input, weight, bias, allreduce_dgrad, sequence_parallel, group);
}

}  // namespace mcore::tensor_parallel
