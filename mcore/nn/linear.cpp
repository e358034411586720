#include "mcore/nn/linear.h"

#include "mcore/nn/functional/linear.h"

namespace mcore::nn {

Linear::Linear(int64_t in_features, int64_t out_features, LinearOptions o) {
  MCORE_CHECK(in_features > 0 && out_features > 0)
      << "Linear: features must be positive, got in=" << in_features << " out=" << out_features;
  weight_ = register_parameter("weight", init_normal({out_features, in_features}, o.init, o.dtype));
  if (o.bias) {
    bias_ = register_parameter("bias", zeros({out_features}, o.dtype));
    bias_->no_weight_decay = true;
  }
}

Tensor Linear::forward(const Tensor& x) const {
  return F::linear(x, *weight_, bias_ ? Tensor(*bias_) : Tensor());
}

}  // namespace mcore::nn
