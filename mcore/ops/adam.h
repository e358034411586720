// Fused AdamW step, in place, one pass over memory per tensor: the update of
// torch.optim.AdamW (and of Megatron's FusedAdam in AdamW mode, the same math):
//   p <- p * (1 - lr * wd)                        (decoupled weight decay)
//   m <- b1 * m + (1 - b1) * g,   v <- b2 * v + (1 - b2) * g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// evaluated in PyTorch's order so trajectories match it to rounding. The mixed-precision form
// updates an fp32 main copy and writes the bf16/fp16 model parameter rounded from it.
#pragma once

#include <cstdint>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled (AdamW); 0 gives plain Adam without L2 term
  bool bias_correction = true;
};

// param, exp_avg, exp_avg_sq: float32 (or float64), same dtype, contiguous, same numel. grad:
// param's dtype, or bf16/fp16 (read as float). `step` counts this update, starting at 1.
void adam_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                int64_t step, const AdamConfig& config);

// Mixed precision: main_param (float32) and the state update as above, then
// model_param (bf16 or fp16, same numel) = main_param rounded to nearest even.
void adam_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                          Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step,
                          const AdamConfig& config);

}  // namespace mcore::ops
