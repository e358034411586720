// mcore's own fp32 GEMM for AVX-512 CPUs, in the BLIS/GotoBLAS structure: op(B) and a transposed
// A are packed into cache-sized blocks of register-tile-shaped panels (a non-transposed A is read
// in place, row by row), and an 8x48 (or, where N is a multiple of 64 but not of 48, 6x64)
// register-blocked microkernel computes C tiles. It exists because Debian's OpenBLAS reaches only
// ~70% of this machine's FMA peak at transformer shapes; see bench/gemm_bench.cpp. The file is
// compiled with per-function AVX-512 target attributes, so the library still loads on CPUs without
// AVX-512: call sgemm_avx512_supported() first (blas.cpp's gemm() dispatches to it).
#pragma once

#include <cstdint>

namespace mcore::ops::cpu {

// True when this CPU has the AVX-512 subsets the kernel uses (F, BW, VL, DQ) and FMA.
bool sgemm_avx512_supported();

// Row-major C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C with BLAS semantics: when beta
// is 0, C is not read (NaNs in it are overwritten). With bias (n floats), bias[j] is then added
// to column j in the same pass (a linear layer's bias, without a second pass over C). Leading
// dimensions are in elements between stored rows. Runs on the OpenMP threads (one thread when
// called inside a parallel region or for small problems). Requires sgemm_avx512_supported().
void sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, const float* bias = nullptr);

}  // namespace mcore::ops::cpu
