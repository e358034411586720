// Building blocks shared by the AVX-512 kernels (sgemm_avx512.cpp, tile_gemm.cpp): the target
// attribute their functions carry (the library is built for any x86-64 and picks these paths at
// run time), lane masks, and the 16x16 in-register transpose used to pack transposed operands.
// Include only from .cpp files that check the CPU before calling into these paths.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

// prfchw: prefetchw, which every AVX-512 CPU has (and older ones execute as a no-op).
#define MCORE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,prfchw")))

// GCC 12 flags the _mm512_undefined_ps() inside shuffle intrinsics as maybe-uninitialized when
// they are inlined into larger functions; the value is never used.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace mcore::ops::cpu::avx512 {

// Lanes [0, n) of a 16-lane mask, n clamped to [0, 16].
inline __mmask16 lane_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// In-register transpose of a 16x16 float block: r[i][j] -> r[j][i].
MCORE_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Now within each 128-bit lane L, u[4g + q] holds column 4L + q of rows 4g..4g+3.
  for (int g = 0; g < 4; ++g) {
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // Finally a 4x4 transpose of 128-bit lanes among r[q], r[4+q], r[8+q], r[12+q].
  for (int q = 0; q < 4; ++q) {
    __m512 s0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44);
    __m512 s1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);
    __m512 s2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44);
    __m512 s3 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
    t[q] = _mm512_shuffle_f32x4(s0, s2, 0x88);
    t[4 + q] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
    t[8 + q] = _mm512_shuffle_f32x4(s1, s3, 0x88);
    t[12 + q] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Copies a rows x cols block stored "strided" (element (i, p) at src[i * ld + p]) into
// dst[p * dst_ld + i] for p < cols, i < rows (rows <= 16), through 16x16 register transposes.
// Rows beyond `rows` up to `pad_rows` are written as zeros.
MCORE_AVX512 inline void pack_transposed(const float* src, int64_t ld, int64_t rows, int64_t cols,
                                         float* dst, int64_t dst_ld, int pad_rows) {
  const __mmask16 row_mask = lane_mask(pad_rows);
  for (int64_t p = 0; p < cols; p += 16) {
    const __mmask16 col_mask = lane_mask(cols - p);
    __m512 r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(col_mask, src + i * ld + p) : _mm512_setzero_ps();
    transpose16(r);
    const int64_t np = std::min<int64_t>(16, cols - p);
    for (int64_t j = 0; j < np; ++j) _mm512_mask_storeu_ps(dst + (p + j) * dst_ld, row_mask, r[j]);
  }
}

}  // namespace mcore::ops::cpu::avx512
