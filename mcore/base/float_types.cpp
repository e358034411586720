#include "mcore/base/float_types.h"

#include <cmath>

namespace mcore {

namespace {

// Round a float to a binary format with `exp_bits` exponent bits, `man_bits` mantissa bits and
// IEEE-style subnormals, returning the encoded magnitude (no sign) or `overflow` when the
// rounded value exceeds `max_code` (the largest finite encoding). Works on the exact float
// value, so one rounding step gives round-to-nearest-even for normals and subnormals alike.
uint32_t round_to_minifloat(float a, int exp_bits, int man_bits, uint32_t max_code,
                            bool* overflow) {
  *overflow = false;
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int min_normal_exp = 1 - bias;
  uint32_t u = float_bits(a);  // a >= 0, finite
  if (u == 0) return 0;
  int e = static_cast<int>((u >> 23) & 0xff);
  uint32_t m = u & 0x7fffff;
  int exp = (e == 0) ? -126 : e - 127;
  uint32_t sig = (e == 0) ? m : (m | 0x800000u);  // value = sig * 2^(exp-23)
  // Target: value = q * 2^(max(exp,min_normal_exp) - man_bits), q integer.
  int target_exp = exp < min_normal_exp ? min_normal_exp : exp;
  int shift = (target_exp - man_bits) - (exp - 23);  // right shift applied to sig
  uint64_t q;
  if (shift <= 0) {
    q = static_cast<uint64_t>(sig) << (-shift);
  } else if (shift >= 40) {
    q = 0;
  } else {
    uint64_t s = sig;
    uint64_t keep = s >> shift;
    uint64_t rem = s & ((uint64_t{1} << shift) - 1);
    uint64_t half = uint64_t{1} << (shift - 1);
    if (rem > half || (rem == half && (keep & 1))) keep++;
    q = keep;
  }
  // q may have carried into the next binade; re-normalize into exponent field + mantissa.
  int biased;
  uint32_t mant;
  if (q < (uint64_t{1} << man_bits)) {
    if (target_exp == min_normal_exp) {
      biased = 0;  // subnormal (or zero)
      mant = static_cast<uint32_t>(q);
    } else {
      biased = target_exp + bias;  // cannot happen for normals (q >= 2^man_bits)
      mant = static_cast<uint32_t>(q) & ((1u << man_bits) - 1);
    }
  } else {
    int extra = 0;
    while (q >= (uint64_t{2} << man_bits)) {
      q >>= 1;  // only exact carries reach here (q == 2^(man_bits+1))
      extra++;
    }
    biased = target_exp + extra + bias;
    mant = static_cast<uint32_t>(q) & ((1u << man_bits) - 1);
  }
  uint64_t code = (static_cast<uint64_t>(biased) << man_bits) | mant;
  if (biased >= (1 << exp_bits) || code > max_code) {
    *overflow = true;
    return max_code;
  }
  return static_cast<uint32_t>(code);
}

}  // namespace

uint16_t float_to_fp16_bits(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (std::isinf(f)) return static_cast<uint16_t>(sign | 0x7c00u);
  bool overflow;
  uint32_t code = round_to_minifloat(a, 5, 10, 0x7bffu, &overflow);
  if (overflow) return static_cast<uint16_t>(sign | 0x7c00u);
  return static_cast<uint16_t>(sign | code);
}

float fp16_bits_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1f;
  uint32_t m = h & 0x3ff;
  if (e == 0x1f) return bits_float(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  return bits_float(sign | ((e + 112) << 23) | (m << 13));
}

float double_to_float_exact(double d, bool round_to_odd) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  const uint32_t sign = static_cast<uint32_t>(u >> 32) & 0x80000000u;
  const uint64_t a = u & 0x7fffffffffffffffull;
  if (a >= 0x7ff0000000000000ull) {  // inf, or NaN (quieted, top payload bits kept)
    if (a == 0x7ff0000000000000ull) return bits_float(sign | 0x7f800000u);
    return bits_float(sign | 0x7fc00000u | static_cast<uint32_t>((a >> 29) & 0x3fffffu));
  }
  if (a == 0) return bits_float(sign);
  const int e = static_cast<int>(a >> 52);
  const int exp = (e == 0 ? -1022 : e - 1023);
  const uint64_t sig = (a & 0xfffffffffffffull) | (e == 0 ? 0 : (1ull << 52));  // sig * 2^(exp-52)
  if (exp > 127) {  // beyond every finite float: odd rounding keeps FLT_MAX, RNE gives inf
    return bits_float(sign | (round_to_odd ? 0x7f7fffffu : 0x7f800000u));
  }
  // Float result q * 2^(target_exp - 23); shift is the number of sig bits dropped.
  const int target_exp = exp < -126 ? -126 : exp;
  const int shift = 29 + (target_exp - exp);
  uint64_t q = shift >= 64 ? 0 : (sig >> shift);
  const uint64_t rem = shift >= 64 ? sig : (sig & ((uint64_t{1} << shift) - 1));
  if (round_to_odd) {
    q |= rem != 0 ? 1u : 0u;
  } else if (shift < 64) {
    const uint64_t half = uint64_t{1} << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
  }
  // Encode: normals carry the implicit bit in q (a carry into the next binade or out of the
  // subnormal range lands in the exponent field by plain addition).
  uint32_t bits;
  if (exp >= -126) {
    bits =
        (static_cast<uint32_t>(target_exp + 127) << 23) + static_cast<uint32_t>(q - (1ull << 23));
  } else {
    bits = static_cast<uint32_t>(q);  // subnormal; q == 2^23 encodes the smallest normal
  }
  return bits_float(sign | bits);
}

float fp8_max(Fp8Format format) {
  return format == Fp8Format::kE4M3 ? 448.0f : 57344.0f;
}

uint8_t float_to_fp8_bits(float f, Fp8Format format, bool saturate) {
  const bool e4m3 = format == Fp8Format::kE4M3;
  uint8_t sign = (float_bits(f) >> 24) & 0x80u;
  // Canonical NaNs as ml_dtypes, PyTorch and Transformer Engine write them: E4M3 has one NaN
  // (S.1111.111); E5M2's quiet NaN is S.11111.10.
  const uint8_t nan = e4m3 ? 0x7f : 0x7e;
  const uint8_t max_code = e4m3 ? 0x7e : 0x7b;
  if (std::isnan(f)) return static_cast<uint8_t>(sign | nan);
  if (std::isinf(f)) {
    if (saturate) return static_cast<uint8_t>(sign | max_code);
    return static_cast<uint8_t>(sign | (e4m3 ? nan : 0x7c));
  }
  bool overflow;
  uint32_t code = e4m3 ? round_to_minifloat(std::fabs(f), 4, 3, max_code, &overflow)
                       : round_to_minifloat(std::fabs(f), 5, 2, max_code, &overflow);
  if (overflow) {
    if (saturate) return static_cast<uint8_t>(sign | max_code);
    return static_cast<uint8_t>(sign | (e4m3 ? nan : 0x7c));
  }
  return static_cast<uint8_t>(sign | code);
}

float fp8_bits_to_float(uint8_t b, Fp8Format format) {
  const bool neg = b & 0x80;
  const uint32_t mag = b & 0x7f;
  float v;
  if (format == Fp8Format::kE4M3) {
    if (mag == 0x7f) return std::nanf("");
    uint32_t e = mag >> 3, m = mag & 7;
    v = e == 0 ? std::ldexp(static_cast<float>(m), -9)
               : std::ldexp(static_cast<float>(8 + m), static_cast<int>(e) - 10);
  } else {
    uint32_t e = mag >> 2, m = mag & 3;
    if (e == 31) return m ? std::nanf("") : (neg ? -INFINITY : INFINITY);
    v = e == 0 ? std::ldexp(static_cast<float>(m), -16)
               : std::ldexp(static_cast<float>(4 + m), static_cast<int>(e) - 17);
  }
  return neg ? -v : v;
}

}  // namespace mcore
