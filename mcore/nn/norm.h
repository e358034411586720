// LayerNorm and RMSNorm modules over the last dimension (Megatron's normalization="LayerNorm"
// | "RMSNorm"). Weights start at one, biases at zero; both are excluded from weight decay.
//
// zero_centered_gamma (Megatron's config.layernorm_zero_centered_gamma, --apply-layernorm-1p;
// LayerNorm1P in legacy Megatron): the stored weight starts at zero and the forward scales by
// (1 + weight). Checkpoints then hold gamma around 0, and weight decay, where it applies, pulls
// the scale toward 1 rather than toward 0. Gradients w.r.t. the stored weight equal those w.r.t.
// the scale.
#pragma once

#include "mcore/nn/module.h"

namespace mcore::nn {

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t hidden_size, double eps = 1e-5, bool bias = true, DType dtype = DType::F32,
            bool zero_centered_gamma = false);
  Tensor forward(const Tensor& x) const;
  const ParameterPtr& weight() const { return weight_; }
  const ParameterPtr& bias() const { return bias_; }
  bool zero_centered_gamma() const { return zero_centered_gamma_; }

 private:
  ParameterPtr weight_, bias_;
  double eps_;
  bool zero_centered_gamma_;
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t hidden_size, double eps = 1e-5, DType dtype = DType::F32,
          bool zero_centered_gamma = false);
  Tensor forward(const Tensor& x) const;
  const ParameterPtr& weight() const { return weight_; }
  bool zero_centered_gamma() const { return zero_centered_gamma_; }

 private:
  ParameterPtr weight_;
  double eps_;
  bool zero_centered_gamma_;
};

}  // namespace mcore::nn
