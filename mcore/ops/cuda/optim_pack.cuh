// Four consecutive elements as one aligned load/store (16 bytes for float32, 8 for bf16/fp16,
// two 16-byte accesses for float64), shared by the element-wise optimizer kernels. Host code
// checks alignment (`aligned4`) and falls back to scalar accesses otherwise.
#pragma once

#include <cstdint>

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

}  // namespace mcore::ops::cuda
