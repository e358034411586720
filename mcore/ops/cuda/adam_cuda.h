// CUDA kernels of the fused AdamW step in mcore/ops/adam.h: the same update, evaluated with the
// same IEEE roundings in the same order (no FMA contraction except PyTorch's one fused
// multiply-add), so a GPU step reproduces the CPU step bit for bit. Plain C++ header: adam.cpp
// calls these when the parameter lives on a CUDA device (inputs already validated there).
#pragma once

#include <cstdint>

#include "mcore/ops/adam.h"

namespace mcore::ops::cuda {

void adam_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                int64_t step, const AdamConfig& config);

// model_param: bf16 or fp16; main_param, exp_avg, exp_avg_sq: float32.
void adam_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                          Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step,
                          const AdamConfig& config);

}  // namespace mcore::ops::cuda
