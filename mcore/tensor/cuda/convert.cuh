// Device-side element types and conversions with the exact semantics of the CPU ones
// (mcore/base/float_types.h, mcore/tensor/copy.cpp): round to nearest even, canonical NaNs
// (bf16 0x7fc0, fp16 sign|0x7e00, E4M3 S.1111.111, E5M2 S.11111.10), fp8 overflow to NaN/Inf
// or, when saturating, to the largest finite value, and double -> narrow conversions rounded
// once (round-to-odd on the float detour). Storage types are plain bit holders, so the same
// bits move between host and device.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace mcore::cuda::dev {

struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};
struct E4M3 {
  uint8_t bits;
};
struct E5M2 {
  uint8_t bits;
};

template <class T>
inline constexpr bool is_narrow_v = std::is_same_v<T, Bf16> || std::is_same_v<T, F16> ||
                                    std::is_same_v<T, E4M3> || std::is_same_v<T, E5M2>;
template <class T>
inline constexpr bool is_fp8_v = std::is_same_v<T, E4M3> || std::is_same_v<T, E5M2>;

__device__ __forceinline__ float bf16_to_float(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
__device__ __forceinline__ uint16_t float_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
// Bit-exact as the CPU (NaN payloads kept; the hardware conversion may canonicalize them).
__device__ __forceinline__ float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (m << 13));
  return __half2float(__ushort_as_half(h));
}
__device__ __forceinline__ uint16_t float_to_f16(float f) {
  if (f != f) return static_cast<uint16_t>(((__float_as_uint(f) >> 16) & 0x8000u) | 0x7e00u);
  return __half_as_ushort(__float2half_rn(f));
}

// Rounds a finite a >= 0 to a minifloat with IEEE subnormals (float_types.cpp's
// round_to_minifloat): the encoded magnitude, or max_code with *overflow set.
__device__ __forceinline__ uint32_t round_to_minifloat(float a, int exp_bits, int man_bits,
                                                       uint32_t max_code, bool* overflow) {
  *overflow = false;
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int min_normal_exp = 1 - bias;
  const uint32_t u = __float_as_uint(a);
  if (u == 0) return 0;
  const int e = static_cast<int>((u >> 23) & 0xff);
  const uint32_t m = u & 0x7fffff;
  const int exp = (e == 0) ? -126 : e - 127;
  const uint32_t sig = (e == 0) ? m : (m | 0x800000u);
  const int target_exp = exp < min_normal_exp ? min_normal_exp : exp;
  const int shift = (target_exp - man_bits) - (exp - 23);
  uint64_t q;
  if (shift <= 0) {
    q = static_cast<uint64_t>(sig) << (-shift);
  } else if (shift >= 40) {
    q = 0;
  } else {
    const uint64_t s = sig;
    uint64_t keep = s >> shift;
    const uint64_t rem = s & ((uint64_t{1} << shift) - 1);
    const uint64_t half = uint64_t{1} << (shift - 1);
    if (rem > half || (rem == half && (keep & 1))) keep++;
    q = keep;
  }
  int biased;
  uint32_t mant;
  if (q < (uint64_t{1} << man_bits)) {
    biased = target_exp == min_normal_exp ? 0 : target_exp + bias;
    mant = static_cast<uint32_t>(q) & ((1u << man_bits) - 1);
  } else {
    int extra = 0;
    while (q >= (uint64_t{2} << man_bits)) {
      q >>= 1;
      extra++;
    }
    biased = target_exp + extra + bias;
    mant = static_cast<uint32_t>(q) & ((1u << man_bits) - 1);
  }
  const uint64_t code = (static_cast<uint64_t>(biased) << man_bits) | mant;
  if (biased >= (1 << exp_bits) || code > max_code) {
    *overflow = true;
    return max_code;
  }
  return static_cast<uint32_t>(code);
}

template <bool kE4M3>
__device__ __forceinline__ uint8_t float_to_fp8(float f, bool saturate) {
  const uint8_t sign = (__float_as_uint(f) >> 24) & 0x80u;
  const uint8_t nan = kE4M3 ? 0x7f : 0x7e;
  const uint8_t max_code = kE4M3 ? 0x7e : 0x7b;
  const uint8_t overflow_code = saturate ? max_code : (kE4M3 ? nan : 0x7c);
  if (f != f) return static_cast<uint8_t>(sign | nan);
  if (isinf(f)) return static_cast<uint8_t>(sign | overflow_code);
  bool overflow;
  const uint32_t code = kE4M3 ? round_to_minifloat(fabsf(f), 4, 3, max_code, &overflow)
                              : round_to_minifloat(fabsf(f), 5, 2, max_code, &overflow);
  if (overflow) return static_cast<uint8_t>(sign | overflow_code);
  return static_cast<uint8_t>(sign | code);
}

template <bool kE4M3>
__device__ __forceinline__ float fp8_to_float(uint8_t b) {
  const bool neg = b & 0x80;
  const uint32_t mag = b & 0x7f;
  float v;
  if (kE4M3) {
    if (mag == 0x7f) return __uint_as_float(0x7fc00000u);
    const uint32_t e = mag >> 3, m = mag & 7;
    v = e == 0 ? ldexpf(static_cast<float>(m), -9)
               : ldexpf(static_cast<float>(8 + m), static_cast<int>(e) - 10);
  } else {
    const uint32_t e = mag >> 2, m = mag & 3;
    if (e == 31)
      return m ? __uint_as_float(0x7fc00000u) : __uint_as_float(neg ? 0xff800000u : 0x7f800000u);
    v = e == 0 ? ldexpf(static_cast<float>(m), -16)
               : ldexpf(static_cast<float>(4 + m), static_cast<int>(e) - 17);
  }
  return neg ? -v : v;
}

// float <-> double NaNs as x86 (and so the CPU path) converts them: sign and the top payload
// bits kept, quiet bit set. GPU conversions would return a canonical NaN instead.
__device__ __forceinline__ float double_nan_to_float(double d) {
  const uint64_t a = static_cast<uint64_t>(__double_as_longlong(d));
  return __uint_as_float((static_cast<uint32_t>(a >> 32) & 0x80000000u) | 0x7fc00000u |
                         static_cast<uint32_t>((a >> 29) & 0x3fffffu));
}
__device__ __forceinline__ double float_to_double(float f) {
  if (f == f) return static_cast<double>(f);
  const uint64_t u = __float_as_uint(f);
  return __longlong_as_double(static_cast<long long>(
      ((u & 0x80000000u) << 32) | 0x7ff8000000000000ull | ((u & 0x7fffffu) << 29)));
}
__device__ __forceinline__ float double_to_float(double d) {
  return d == d ? static_cast<float>(d) : double_nan_to_float(d);
}

// double -> float rounded to odd: truncate, then set the last bit when inexact, so the second
// rounding to a <= 22-bit significand equals one correct rounding of the double.
__device__ __forceinline__ float double_to_float_odd(double d) {
  if (d != d) return double_nan_to_float(d);
  const float t = __double2float_rz(d);
  if (static_cast<double>(t) == d || isinf(t)) return t;
  return __uint_as_float(__float_as_uint(t) | 1u);
}

// Narrow storage -> float.
template <class T>
__device__ __forceinline__ float narrow_to_float(T v) {
  if constexpr (std::is_same_v<T, Bf16>)
    return bf16_to_float(v.bits);
  else if constexpr (std::is_same_v<T, F16>)
    return f16_to_float(v.bits);
  else if constexpr (std::is_same_v<T, E4M3>)
    return fp8_to_float<true>(v.bits);
  else
    return fp8_to_float<false>(v.bits);
}
// float -> narrow storage.
template <class T>
__device__ __forceinline__ T float_to_narrow(float f, bool saturate) {
  if constexpr (std::is_same_v<T, Bf16>)
    return T{float_to_bf16(f)};
  else if constexpr (std::is_same_v<T, F16>)
    return T{float_to_f16(f)};
  else if constexpr (std::is_same_v<T, E4M3>)
    return T{float_to_fp8<true>(f, saturate)};
  else
    return T{float_to_fp8<false>(f, saturate)};
}

// dst = convert(src), as mcore/tensor/copy.cpp's convert<D, S>.
template <class D, class S>
__device__ __forceinline__ D convert(S v, bool saturate) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, double> && std::is_same_v<S, float>) {
    return float_to_double(v);
  } else if constexpr (std::is_same_v<D, double> && is_narrow_v<S>) {
    return float_to_double(narrow_to_float(v));
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, double>) {
    return double_to_float(v);
  } else if constexpr (is_narrow_v<D> && std::is_same_v<S, double>) {
    return float_to_narrow<D>(double_to_float_odd(v), saturate);
  } else if constexpr (is_narrow_v<D> && is_narrow_v<S>) {
    return float_to_narrow<D>(narrow_to_float(v), saturate);
  } else if constexpr (is_narrow_v<D>) {
    return float_to_narrow<D>(static_cast<float>(v), saturate);
  } else if constexpr (is_narrow_v<S>) {
    if constexpr (std::is_same_v<D, bool>)
      return narrow_to_float(v) != 0.0f;
    else
      return static_cast<D>(narrow_to_float(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace mcore::cuda::dev
