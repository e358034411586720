// mcore's fp32 GEMM on Intel AMX tiles (Sapphire Rapids and later Xeons), at fp32 accuracy.
// AMX multiplies bf16 matrices only, at 16x the rate of AVX-512 fp32 FMAs on this machine kind
// (measured: 3.2 TFLOP/s per core against 0.22). Each fp32 operand is split into three bf16
// pieces, x = x0 + x1 + x2 (each the bf16 rounding of what the previous pieces leave; for
// normal-range x the three hold its 24-bit significand exactly), and AMX's fp32 tiles
// accumulate the six piece products whose weight reaches fp32's rounding unit: a0b0, a0b1,
// a1b0, a0b2, a1b1, a2b0 ("bf16x6"). Each dropped product is at most 2^-24 |a b|. Each K pass of
// up to 768 is summed from zero and then added to C, as the FMA kernel sums its K blocks, so
// the error stays at fp32 GEMM level for any K (tests/ops_gemm/sgemm_test.cpp bounds it against
// the AVX-512 kernel's, at K = 2048 over 12 binades and at K = 16384 with positive operands).
// On this machine kind it runs up to 1.5x faster than the FMA kernel. Operands whose pieces
// are zero past the first (exactly bf16, as bf16 tensors widened to fp32 are) skip those
// pieces' products, bit for bit the same result: one product instead of six.
//
// Where it departs from IEEE fp32 GEMM, at the ends of the range:
// - An infinite input, or one that rounds to infinity in bf16 (above ~3.396e38), gives NaN
//   where fp32 could give +-inf: its remainder pieces are NaN. The result is non-finite
//   either way, which is what overflow checks (loss scaling's found-inf) test. NaNs
//   propagate.
// - AMX flushes subnormal bf16 pieces. Relative accuracy drops for operands below ~1e-33,
//   and reaches bf16's (~2^-8) below ~3e-36. The library already runs with denormals flushed
//   to zero.
#pragma once

#include <cstdint>

namespace mcore::ops::cpu {

// True when the CPU has AMX-BF16 and AVX512-BF16 and the kernel lets this process use the AMX
// tile state (Linux 5.16+, requested here once per process).
bool sgemm_amx_supported();

// Same contract as sgemm_avx512 (sgemm_avx512.h): row-major C = alpha * op(A) op(B) + beta * C
// (+ bias), BLAS semantics for beta == 0, OpenMP threads unless called inside a parallel
// region. Requires sgemm_amx_supported().
void sgemm_amx(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc, const float* bias = nullptr);

}  // namespace mcore::ops::cpu
