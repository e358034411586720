// Device-side conversions between mcore's storage types and the float accumulator, shared by
// the attention, optimizer and FP8 kernels: loads widen to float (double stays double), stores
// round once to nearest even, as the CPU's acc_type.h `store<T>` does.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "mcore/base/dtype.h"

namespace mcore::ops::cuda {

template <class T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}

// Widening load into the accumulator type A (float, or double for double storage).
template <class A, class T>
__device__ __forceinline__ A load_as(const T* p) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return static_cast<A>(*p);
  } else {
    return static_cast<A>(to_float(*p));
  }
}

template <class T>
__device__ __forceinline__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  // The CPU writes one canonical quiet NaN (0x7fc0); CUDA's conversion keeps payload bits.
  if (v != v) return __ushort_as_bfloat16(static_cast<unsigned short>(0x7fc0));
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  // The CPU writes sign | 0x7e00 for NaN (float_to_fp16_bits).
  if (v != v)
    return __ushort_as_half(
        static_cast<unsigned short>(((__float_as_uint(v) >> 16) & 0x8000u) | 0x7e00u));
  return __float2half_rn(v);
}

// Arithmetic with one IEEE rounding per operation and no contraction into FMAs (nvcc contracts
// a * b + c by default): the optimizer kernels reproduce the CPU's (and PyTorch's) roundings
// exactly, so CPU and GPU trajectories agree bit for bit.
__device__ __forceinline__ float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ float add_rn(float a, float b) {
  return __fadd_rn(a, b);
}
__device__ __forceinline__ float div_rn(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ __forceinline__ float sqrt_rn(float a) {
  return __fsqrt_rn(a);
}
__device__ __forceinline__ float fma_rn(float a, float b, float c) {
  return __fmaf_rn(a, b, c);
}
__device__ __forceinline__ double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}
__device__ __forceinline__ double add_rn(double a, double b) {
  return __dadd_rn(a, b);
}
__device__ __forceinline__ double div_rn(double a, double b) {
  return __ddiv_rn(a, b);
}
__device__ __forceinline__ double sqrt_rn(double a) {
  return __dsqrt_rn(a);
}
__device__ __forceinline__ double fma_rn(double a, double b, double c) {
  return __fma_rn(a, b, c);
}

// The CUDA element type of an mcore storage type (same bit layout).
template <class T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<BFloat16> {
  using type = __nv_bfloat16;
};
template <>
struct DeviceType<Half> {
  using type = __half;
};

}  // namespace mcore::ops::cuda
