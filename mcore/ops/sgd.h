// Fused SGD step, in place, one pass over memory per tensor: torch.optim.SGD's update (the one
// Megatron's `--optimizer sgd` runs), evaluated in PyTorch's order and roundings:
//   d = g + wd * p                          (L2 weight decay, coupled as in torch.optim.SGD)
//   buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf
//   p <- p - lr * d
// The mixed-precision form updates an fp32 main copy and writes the bf16/fp16 model parameter
// rounded from it.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

struct SgdConfig {
  double lr = 1e-3;
  double momentum = 0.0;  // 0: no buffer is read or written
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// param, momentum_buffer: float32 (or float64), contiguous, same numel; grad: param's dtype, or
// bf16/fp16 (read as float). first_step: the buffer holds nothing yet (PyTorch's None) and is
// set to d. momentum_buffer may be undefined when momentum == 0.
void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, bool first_step,
               const SgdConfig& config);

// Mixed precision: main_param (float32) updated as above, then model_param (bf16 or fp16, same
// numel) = main_param rounded to nearest even.
void sgd_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                         Tensor& momentum_buffer, bool first_step, const SgdConfig& config);

}  // namespace mcore::ops
