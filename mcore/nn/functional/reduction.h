// Differentiable reductions over chosen dimensions (torch.sum / torch.mean with dim and
// keepdim). The whole-tensor forms F::sum(x) and F::mean(x) live in basic.h.
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::F {

// Negative dims count from the end; empty `dims` reduces every dimension.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);

}  // namespace mcore::F
