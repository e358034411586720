// GEMM backend for the CPU: OpenBLAS's OpenMP build, loaded at run time. Loading it ourselves
// lets mcore (1) choose the OpenMP variant, which shares the OpenMP thread pool instead of
// fighting it as the pthread variant does, and (2) set OPENBLAS_CORETYPE before OpenBLAS
// initializes: Debian's OpenBLAS 0.3.21 does not know recent Xeons (family 6 model 207) and
// falls back to its "Prescott" SSE3 kernels at a tenth of the speed, while its SkylakeX AVX-512
// kernels run them at ~90% of peak. If no OpenBLAS is found, a portable blocked GEMM is used
// (correct but slow) and a warning says how to install the fast one.
//
// float GEMMs large enough to matter go to mcore's own kernels: on CPUs with AMX (Sapphire
// Rapids and later) its AMX kernel, which reaches fp32 accuracy from bf16 tiles
// (sgemm_amx.h), else its AVX-512 kernel (sgemm_avx512.h), since Debian's OpenBLAS reaches only
// ~70% of the FMA peak at transformer shapes. The environment variable
// MCORE_GEMM=openblas|avx512|amx forces one backend (set_sgemm_backend too).
#pragma once

#include <cstdint>
#include <string>

namespace mcore::ops::cpu {

struct BlasInfo {
  std::string backend;  // "OpenBLAS" or "builtin": the library behind double (and small float)
  std::string sgemm;    // float GEMM: "mcore AVX-512 (fallback OpenBLAS)", "OpenBLAS", ...
  std::string library;  // path loaded
  std::string core;     // OpenBLAS kernel family, e.g. "SkylakeX"
  std::string config;   // OpenBLAS build config string
  int threads = 1;
};

// Loads the backend on first use and logs one line describing it.
const BlasInfo& blas_info();

// Which kernel float GEMMs use. kAuto: mcore's AMX kernel when the CPU has AMX, every side of
// the product is at least 32 and it has at least 64^3 multiply-adds, else its AVX-512 kernel when
// the CPU has AVX-512 and the problem is big enough, else the BLAS library. kAvx512 never uses AMX;
// kAmx uses it at every size. Each falls back to the next where the CPU lacks the instructions.
enum class SgemmBackend { kAuto, kOpenBlas, kAvx512, kAmx };
// Process-wide override (benchmarks, tests); the initial value comes from MCORE_GEMM.
void set_sgemm_backend(SgemmBackend backend);
SgemmBackend sgemm_backend();

// Row-major C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C, with leading dimensions
// (elements between rows as stored).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// C = alpha * op(A) @ op(B) + bias (bias[j] added to column j; C is not read). The AVX-512
// kernel adds the bias as it stores C; the library path adds it in a second pass.
void gemm_bias(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, const float* bias,
               float* c, int64_t ldc);

}  // namespace mcore::ops::cpu
