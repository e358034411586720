// Fused passes over lists of gradient tensors for the optimizer: unscale with an inf/nan check
// (torch._amp_foreach_non_finite_check_and_unscale_), scale in place (apex's
// multi_tensor_scale, used for clipping), the largest magnitude (inf-norm) and the count of
// zeros (Megatron's count_zeros_fp32). Each is one OpenMP-parallel pass per tensor; tensors are
// float32 or float64 and contiguous (main gradients always are).
#pragma once

#include <cstdint>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// g <- g * inv_scale for every tensor (skipped when inv_scale == 1, as PyTorch); returns true
// when any element was inf or nan before scaling. The product is taken in the tensor's type
// with inv_scale rounded to float first, as PyTorch's kernel does.
bool non_finite_check_and_unscale_(std::vector<Tensor>& grads, float inv_scale);

// t <- t * scale for every tensor, scale rounded to float (apex multiplies by a float).
void multi_tensor_scale_(std::vector<Tensor>& tensors, double scale);

// max_i max_j |t_i[j]| in float64; NaN when any element is NaN; 0 for no elements.
double multi_tensor_max_abs(const std::vector<Tensor>& tensors);

// Number of elements equal to zero over all tensors.
int64_t multi_tensor_count_zeros(const std::vector<Tensor>& tensors);

}  // namespace mcore::ops
