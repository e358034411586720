// Device-side accumulation types for the elementwise and reduction kernels, as the CPU's
// mcore/ops/cpu/acc_type.h: float for float and the narrow types (bf16, fp16, fp8), double for
// double; load() widens an element, store() rounds once back (round-to-nearest-even, the CPU's
// conversion rules from mcore/tensor/cuda/convert.cuh).
#pragma once

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

}  // namespace mcore::ops::cuda
