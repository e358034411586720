// Parameter initialization from Philox streams. A parameter's values depend only on
// (seed, stream) and the element's global index, never on the rank that fills it, so a model
// sharded across ranks starts from exactly the weights of the unsharded model.
#pragma once

#include <cstdint>
#include <string>

#include "mcore/tensor/factory.h"

namespace mcore::nn {

struct InitSpec {
  uint64_t seed = 1234;
  uint64_t stream = 0;
  double std = 0.02;  // Megatron's --init-method-std default
};

// A stable stream id for a parameter name ("decoder.layers.3.mlp.linear_fc1.weight"): init
// does not depend on construction order.
uint64_t stream_for_name(const std::string& name);

// N(0, std) over `shape` (or over the given slice of the global tensor).
Tensor init_normal(const Shape& shape, const InitSpec& spec, DType dtype = DType::F32,
                   const Shape& global_shape = {}, const Shape& global_offset = {});

}  // namespace mcore::nn
