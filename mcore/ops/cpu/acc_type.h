// The type a kernel computes in for a storage type: narrow floats compute in float32.
#pragma once

#include "mcore/base/dtype.h"

namespace mcore::ops {

template <class T>
struct AccType {
  using type = T;
};
template <>
struct AccType<BFloat16> {
  using type = float;
};
template <>
struct AccType<Half> {
  using type = float;
};
template <class T>
using acc_t = typename AccType<T>::type;

// Stores an accumulator value into storage type T with one rounding.
template <class T, class A>
inline T store(A v) {
  if constexpr (std::is_same_v<T, A>) {
    return v;
  } else {
    return T(static_cast<float>(v));
  }
}

}  // namespace mcore::ops

// float32, float64, bfloat16, float16 with scalar_t bound to the storage type.
#define MCORE_DISPATCH_FLOAT_TYPES(dtype, name, ...)                     \
  [&] {                                                                  \
    switch (dtype) {                                                     \
      case ::mcore::DType::F32: {                                        \
        using scalar_t = float;                                          \
        return __VA_ARGS__();                                            \
      }                                                                  \
      case ::mcore::DType::F64: {                                        \
        using scalar_t = double;                                         \
        return __VA_ARGS__();                                            \
      }                                                                  \
      case ::mcore::DType::BF16: {                                       \
        using scalar_t = ::mcore::BFloat16;                              \
        return __VA_ARGS__();                                            \
      }                                                                  \
      case ::mcore::DType::F16: {                                        \
        using scalar_t = ::mcore::Half;                                  \
        return __VA_ARGS__();                                            \
      }                                                                  \
      default:                                                           \
        break;                                                           \
    }                                                                    \
    MCORE_FAIL() << name << ": unsupported dtype " << (dtype)            \
                 << " (expected float32, float64, bfloat16 or float16)"; \
    throw 0; /* unreachable */                                           \
  }()
