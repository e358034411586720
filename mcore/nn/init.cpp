#include "mcore/nn/init.h"

namespace mcore::nn {

uint64_t stream_for_name(const std::string& name) {
  // FNV-1a, 64-bit: stable across platforms and builds.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

Tensor init_normal(const Shape& shape, const InitSpec& spec, DType dtype, const Shape& global_shape,
                   const Shape& global_offset) {
  Tensor t = empty(shape, DType::F32);
  normal_(t, {spec.seed, spec.stream, global_shape, global_offset}, 0.0, spec.std);
  return t.to(dtype);
}

}  // namespace mcore::nn
