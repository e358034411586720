#include "mcore/ops/cpu/blas.h"

#include <dlfcn.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "mcore/base/compute_env.h"
#include "mcore/base/error.h"
#include "mcore/base/logging.h"
#include "mcore/ops/cpu/sgemm_amx.h"
#include "mcore/ops/cpu/sgemm_avx512.h"

namespace mcore::ops::cpu {

namespace {

// m * n * k from which float GEMMs use the AVX-512 kernel in auto mode. Measured on 2 cores
// (Xeon family 6 model 207): mcore's kernel is 1.2-1.9x OpenBLAS from 32^3 up and far ahead on
// short-and-wide products (OpenBLAS: 2.4 GFLOP/s at 16x768x768), but loses on GEMV-like ones
// (m < 4 or n < 32: 0.1-0.8x), which therefore stay with OpenBLAS.
constexpr double kAvx512MinVolume = 32.0 * 32 * 32;
// The AMX kernel's thresholds (see choose_kernel).
constexpr int64_t kAmxMinSide = 32;
constexpr double kAmxMinVolume = 64.0 * 64 * 64;

// CBLAS enum values (cblas.h); declared here because OpenBLAS is loaded, not linked.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);
using DgemmFn = void (*)(int, int, int, int, int, int, double, const double*, int, const double*,
                         int, double, double*, int);
using CharFn = char* (*)();
using IntFn = int (*)();

struct Backend {
  BlasInfo info;
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  bool avx512 = false;  // mcore's AVX-512 float kernel can run here
};

// Set from MCORE_GEMM when the backend loads, or by set_sgemm_backend().
std::atomic<SgemmBackend> g_sgemm_backend{SgemmBackend::kAuto};

SgemmBackend parse_gemm_env() {
  const char* env = std::getenv("MCORE_GEMM");
  if (!env || !*env || std::strcmp(env, "auto") == 0) return SgemmBackend::kAuto;
  if (std::strcmp(env, "openblas") == 0 || std::strcmp(env, "blas") == 0)
    return SgemmBackend::kOpenBlas;
  if (std::strcmp(env, "avx512") == 0) return SgemmBackend::kAvx512;
  if (std::strcmp(env, "amx") == 0) return SgemmBackend::kAmx;
  MCORE_LOG(WARNING) << "MCORE_GEMM=" << env
                     << " is not one of auto, openblas, avx512, amx; using auto";
  return SgemmBackend::kAuto;
}

const char* core_type_for_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;  // let OpenBLAS decide
}

Backend load() {
  init_compute_environment();
  Backend be;
  be.info.threads = omp_get_max_threads();
  // Tell OpenBLAS which kernels to use before its constructor runs (unless the user did).
  if (!std::getenv("OPENBLAS_CORETYPE")) {
    if (const char* core = core_type_for_cpu()) setenv("OPENBLAS_CORETYPE", core, 0);
  }
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("MCORE_OPENBLAS")) candidates.push_back(env);
  candidates.push_back("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0");
  candidates.push_back("/usr/lib/aarch64-linux-gnu/openblas-openmp/libopenblas.so.0");
  candidates.push_back("libopenblas.so.0");
  for (const std::string& path : candidates) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    auto sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
    auto dgemm = reinterpret_cast<DgemmFn>(dlsym(h, "cblas_dgemm"));
    if (!sgemm || !dgemm) continue;
    be.sgemm = sgemm;
    be.dgemm = dgemm;
    be.info.backend = "OpenBLAS";
    be.info.library = path;
    if (auto core = reinterpret_cast<CharFn>(dlsym(h, "openblas_get_corename")))
      be.info.core = core();
    if (auto cfg = reinterpret_cast<CharFn>(dlsym(h, "openblas_get_config")))
      be.info.config = cfg();
    if (auto par = reinterpret_cast<IntFn>(dlsym(h, "openblas_get_parallel"))) {
      // 2 = OpenMP build. A pthread build would oversubscribe the cores with OpenMP's threads.
      if (par() != 2)
        MCORE_LOG(WARNING) << "OpenBLAS at " << path << " is not the OpenMP build; install "
                           << "libopenblas0-openmp for full speed";
    }
    break;
  }
  if (!be.sgemm) {
    be.info.backend = "builtin";
    be.info.core = "portable";
    MCORE_LOG(WARNING) << "OpenBLAS not found: using mcore's portable GEMM, which is slow. "
                       << "Install it with: apt-get install libopenblas0-openmp";
  }
  be.avx512 = sgemm_avx512_supported();
  const SgemmBackend choice = parse_gemm_env();
  g_sgemm_backend.store(choice);
  const std::string lib = be.info.backend + " (" + be.info.library + "), kernel " + be.info.core;
  if (!be.avx512 || choice == SgemmBackend::kOpenBlas) {
    be.info.sgemm = be.info.backend;
    MCORE_LOG(INFO) << "GEMM backend: " << lib << ", " << be.info.threads << " threads"
                    << (be.avx512 ? " (MCORE_GEMM=openblas)" : "");
  } else {
    // Only when the AMX kernel may run: asking Linux for the tile state enlarges every signal
    // frame of the process, which a user who forced another kernel need not pay.
    const bool amx =
        (choice == SgemmBackend::kAuto || choice == SgemmBackend::kAmx) && sgemm_amx_supported();
    const char* kernel = amx ? "mcore AMX (bf16x6, fp32 accuracy)" : "mcore AVX-512";
    const bool forced = choice == SgemmBackend::kAvx512 || choice == SgemmBackend::kAmx;
    be.info.sgemm = std::string(kernel) + (forced ? " (forced)" : "") + (amx ? " + AVX-512" : "") +
                    " (fallback " + be.info.backend + ")";
    MCORE_LOG(INFO) << "GEMM backend: " << kernel << (amx ? " and AVX-512" : "") << " for float"
                    << (forced ? std::string(" (MCORE_GEMM=") +
                                     (choice == SgemmBackend::kAmx ? "amx)" : "avx512)")
                               : std::string())
                    << ", fallback and double: " << lib << ", " << be.info.threads << " threads";
  }
  return be;
}

const Backend& backend() {
  static Backend be = load();
  return be;
}

// Fallback when OpenBLAS is absent: cache-friendly i-k-j loops, parallel over rows of C.
template <class T>
void builtin_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    T* crow = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) crow[j] = beta == T(0) ? T(0) : beta * crow[j];
    for (int64_t p = 0; p < k; ++p) {
      T av = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
      if (av == T(0)) continue;
      if (!tb) {
        const T* brow = b + p * ldb;
        for (int64_t j = 0; j < n; ++j) crow[j] += av * brow[j];
      } else {
        for (int64_t j = 0; j < n; ++j) crow[j] += av * b[j * ldb + p];
      }
    }
  }
}

// Which kernel runs a float product.
enum class Kernel { kLibrary, kAvx512, kAmx };

// Tiny or GEMV-like products stay with the library: packing and the 8x48 register tile would
// waste most of their time, and OpenBLAS has GEMV paths for them. The AMX kernel takes products
// whose every side spans at least a 32 x 32 x 32 block: below that its zero-padded tiles and
// three-piece packing cost more than they save (measured against the AVX-512 kernel).
Kernel choose_kernel(const Backend& be, int64_t m, int64_t n, int64_t k) {
  if (!be.avx512) return Kernel::kLibrary;
  const SgemmBackend choice = g_sgemm_backend.load(std::memory_order_relaxed);
  switch (choice) {
    case SgemmBackend::kOpenBlas:
      return Kernel::kLibrary;
    case SgemmBackend::kAvx512:
      return Kernel::kAvx512;
    case SgemmBackend::kAmx:
      return sgemm_amx_supported() ? Kernel::kAmx : Kernel::kAvx512;
    case SgemmBackend::kAuto:
      break;
  }
  if (m >= kAmxMinSide && n >= kAmxMinSide && k >= kAmxMinSide &&
      static_cast<double>(m) * n * k >= kAmxMinVolume && sgemm_amx_supported())
    return Kernel::kAmx;
  if (!be.sgemm) return Kernel::kAvx512;  // faster than the portable fallback at any size
  return m >= 4 && n >= 32 && k >= 8 && static_cast<double>(m) * n * k >= kAvx512MinVolume
             ? Kernel::kAvx512
             : Kernel::kLibrary;
}

void check_dims(int64_t m, int64_t n, int64_t k) {
  constexpr int64_t kMax = 2147483647;
  MCORE_CHECK(m <= kMax && n <= kMax && k <= kMax)
      << "gemm: dimensions " << m << "x" << n << "x" << k << " exceed the 32-bit BLAS interface";
}

}  // namespace

const BlasInfo& blas_info() {
  return backend().info;
}

void set_sgemm_backend(SgemmBackend b) {
  (void)backend();  // load first, so MCORE_GEMM does not later overwrite this choice
  g_sgemm_backend.store(b);
}
SgemmBackend sgemm_backend() {
  (void)backend();
  return g_sgemm_backend.load();
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  check_dims(m, n, k);
  const Backend& be = backend();
  const Kernel kernel = choose_kernel(be, m, n, k);
  if (kernel == Kernel::kAmx) {
    sgemm_amx(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else if (kernel == Kernel::kAvx512) {
    sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else if (be.sgemm) {
    be.sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m),
             static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
             static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  } else {
    builtin_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

void gemm_bias(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  check_dims(m, n, k);
  const Kernel kernel = choose_kernel(backend(), m, n, k);
  if (kernel == Kernel::kAmx) {
    sgemm_amx(ta, tb, m, n, k, alpha, a, lda, b, ldb, 0.0f, c, ldc, bias);
    return;
  }
  if (kernel == Kernel::kAvx512) {
    sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, 0.0f, c, ldc, bias);
    return;
  }
  gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, 0.0f, c, ldc);
#pragma omp parallel for schedule(static) if (m * n > (1 << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
  }
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  check_dims(m, n, k);
  const Backend& be = backend();
  if (be.dgemm) {
    be.dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m),
             static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
             static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  } else {
    builtin_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

}  // namespace mcore::ops::cpu
