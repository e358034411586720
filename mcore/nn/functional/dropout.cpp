#include "mcore/nn/functional/dropout.h"

#include "mcore/autograd/function.h"
#include "mcore/ops/dropout.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

struct DropoutKeyed {
  double p;
  uint64_t seed, stream;
  ops::DropoutIndexMap map;
};

// Saves only the key: the mask is regenerated in backward (no mask memory).
struct DropoutFn : Function<DropoutFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, DropoutKeyed k) {
    ctx->save("key", k);
    return ops::dropout_forward(x, k.p, k.seed, k.stream, k.map);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    auto k = ctx->get<DropoutKeyed>("key");
    return {ops::dropout_backward(g[0], k.p, k.seed, k.stream, k.map)};
  }
};

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream,
               uint64_t global_offset) {
  return dropout(x, p, training, seed, stream, ops::DropoutIndexMap::contiguous(global_offset));
}

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream,
               const ops::DropoutIndexMap& map) {
  MCORE_CHECK(p >= 0.0 && p <= 1.0) << "dropout: probability must be in [0, 1], got " << p;
  if (!training || p == 0.0) return x;
  return DropoutFn::apply(x, DropoutKeyed{p, seed, stream, map});
}

}  // namespace mcore::F
