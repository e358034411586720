#include "mcore/nn/functional/rope.h"

#include "mcore/autograd/function.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Only freqs are saved: the backward is the transposed rotation of the output gradient.
struct RotaryFn : Function<RotaryFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& t, const Tensor& freqs,
                        bool interleaved, double mscale) {
    ctx->save("freqs", freqs.detach());
    ctx->save("interleaved", interleaved);
    ctx->save("mscale", mscale);
    return ops::apply_rotary_pos_emb(t, freqs, interleaved, mscale);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    Tensor gt = ops::apply_rotary_pos_emb_backward(
        g[0], ctx->get<Tensor>("freqs"), ctx->get<bool>("interleaved"), ctx->get<double>("mscale"));
    return {gt, Tensor()};
  }
};

}  // namespace

Tensor apply_rotary_pos_emb(const Tensor& t, const Tensor& freqs, bool rotary_interleaved,
                            double mscale) {
  return RotaryFn::apply(t, freqs, rotary_interleaved, mscale);
}

}  // namespace mcore::F
