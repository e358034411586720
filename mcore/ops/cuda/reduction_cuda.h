// CUDA kernels of the reductions in mcore/ops/reduction.h. reduction.cpp lays the input out as a
// contiguous [outer, reduce, inner] array (as for its CPU kernels) and calls these. Accumulation
// is float32 (float64 for float64 inputs) as on the CPU, in a fixed tree order, so results are
// deterministic run to run (they differ from the CPU's pairwise order in the last bits).
//
// Plain C++ header (no CUDA includes).
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

// out[o, i] = scale * sum_r src[o, r, i]; src contiguous, out contiguous [outer * inner].
void sum_dims(const Tensor& src, Tensor& out, int64_t outer, int64_t reduce, int64_t inner,
              double scale);
// values[o, i], indices[o, i] = max_r src[o, r, i] and its first position (NaN wins).
void max_dims(const Tensor& src, Tensor& values, Tensor& indices, int64_t outer, int64_t reduce,
              int64_t inner);
// gx[o, indices[o, i], i] = grad[o, i]; gx is contiguous and already zero.
void max_backward_scatter(const Tensor& grad, const Tensor& indices, Tensor& gx, int64_t outer,
                          int64_t reduce, int64_t inner);
// sum of squares of every element of every tensor, accumulated in float64 (one device, any
// float dtypes); waits for the result.
double sum_squares(const std::vector<Tensor>& tensors);

}  // namespace mcore::ops::cuda
