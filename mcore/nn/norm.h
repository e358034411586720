// LayerNorm and RMSNorm modules over the last dimension (Megatron's normalization="LayerNorm"
// | "RMSNorm"). Weights start at one, biases at zero; both are excluded from weight decay.
#pragma once

#include "mcore/nn/module.h"

namespace mcore::nn {

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t hidden_size, double eps = 1e-5, bool bias = true, DType dtype = DType::F32);
  Tensor forward(const Tensor& x) const;
  const ParameterPtr& weight() const { return weight_; }
  const ParameterPtr& bias() const { return bias_; }

 private:
  ParameterPtr weight_, bias_;
  double eps_;
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t hidden_size, double eps = 1e-5, DType dtype = DType::F32);
  Tensor forward(const Tensor& x) const;
  const ParameterPtr& weight() const { return weight_; }

 private:
  ParameterPtr weight_;
  double eps_;
};

}  // namespace mcore::nn
