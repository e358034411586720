// Four consecutive elements as one aligned load/store (16 bytes for float32, 8 for bf16/fp16,
// two 16-byte accesses for float64), shared by the element-wise optimizer kernels. Host code
// checks alignment (`aligned4`) and falls back to scalar accesses otherwise.
#pragma once

#include <cstdint>
#include <type_traits>

#include "mcore/ops/cuda/scalar_cast.cuh"

namespace mcore::ops::cuda {

template <class T>
struct alignas(4 * sizeof(T)) Pack4 {
  T v[4];
};

// p is aligned for Pack4<T> (null counts as aligned: an absent operand).
template <class T>
inline bool aligned4(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

// A gradient element in the parameter's type (through float32 for the narrow types).
template <class P, class G>
__device__ __forceinline__ P grad_as(G g) {
  if constexpr (std::is_same_v<G, P>) {
    return g;
  } else {
    return static_cast<P>(to_float(g));
  }
}

}  // namespace mcore::ops::cuda
