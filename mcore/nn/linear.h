// Linear layer y = x W^T + b with W: [out_features, in_features] (PyTorch's and Megatron's
// layout, so state dicts load unchanged). Weights start as N(0, init std) from a Philox stream.
#pragma once

#include "mcore/nn/init.h"
#include "mcore/nn/module.h"

namespace mcore::nn {

struct LinearOptions {
  bool bias = true;
  DType dtype = DType::F32;
  InitSpec init;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, LinearOptions options = {});
  Tensor forward(const Tensor& x) const;

  const ParameterPtr& weight() const { return weight_; }
  const ParameterPtr& bias() const { return bias_; }  // null without bias

 private:
  ParameterPtr weight_;
  ParameterPtr bias_;
};

}  // namespace mcore::nn
