#include "mcore/nn/norm.h"

#include "mcore/autograd/function.h"
#include "mcore/nn/functional/norm.h"
#include "mcore/ops/elementwise.h"
#include "mcore/tensor/factory.h"

namespace mcore::nn {

namespace {

// weight + 1 with the gradient passed through unchanged (d weight = d scale), so the fused norm
// kernels run as they are on the shifted scale. Like Megatron's `self.weight + 1`, the sum is
// rounded to the weight's dtype.
struct AddOneFn : autograd::Function<AddOneFn> {
  static Tensor forward(autograd::AutogradContext*, const Tensor& w) {
    return ops::add_scalar(w, 1.0);
  }
  static std::vector<Tensor> backward(autograd::AutogradContext*, std::vector<Tensor> g) {
    return {g[0]};
  }
};

// The scale the norm kernels apply.
Tensor norm_scale(const ParameterPtr& weight, bool zero_centered_gamma) {
  return zero_centered_gamma ? AddOneFn::apply(Tensor(*weight)) : Tensor(*weight);
}

// The stored weight's starting value: the identity scale either way.
Tensor initial_weight(int64_t hidden_size, DType dtype, bool zero_centered_gamma) {
  return zero_centered_gamma ? zeros({hidden_size}, dtype) : ones({hidden_size}, dtype);
}

}  // namespace

LayerNorm::LayerNorm(int64_t hidden_size, double eps, bool bias, DType dtype,
                     bool zero_centered_gamma)
    : eps_(eps), zero_centered_gamma_(zero_centered_gamma) {
  weight_ = register_parameter("weight", initial_weight(hidden_size, dtype, zero_centered_gamma));
  weight_->no_weight_decay = true;
  if (bias) {
    bias_ = register_parameter("bias", zeros({hidden_size}, dtype));
    bias_->no_weight_decay = true;
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return F::layer_norm(x, norm_scale(weight_, zero_centered_gamma_),
                       bias_ ? Tensor(*bias_) : Tensor(), eps_);
}

RMSNorm::RMSNorm(int64_t hidden_size, double eps, DType dtype, bool zero_centered_gamma)
    : eps_(eps), zero_centered_gamma_(zero_centered_gamma) {
  weight_ = register_parameter("weight", initial_weight(hidden_size, dtype, zero_centered_gamma));
  weight_->no_weight_decay = true;
}

Tensor RMSNorm::forward(const Tensor& x) const {
  return F::rms_norm(x, norm_scale(weight_, zero_centered_gamma_), eps_);
}

}  // namespace mcore::nn
