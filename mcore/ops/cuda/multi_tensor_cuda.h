// CUDA versions of the multi-tensor passes in mcore/ops/multi_tensor.h and of
// multi_tensor_l2norm_squared (mcore/ops/reduction.h). Each op is one kernel launch over the
// whole list: the tensors are cut into fixed-size chunks described by a table in device memory,
// one block per chunk. Reductions are two-stage (a partial per chunk, then one block adding the
// partials in chunk order, in float64), so results are reproducible run to run and do not depend
// on the GPU's size. The ops that return a host value (the found-inf flag, norms, counts)
// synchronize with the current stream once at the end.
//
// Plain C++ header: multi_tensor.cpp / reduction.cpp call these when the tensors are on a CUDA
// device. All tensors of a list must be on the same device.
#pragma once

#include <cstdint>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

bool non_finite_check_and_unscale_(std::vector<Tensor>& grads, float inv_scale);
void multi_tensor_scale_(std::vector<Tensor>& tensors, double scale);
double multi_tensor_max_abs(const std::vector<Tensor>& tensors);
int64_t multi_tensor_count_zeros(const std::vector<Tensor>& tensors);
// float32, float64, bf16, fp16 tensors (any layout: non-contiguous ones are copied first).
double multi_tensor_l2norm_squared(const std::vector<Tensor>& tensors);

}  // namespace mcore::ops::cuda
