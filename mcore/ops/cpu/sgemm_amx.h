// mcore's fp32 GEMM on Intel AMX tiles (Sapphire Rapids and later Xeons), at fp32 accuracy.
// AMX multiplies bf16 matrices only, at 16x the rate of AVX-512 fp32 FMAs on this machine kind
// (measured: 3.2 TFLOP/s per core against 0.22). Each fp32 operand is split into three bf16
// pieces, x = x0 + x1 + x2 (each the bf16 rounding of what the previous pieces left, so together
// they hold x's 24-bit significand), and C accumulates the six piece products whose weight
// reaches fp32's rounding unit: a0b0, a0b1, a1b0, a0b2, a1b1, a2b0 ("bf16x6"). The dropped
// terms and the split's remainder are below 2^-24 of |a b|; the products are exact in AMX's fp32
// accumulators. The result carries fp32 GEMM error (tests/ops_gemm/sgemm_test.cpp bounds it the
// same way as the AVX-512 kernel's), at up to twice the speed of the best FMA kernel.
//
// Deviations from IEEE fp32 GEMM at the range's ends: an infinite input (or one above bf16's
// largest finite value, ~3.39e38) makes NaN where fp32 could give +-inf, since its remainder
// pieces are NaN; the result is non-finite either way, which is what overflow checks (loss
// scaling's found-inf) test. NaNs propagate. AMX flushes subnormal bf16 pieces, which costs
// relative accuracy only for inputs below ~1.5e-33 (the library already runs with denormals
// flushed to zero).
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
