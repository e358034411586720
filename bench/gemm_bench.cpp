// GEMM throughput at transformer shapes, as a fraction of the measured fp32 FMA peak.
// Target: >= 85% of peak. Shapes are (tokens M) x (in K) x (out N) for GPT-2-small-sized
// layers: QKV/fc1 (768 -> 3072), proj (768 -> 768), output layer (768 -> 50304), plus the
// backward's transposed forms, and the LLaMA-style bench step's output layer. Each shape runs on
// every float GEMM at hand, under the same conditions (arg "lib"): 0 = OpenBLAS, 1 = mcore's
// AVX-512 kernel, 2 = oneDNN's dnnl_sgemm (Debian's libdnnl2, which python3-torch brings),
// 3 = Intel MKL's cblas_sgemm when libmkl_rt is on the library path (PyPI's `mkl` wheel; not
// installed by setup), 4 = mcore's AMX kernel (bf16x6 at fp32 accuracy, sgemm_amx.h; what
// auto mode picks on CPUs with AMX). Its peak_frac is still against the FMA peak: the AMX bf16
// unit is another unit, and the fraction says how much faster than an ideal FMA kernel it runs.
// The vendor libraries are loaded with dlopen, so the bench builds and runs
// without them and reports the missing ones as skipped.
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "bench/peak.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/cpu/sgemm_amx.h"
#include "mcore/ops/cpu/sgemm_avx512.h"
#include "mcore/ops/matmul.h"
#include "mcore/tensor/factory.h"

namespace {

double g_peak = 0;

enum Lib { kOpenBlas = 0, kMcore = 1, kOneDnn = 2, kMkl = 3, kMcoreAmx = 4 };

// Row-major sgemm entry points of the vendor libraries, resolved at run time.
using DnnlSgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                            int, float, float*, int);

void* open_first(std::initializer_list<const char*> names) {
  for (const char* name : names)
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return h;
  return nullptr;
}

DnnlSgemm dnnl_sgemm_fn() {
  static DnnlSgemm fn = [] {
    void* h = open_first({"libdnnl.so.2", "libdnnl.so.3", "libdnnl.so"});
    return h ? reinterpret_cast<DnnlSgemm>(dlsym(h, "dnnl_sgemm")) : nullptr;
  }();
  return fn;
}

CblasSgemm mkl_sgemm_fn() {
  static CblasSgemm fn = [] {
    // MKL's GNU threading layer runs on libgomp, the OpenMP runtime the rest of the process
    // uses, and honours OMP_NUM_THREADS like the other contenders.
    setenv("MKL_THREADING_LAYER", "GNU", 0);
    void* h = open_first({"libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"});
    return h ? reinterpret_cast<CblasSgemm>(dlsym(h, "cblas_sgemm")) : nullptr;
  }();
  return fn;
}

void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const bool ta = state.range(3) & 1, tb = state.range(3) & 2;
  using namespace mcore;
  const Lib lib = static_cast<Lib>(state.range(4));
  if (lib == kMcore && !ops::cpu::sgemm_avx512_supported())
    return state.SkipWithError("CPU has no AVX-512");
  if (lib == kMcoreAmx && !ops::cpu::sgemm_amx_supported())
    return state.SkipWithError("CPU or kernel offers no AMX-BF16");
  if (lib == kOneDnn && !dnnl_sgemm_fn())
    return state.SkipWithError("no libdnnl.so.2 (Debian's libdnnl2)");
  if (lib == kMkl && !mkl_sgemm_fn())
    return state.SkipWithError("no libmkl_rt on the library path (pip download mkl; unpack it)");
  if (lib == kOpenBlas) ops::cpu::set_sgemm_backend(ops::cpu::SgemmBackend::kOpenBlas);
  if (lib == kMcore) ops::cpu::set_sgemm_backend(ops::cpu::SgemmBackend::kAvx512);
  if (lib == kMcoreAmx) ops::cpu::set_sgemm_backend(ops::cpu::SgemmBackend::kAmx);
  Tensor a = rand(ta ? Shape{k, m} : Shape{m, k}, {1, 0});
  Tensor b = rand(tb ? Shape{n, k} : Shape{k, n}, {2, 0});
  Tensor c = empty({m, n});
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* pc = c.data<float>();
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  auto run = [&] {
    switch (lib) {
      case kOneDnn:
        dnnl_sgemm_fn()(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, pa, lda, pb, ldb, 0.0f, pc,
                        n);
        break;
      case kMkl:  // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112
        mkl_sgemm_fn()(101, ta ? 112 : 111, tb ? 112 : 111, int(m), int(n), int(k), 1.0f, pa,
                       int(lda), pb, int(ldb), 0.0f, pc, int(n));
        break;
      default:
        ops::matmul_out(c, a, b, ta, tb);
    }
  };
  run();  // warm up (and load the library)
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(pc);
  }
  ops::cpu::set_sgemm_backend(ops::cpu::SgemmBackend::kAuto);
  double flops = 2.0 * m * n * k;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["peak_frac"] =
      benchmark::Counter(flops * state.iterations() / 1e9 / g_peak, benchmark::Counter::kIsRate);
}

// M, K, N, transpose flags (1: A^T, 2: B^T), backend. Forward y = x W^T uses B^T.
BENCHMARK(BM_Gemm)
    ->ArgNames({"M", "K", "N", "trans", "lib"})
    ->ArgsProduct({{4096}, {768}, {3072}, {2}, {0, 1, 2, 3, 4}})
    ->ArgsProduct({{4096}, {768}, {768}, {2}, {0, 1, 2, 3, 4}})
    ->ArgsProduct({{4096}, {768}, {50304}, {2}, {0, 1, 2, 3, 4}})
    ->ArgsProduct({{4096}, {3072}, {768}, {0}, {0, 1, 2, 3, 4}})  // dgrad: dX = dY W
    ->ArgsProduct({{768}, {4096}, {3072}, {1}, {0, 1, 2, 3, 4}})  // wgrad: dW = dY^T X
    // The LLaMA-style bench step's output layer (512 tokens, hidden 512, vocab 32000).
    ->ArgsProduct({{512}, {512}, {32000}, {2}, {1, 2, 3, 4}})  // forward
    ->ArgsProduct({{512}, {32000}, {512}, {0}, {1, 2, 3, 4}})  // dgrad (split K)
    ->ArgsProduct({{32000}, {512}, {512}, {1}, {1, 2, 3, 4}})  // wgrad
    // The GPT-2-small bench step (512 tokens): fc1, fc2 and output layer, each forward, dgrad and
    // wgrad (mcore's kernels only; QKV and proj behave like fc1 and fc2).
    ->ArgsProduct({{512}, {768}, {3072, 50304}, {2}, {1, 4}})
    ->ArgsProduct({{512}, {3072}, {768}, {2}, {1, 4}})
    ->ArgsProduct({{512}, {3072, 50304}, {768}, {0}, {1, 4}})
    ->ArgsProduct({{512}, {768}, {3072}, {0}, {1, 4}})
    ->ArgsProduct({{3072, 50304}, {512}, {768}, {1}, {1, 4}})
    ->ArgsProduct({{768}, {512}, {3072}, {1}, {1, 4}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const auto& info = mcore::ops::cpu::blas_info();
  g_peak = mcore::bench::measure_fp32_peak_gflops();
  std::printf(
      "machine fp32 FMA peak: %.1f GFLOP/s (%d threads); float GEMM: %s; library: %s "
      "kernel %s\n",
      g_peak, info.threads, info.sgemm.c_str(), info.backend.c_str(), info.core.c_str());
  benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
