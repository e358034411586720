// Reductions: sums and means over all elements or over dimensions, max along a dimension, and
// the squared L2 norm over many tensors (gradient clipping). Accumulation is in float64 for
// float64 inputs and float32 otherwise (bf16/fp16 round once on store), blocked so that long
// sums keep their precision; the L2 norm always accumulates in float64.
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// Sum of all elements as a 0-d tensor of x's dtype.
Tensor sum_all(const Tensor& x);

// Sum / mean over `dims` (negative counts from the end, any order, no repeats; empty means every
// dimension, as torch.sum(x, dim=[])). keepdim leaves the reduced dimensions with size 1.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Backward of sum / mean: grad (the reduced shape, with or without kept dims) broadcast back to
// `input_shape`, times 1/count for the mean.
Tensor sum_backward(const Tensor& grad, const Shape& input_shape, const std::vector<int64_t>& dims,
                    bool keepdim);
Tensor mean_backward(const Tensor& grad, const Shape& input_shape, const std::vector<int64_t>& dims,
                     bool keepdim);

// Maximum along one dimension and its position (int64, first occurrence on ties). NaN counts as
// larger than everything, so a row holding NaN yields NaN and the first NaN's index (as PyTorch).
struct MaxResult {
  Tensor values;
  Tensor indices;
};
MaxResult max(const Tensor& x, int64_t dim, bool keepdim = false);
// Backward of max: grad scattered to the winning positions, zeros elsewhere.
Tensor max_backward(const Tensor& grad, const Tensor& indices, const Shape& input_shape,
                    int64_t dim, bool keepdim);

// sum_i sum_j t_i[j]^2 over every tensor (float32, float64, bf16, fp16; any shapes), each
// element squared and accumulated in float64, in a fixed order (the result does not depend on
// the thread count). Inf/NaN propagate, so callers can detect overflow from the result.
double multi_tensor_l2norm_squared(const std::vector<Tensor>& tensors);

}  // namespace mcore::ops
