// GEMM throughput on the GPU: mcore's cuBLASLt path (ops::matmul / matmul_fp8) at transformer
// shapes (GPT-2 small and a 4096-hidden model: QKV, MLP up/down, and the dgrad/wgrad layouts of
// the backward pass) in fp32, TF32, bf16 and FP8, against a plain cublasGemmEx call of the same
// problem, printed as JSON {name: {"ms", "tflops", "cublas_ms", "cublas_tflops", "ratio"}}
// (ratio = mcore / cuBLAS throughput; ~1 means the dispatch adds nothing). cublasGemmEx has no
// FP8 path, so FP8 rows compare against its bf16 GEMM (ratio = FP8 speed-up).
#include <cublas_v2.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mcore/ops/matmul.h"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/factory.h"

namespace {

using namespace mcore;

struct Problem {
  const char* name;
  int64_t m, k, n;
  bool ta, tb;
};

// Mean seconds per call over ~0.5 s after two warm-up calls.
template <class Fn>
double time_it(Fn&& fn) {
  fn();
  fn();
  cuda::synchronize();
  int iters = 0;
  double dt = 0;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    fn();
    ++iters;
    if (iters % 5 == 0) {
      cuda::synchronize();
      dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  } while (dt < 0.5);
  return dt / iters;
}

Tensor gpu_randn(const mcore::Shape& shape, uint64_t seed, DType dt) {
  return randn(shape, {seed, 0}, DType::F32).to(dt, /*saturate=*/true).to(Device::cuda(0));
}

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s failed: %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

// Row-major C[M, N] = op(A) op(B) as cuBLAS's column-major C^T = op(B)^T op(A)^T.
void cublas_gemm(cublasHandle_t h, const Problem& p, const Tensor& a, const Tensor& b, Tensor& c,
                 cudaDataType_t type, cublasComputeType_t compute) {
  const float alpha = 1.0f, beta = 0.0f;
  const int64_t lda = p.ta ? p.m : p.k, ldb = p.tb ? p.k : p.n;
  check(cublasGemmEx(h, p.tb ? CUBLAS_OP_T : CUBLAS_OP_N, p.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                     static_cast<int>(p.n), static_cast<int>(p.m), static_cast<int>(p.k), &alpha,
                     b.data_ptr(), type, static_cast<int>(ldb), a.data_ptr(), type,
                     static_cast<int>(lda), &beta, c.data_ptr(), type, static_cast<int>(p.n),
                     compute, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

}  // namespace

int main() {
  if (cuda::device_count() == 0) {
    std::fprintf(stderr, "gemm_bench_cuda: no CUDA device\n");
    return 1;
  }
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  const bool has_fp8 = major * 10 + minor >= 89;

  const int64_t tokens = 8192;  // batch x sequence
  const std::vector<Problem> problems = {
      {"gpt2_qkv", tokens, 768, 2304, false, true},
      {"gpt2_fc1", tokens, 768, 3072, false, true},
      {"h4096_qkv", tokens, 4096, 3 * 4096, false, true},
      {"h4096_fc1", tokens, 4096, 16384, false, true},
      {"h4096_fc2", tokens, 16384, 4096, false, true},
      {"h4096_fc2_dgrad", tokens, 4096, 16384, false, false},
      {"h4096_fc2_wgrad", 4096, tokens, 16384, true, false},
  };
  struct Mode {
    const char* name;
    DType dtype;
    bool tf32;
    cudaDataType_t cublas_type;
    cublasComputeType_t compute;
  };
  const std::vector<Mode> modes = {
      {"fp32", DType::F32, false, CUDA_R_32F, CUBLAS_COMPUTE_32F},
      {"tf32", DType::F32, true, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32},
      {"bf16", DType::BF16, false, CUDA_R_16BF, CUBLAS_COMPUTE_32F},
      {"fp8", DType::F8E4M3, false, CUDA_R_16BF, CUBLAS_COMPUTE_32F},  // baseline: bf16
  };

  cublasHandle_t handle;
  check(cublasCreate(&handle), "cublasCreate");
  check(cublasSetStream(handle, cuda::current_stream()), "cublasSetStream");
  std::printf("{\n");
  bool first = true;
  for (const Mode& mode : modes) {
    if (mode.dtype == DType::F8E4M3 && !has_fp8) continue;
    cuda::set_allow_tf32(mode.tf32);
    for (const Problem& p : problems) {
      const mcore::Shape sa = p.ta ? mcore::Shape{p.k, p.m} : mcore::Shape{p.m, p.k};
      const mcore::Shape sb = p.tb ? mcore::Shape{p.n, p.k} : mcore::Shape{p.k, p.n};
      Tensor a = gpu_randn(sa, 1, mode.dtype), b = gpu_randn(sb, 2, mode.dtype);
      double t_mcore = 0;
      if (mode.dtype == DType::F8E4M3) {
        // cuBLASLt's FP8 kernels want op(b) stored as [N, K]: time the weight layout (tb).
        if (!p.tb || p.ta) continue;
        t_mcore = time_it([&] { ops::matmul_fp8(a, 1.0, b, 1.0, false, true, DType::BF16); });
      } else {
        t_mcore = time_it([&] { ops::matmul(a, b, p.ta, p.tb); });
      }
      const DType base_dtype = mode.dtype == DType::F8E4M3 ? DType::BF16 : mode.dtype;
      Tensor ab = mode.dtype == DType::F8E4M3 ? gpu_randn(sa, 1, base_dtype) : a;
      Tensor bb = mode.dtype == DType::F8E4M3 ? gpu_randn(sb, 2, base_dtype) : b;
      Tensor c = empty({p.m, p.n}, {base_dtype, Device::cuda(0)});
      const double t_cublas =
          time_it([&] { cublas_gemm(handle, p, ab, bb, c, mode.cublas_type, mode.compute); });
      const double flops = 2.0 * static_cast<double>(p.m) * p.n * p.k;
      std::printf(
          "%s  \"%s_%s\": {\"ms\": %.4f, \"tflops\": %.2f, \"cublas_ms\": %.4f, "
          "\"cublas_tflops\": %.2f, \"ratio\": %.3f}",
          first ? "" : ",\n", p.name, mode.name, t_mcore * 1e3, flops / t_mcore * 1e-12,
          t_cublas * 1e3, flops / t_cublas * 1e-12, t_cublas / t_mcore);
      first = false;
      std::fflush(stdout);
    }
  }
  cuda::set_allow_tf32(false);
  std::printf("\n}\n");
  cublasDestroy(handle);
  return 0;
}
