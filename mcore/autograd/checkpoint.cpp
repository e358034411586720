#include "mcore/autograd/checkpoint.h"

#include "mcore/autograd/engine.h"
#include "mcore/autograd/function.h"
#include "mcore/base/rng_state.h"

namespace mcore::autograd {

namespace {

thread_local int g_recompute_depth = 0;

struct CheckpointFunction : Function<CheckpointFunction> {
  static std::vector<Tensor> forward(AutogradContext* ctx, const std::vector<Tensor>& inputs,
                                     const CheckpointFn& fn) {
    ctx->save_for_backward(inputs);
    ctx->save("fn", fn);
    ctx->save("rng", get_rng_state());
    std::vector<Tensor> outs = fn(inputs);  // grad mode is off here: nothing is kept
    return outs;
  }

  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grads) {
    const std::vector<Tensor>& saved = ctx->saved_tensors();
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < saved.size(); ++i) {
      Tensor t = saved[i].defined() ? saved[i].detach() : Tensor();
      if (t.defined() && ctx->needs_input_grad(i)) t.set_requires_grad(true);
      inputs.push_back(t);
    }
    std::vector<Tensor> outs;
    {
      // Recompute under the forward's RNG state so dropout masks repeat exactly.
      EnableGradGuard enable;
      RngState now = get_rng_state();
      set_rng_state(ctx->get<RngState>("rng"));
      ++g_recompute_depth;
      try {
        outs = ctx->get<CheckpointFn>("fn")(inputs);
      } catch (...) {
        --g_recompute_depth;
        set_rng_state(now);
        throw;
      }
      --g_recompute_depth;
      set_rng_state(now);
    }
    std::vector<Tensor> roots, root_grads;
    for (size_t i = 0; i < outs.size() && i < grads.size(); ++i) {
      if (outs[i].defined() && outs[i].requires_grad()) {
        roots.push_back(outs[i]);
        root_grads.push_back(grads[i]);
      }
    }
    if (!roots.empty()) autograd::backward(roots, root_grads);
    std::vector<Tensor> result;
    for (const Tensor& t : inputs)
      result.push_back(t.defined() && t.requires_grad() ? t.grad() : Tensor());
    return result;
  }
};

}  // namespace

bool in_recompute() {
  return g_recompute_depth > 0;
}

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  // With no input that requires grad the recompute could not route gradients anywhere (PyTorch
  // warns here); run fn normally so the parameters inside still get theirs.
  bool any = false;
  for (const Tensor& t : inputs) any |= t.defined() && t.requires_grad();
  if (!any || !is_grad_enabled()) return fn(inputs);
  return CheckpointFunction::apply(inputs, fn);
}

}  // namespace mcore::autograd
