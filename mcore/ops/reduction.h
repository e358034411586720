// Reductions: sums and means over all elements or over dimensions, max, and the squared L2
// norm over many tensors (gradient clipping). Accumulation is in float64 for float64 inputs and
// float32 otherwise, with pairwise blocks so long sums keep their precision.
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// Sum of all elements as a 0-d tensor of x's dtype.
Tensor sum_all(const Tensor& x);

}  // namespace mcore::ops
