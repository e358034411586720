#include "mcore/nn/norm.h"

#include "mcore/nn/functional/norm.h"
#include "mcore/tensor/factory.h"

namespace mcore::nn {

LayerNorm::LayerNorm(int64_t hidden_size, double eps, bool bias, DType dtype) : eps_(eps) {
  weight_ = register_parameter("weight", ones({hidden_size}, dtype));
  weight_->no_weight_decay = true;
  if (bias) {
    bias_ = register_parameter("bias", zeros({hidden_size}, dtype));
    bias_->no_weight_decay = true;
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return F::layer_norm(x, *weight_, bias_ ? Tensor(*bias_) : Tensor(), eps_);
}

RMSNorm::RMSNorm(int64_t hidden_size, double eps, DType dtype) : eps_(eps) {
  weight_ = register_parameter("weight", ones({hidden_size}, dtype));
  weight_->no_weight_decay = true;
}

Tensor RMSNorm::forward(const Tensor& x) const {
  return F::rms_norm(x, *weight_, eps_);
}

}  // namespace mcore::nn
