// Low-precision float formats stored as raw bits: bf16, fp16 (IEEE binary16) and the two OCP
// FP8 formats (E4M3 "fn": bias 7, no infinities, max 448; E5M2: bias 15, with infinities, max
// 57344). Conversions from float round to nearest, ties to even. FP8 conversion either follows
// the OCP non-saturating rule (overflow -> NaN for E4M3, Inf for E5M2) or saturates to the
// largest finite value, which is what FP8 training recipes use.
#pragma once

#include <cstdint>
#include <cstring>

namespace mcore {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN: canonical quiet NaN, as PyTorch
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_bits_to_float(uint16_t h) {
  return bits_float(static_cast<uint32_t>(h) << 16);
}

uint16_t float_to_fp16_bits(float f);
float fp16_bits_to_float(uint16_t h);

// double -> float on the bit pattern, so the FTZ/DAZ mode of compute threads cannot flush
// results in float's subnormal range. round_to_odd: truncate and set the last bit when inexact;
// a second rounding of that result to any format with at most 22 significand bits (bf16, fp16,
// fp8) then equals one correct rounding of the double (no double-rounding error).
float double_to_float_exact(double d, bool round_to_odd = false);
// float -> double, exact for subnormal floats too (hardware conversion under DAZ reads them as 0).
inline double float_to_double_exact(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7f800000u) != 0 || (u & 0x7fffffu) == 0) return static_cast<double>(f);
  double v = static_cast<double>(u & 0x7fffffu) * 0x1p-149;  // exact: < 2^23 * 2^-149
  return (u & 0x80000000u) ? -v : v;
}

enum class Fp8Format { kE4M3, kE5M2 };
uint8_t float_to_fp8_bits(float f, Fp8Format format, bool saturate);
float fp8_bits_to_float(uint8_t b, Fp8Format format);
// Largest finite magnitude of a format: 448 for E4M3, 57344 for E5M2.
float fp8_max(Fp8Format format);

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float f) : bits(float_to_bf16_bits(f)) {}
  static BFloat16 from_bits(uint16_t b) {
    BFloat16 v;
    v.bits = b;
    return v;
  }
  operator float() const { return bf16_bits_to_float(bits); }
};

struct Half {
  uint16_t bits = 0;
  Half() = default;
  explicit Half(float f) : bits(float_to_fp16_bits(f)) {}
  static Half from_bits(uint16_t b) {
    Half v;
    v.bits = b;
    return v;
  }
  operator float() const { return fp16_bits_to_float(bits); }
};

struct Float8E4M3 {
  uint8_t bits = 0;
  Float8E4M3() = default;
  explicit Float8E4M3(float f, bool saturate = false)
      : bits(float_to_fp8_bits(f, Fp8Format::kE4M3, saturate)) {}
  static Float8E4M3 from_bits(uint8_t b) {
    Float8E4M3 v;
    v.bits = b;
    return v;
  }
  operator float() const { return fp8_bits_to_float(bits, Fp8Format::kE4M3); }
};

struct Float8E5M2 {
  uint8_t bits = 0;
  Float8E5M2() = default;
  explicit Float8E5M2(float f, bool saturate = false)
      : bits(float_to_fp8_bits(f, Fp8Format::kE5M2, saturate)) {}
  static Float8E5M2 from_bits(uint8_t b) {
    Float8E5M2 v;
    v.bits = b;
    return v;
  }
  operator float() const { return fp8_bits_to_float(bits, Fp8Format::kE5M2); }
};

static_assert(sizeof(BFloat16) == 2 && sizeof(Half) == 2);
static_assert(sizeof(Float8E4M3) == 1 && sizeof(Float8E5M2) == 1);

}  // namespace mcore
