// Differentiable dropout with a layout-independent Philox mask keyed by (seed, stream, global
// element index); see mcore/ops/dropout.h for the exact keep rule. The backward regenerates
// the mask instead of storing it.
#pragma once

#include <cstdint>

#include "mcore/ops/dropout.h"
#include "mcore/tensor/tensor.h"

namespace mcore::F {

// Identity (the same tensor, no copy) when !training or p == 0. global_offset: the global flat
// index of x's first element when x is a slice of a larger tensor.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream,
               uint64_t global_offset = 0);
// The same for a tensor whose elements sit in the global tensor as `map` says.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream,
               const ops::DropoutIndexMap& map);

}  // namespace mcore::F
