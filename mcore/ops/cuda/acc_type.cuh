// Device-side accumulation types for the elementwise and reduction kernels, as the CPU's
// mcore/ops/cpu/acc_type.h: float for float and the narrow types (bf16, fp16, fp8), double for
// double; load() widens an element, store() rounds once back (round-to-nearest-even, the CPU's
// conversion rules from mcore/tensor/cuda/convert.cuh).
#pragma once

#include "mcore/base/dtype.h"
#include "mcore/base/error.h"
#include "mcore/tensor/cuda/convert.cuh"

namespace mcore::ops::cuda {

template <class T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};
template <class T>
using acc_t = typename Acc<T>::type;

template <class T>
__device__ __forceinline__ acc_t<T> load(T v) {
  if constexpr (mcore::cuda::dev::is_narrow_v<T>)
    return mcore::cuda::dev::narrow_to_float(v);
  else
    return v;
}

template <class T, class A>
__device__ __forceinline__ T store(A v) {
  if constexpr (mcore::cuda::dev::is_narrow_v<T>)
    return mcore::cuda::dev::float_to_narrow<T>(static_cast<float>(v), false);
  else
    return static_cast<T>(v);
}

// Calls fn with a value of the device element type for d (float32, float64, bf16, fp16).
template <class Fn>
void dispatch_float(DType d, const char* op, Fn&& fn) {
  switch (d) {
    case DType::F32:
      return fn(float{});
    case DType::F64:
      return fn(double{});
    case DType::BF16:
      return fn(mcore::cuda::dev::Bf16{});
    case DType::F16:
      return fn(mcore::cuda::dev::F16{});
    default:
      break;
  }
  MCORE_FAIL() << op << ": unsupported dtype " << d
               << " on CUDA (expected float32, float64, bfloat16 or float16)";
}

}  // namespace mcore::ops::cuda
