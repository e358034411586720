// Measures this machine's fp32 FMA peak (GFLOP/s) on all OpenMP threads: each thread runs
// independent chains of vector FMAs long enough to hide FMA latency. Benchmarks report their
// throughput as a fraction of this measured figure, not of a datasheet number.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <chrono>

namespace mcore::bench {

inline double measure_fp32_peak_gflops(double seconds = 0.5) {
  constexpr int kChains = 12;  // > FMA latency (4) x ports (2): keeps both FMA units busy
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int kLanes = 16;
  auto set1 = [](float x) { return _mm512_set1_ps(x); };
  auto fma = [](V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); };
  // Store and add rather than _mm512_reduce_add_ps, whose GCC 12 expansion warns spuriously.
  auto hsum = [](V v) {
    float t[16];
    _mm512_storeu_ps(t, v);
    float s = 0;
    for (float x : t) s += x;
    return s;
  };
#else
  using V = __m256;
  constexpr int kLanes = 8;
  auto set1 = [](float x) { return _mm256_set1_ps(x); };
  auto fma = [](V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); };
  auto hsum = [](V v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
  };
#endif
  const long iters = 1 << 22;
  double best = 0;
  auto start_all = std::chrono::steady_clock::now();
  volatile float sink = 0;
  do {
    auto t0 = std::chrono::steady_clock::now();
    int threads = 1;
#pragma omp parallel
    {
#pragma omp single
      threads = omp_get_num_threads();
      // Twelve named accumulators: an array indexed in a loop may be kept in memory at low
      // optimization levels, which would measure store forwarding instead of FMA throughput.
      V c0 = set1(1.0f), c1 = set1(1.001f), c2 = set1(1.002f), c3 = set1(1.003f);
      V c4 = set1(1.004f), c5 = set1(1.005f), c6 = set1(1.006f), c7 = set1(1.007f);
      V c8 = set1(1.008f), c9 = set1(1.009f), c10 = set1(1.010f), c11 = set1(1.011f);
      const V a = set1(0.999999f), b = set1(1e-7f);
      for (long i = 0; i < iters; ++i) {
        c0 = fma(c0, a, b), c1 = fma(c1, a, b), c2 = fma(c2, a, b), c3 = fma(c3, a, b);
        c4 = fma(c4, a, b), c5 = fma(c5, a, b), c6 = fma(c6, a, b), c7 = fma(c7, a, b);
        c8 = fma(c8, a, b), c9 = fma(c9, a, b), c10 = fma(c10, a, b), c11 = fma(c11, a, b);
      }
      float s = hsum(c0) + hsum(c1) + hsum(c2) + hsum(c3) + hsum(c4) + hsum(c5) + hsum(c6) +
                hsum(c7) + hsum(c8) + hsum(c9) + hsum(c10) + hsum(c11);
#pragma omp critical
      sink = sink + s;
    }
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double flops = 2.0 * kLanes * kChains * static_cast<double>(iters) * threads;
    if (flops / dt / 1e9 > best) best = flops / dt / 1e9;
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start_all).count() <
           seconds);
  (void)sink;
  return best;
}

}  // namespace mcore::bench
