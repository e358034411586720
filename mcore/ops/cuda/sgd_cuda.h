// CUDA kernels of the fused SGD step in mcore/ops/sgd.h, with the CPU's roundings (bit-identical
// results). Plain C++ header: sgd.cpp calls these for parameters on a CUDA device, after its
// own validation.
#pragma once

#include "mcore/ops/sgd.h"

namespace mcore::ops::cuda {

void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, bool first_step,
               const SgdConfig& config);

// model_param: bf16 or fp16; main_param (and the buffer): float32.
void sgd_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                         Tensor& momentum_buffer, bool first_step, const SgdConfig& config);

}  // namespace mcore::ops::cuda
