// GEMM throughput at transformer shapes, as a fraction of the measured fp32 FMA peak.
// Target: >= 85% of peak. Shapes are (tokens M) x (in K) x (out N) for GPT-2-small-sized
// layers: QKV/fc1 (768 -> 3072), proj (768 -> 768), output layer (768 -> 50304), plus the
// backward's transposed forms. Each shape runs on both float backends (arg "mcore": 0 = OpenBLAS,
// 1 = mcore's AVX-512 kernel), so the two are compared under the same conditions.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "bench/peak.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/cpu/sgemm_avx512.h"
#include "mcore/ops/matmul.h"
#include "mcore/tensor/factory.h"

namespace {

double g_peak = 0;

void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const bool ta = state.range(3) & 1, tb = state.range(3) & 2;
  using namespace mcore;
  const bool mine = state.range(4) != 0;
  if (mine && !ops::cpu::sgemm_avx512_supported()) {
    state.SkipWithError("CPU has no AVX-512");
    return;
  }
  ops::cpu::set_sgemm_backend(mine ? ops::cpu::SgemmBackend::kAvx512
                                   : ops::cpu::SgemmBackend::kOpenBlas);
  Tensor a = rand(ta ? Shape{k, m} : Shape{m, k}, {1, 0});
  Tensor b = rand(tb ? Shape{n, k} : Shape{k, n}, {2, 0});
  Tensor c = empty({m, n});
  ops::matmul_out(c, a, b, ta, tb);  // warm up (and load the backend)
  for (auto _ : state) {
    ops::matmul_out(c, a, b, ta, tb);
    benchmark::DoNotOptimize(c.data_ptr());
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
    ->ArgNames({"M", "K", "N", "trans", "mcore"})
    ->ArgsProduct({{4096}, {768}, {3072}, {2}, {0, 1}})
    ->ArgsProduct({{4096}, {768}, {768}, {2}, {0, 1}})
    ->ArgsProduct({{4096}, {768}, {50304}, {2}, {0, 1}})
    ->ArgsProduct({{4096}, {3072}, {768}, {0}, {0, 1}})  // dgrad: dX = dY W
    ->ArgsProduct({{768}, {4096}, {3072}, {1}, {0, 1}})  // wgrad: dW = dY^T X
    // The LLaMA-style bench step's output layer (512 tokens, hidden 512, vocab 32000).
    ->ArgsProduct({{512}, {512}, {32000}, {2}, {1}})  // forward
    ->ArgsProduct({{512}, {32000}, {512}, {0}, {1}})  // dgrad (split K)
    ->ArgsProduct({{32000}, {512}, {512}, {1}, {1}})  // wgrad
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
