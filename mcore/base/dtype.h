// Element types of tensors, their sizes and names, and the C++ type behind each. Kernels
// dispatch on DType with MCORE_DISPATCH_ALL here or MCORE_DISPATCH_FLOAT_TYPES
// (mcore/ops/cpu/acc_type.h).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "mcore/base/error.h"
#include "mcore/base/float_types.h"

namespace mcore {

enum class DType : uint8_t {
  F64,
  F32,
  BF16,
  F16,
  F8E4M3,
  F8E5M2,
  I64,
  I32,
  I16,
  I8,
  U16,
  U8,
  BOOL,
};

size_t dtype_size(DType d);
const char* dtype_name(DType d);  // "float32", "bfloat16", ... (PyTorch's spellings)
DType dtype_from_name(const std::string& name);
bool is_floating(DType d);
bool is_low_precision(DType d);  // bf16, fp16, fp8: stored narrow, computed in fp32
inline std::ostream& operator<<(std::ostream& os, DType d) {
  return os << dtype_name(d);
}

template <class T>
struct DTypeOf;
#define MCORE_DTYPE_OF(T, D)                 \
  template <>                                \
  struct DTypeOf<T> {                        \
    static constexpr DType value = DType::D; \
  };
MCORE_DTYPE_OF(double, F64)
MCORE_DTYPE_OF(float, F32)
MCORE_DTYPE_OF(BFloat16, BF16)
MCORE_DTYPE_OF(Half, F16)
MCORE_DTYPE_OF(Float8E4M3, F8E4M3)
MCORE_DTYPE_OF(Float8E5M2, F8E5M2)
MCORE_DTYPE_OF(int64_t, I64)
MCORE_DTYPE_OF(int32_t, I32)
MCORE_DTYPE_OF(int16_t, I16)
MCORE_DTYPE_OF(int8_t, I8)
MCORE_DTYPE_OF(uint16_t, U16)
MCORE_DTYPE_OF(uint8_t, U8)
MCORE_DTYPE_OF(bool, BOOL)
#undef MCORE_DTYPE_OF

template <class T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

}  // namespace mcore

// Every dtype, with `scalar_t` bound to its storage type.
#define MCORE_DISPATCH_ALL(dtype, name, ...)                                \
  [&] {                                                                     \
    switch (dtype) {                                                        \
      case ::mcore::DType::F64: {                                           \
        using scalar_t = double;                                            \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::F32: {                                           \
        using scalar_t = float;                                             \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::BF16: {                                          \
        using scalar_t = ::mcore::BFloat16;                                 \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::F16: {                                           \
        using scalar_t = ::mcore::Half;                                     \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::F8E4M3: {                                        \
        using scalar_t = ::mcore::Float8E4M3;                               \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::F8E5M2: {                                        \
        using scalar_t = ::mcore::Float8E5M2;                               \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::I64: {                                           \
        using scalar_t = int64_t;                                           \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::I32: {                                           \
        using scalar_t = int32_t;                                           \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::I16: {                                           \
        using scalar_t = int16_t;                                           \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::I8: {                                            \
        using scalar_t = int8_t;                                            \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::U16: {                                           \
        using scalar_t = uint16_t;                                          \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::U8: {                                            \
        using scalar_t = uint8_t;                                           \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::mcore::DType::BOOL: {                                          \
        using scalar_t = bool;                                              \
        return __VA_ARGS__();                                               \
      }                                                                     \
    }                                                                       \
    MCORE_FAIL() << name << ": bad dtype code " << static_cast<int>(dtype); \
    throw 0; /* unreachable */                                              \
  }()
