// Fused attention on the GPU: forward and backward time and TFLOP/s of mcore's CUDA kernels at
// GPT-2-small and ~1B LLaMA shapes (sbhd layout, causal, bf16 and fp32), printed as JSON
// {name: {"ms": ..., "tflops": ...}}. bench/gpu/torch_attention.py prints the same names for
// torch.nn.functional.scaled_dot_product_attention on the same machine; scripts/bench_gpu joins
// the two.
//
// FLOPs: forward 4 * B * Hq * Sq * Sk * D (QK^T and PV), backward 2.5x that (FlashAttention-2's
// convention: five GEMM-sized products), both halved for causal masks. Recomputation inside the
// kernels is not counted.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "mcore/ops/attention.h"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/factory.h"

namespace {

using namespace mcore;

struct Shape4 {
  const char* name;
  int64_t batch, seq, hq, hkv, d;
};

// Mean seconds per call of fn over enough calls to run ~0.5 s (after two warm-up calls).
template <class Fn>
double time_it(Fn&& fn) {
  fn();
  fn();
  cuda::synchronize();
  int iters = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double dt = 0;
  do {
    fn();
    ++iters;
    if (iters % 5 == 0 || iters < 5) {
      cuda::synchronize();
      dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  } while (dt < 0.5 || iters < 5);
  cuda::synchronize();
  dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return dt / iters;
}

Tensor gpu_randn(const mcore::Shape& shape, uint64_t seed, DType dt) {
  return randn(shape, {seed, 0}, DType::F32).to(dt).to(Device::cuda(0));
}

}  // namespace

int main() {
  if (cuda::device_count() == 0) {
    std::fprintf(stderr, "attention_bench_cuda: no CUDA device\n");
    return 1;
  }
  const std::vector<Shape4> shapes = {
      {"gpt2_small", 8, 1024, 12, 12, 64},  // GPT-2 124M: 12 heads of 64
      {"llama_1b", 4, 2048, 32, 8, 64},     // Llama-3.2-1B: 32 query / 8 kv heads of 64
      {"llama_d128", 2, 2048, 16, 8, 128},  // head dim 128 (Llama-2/3 7-8B style heads)
  };
  std::string json = "{";
  bool first = true;
  for (const Shape4& s : shapes) {
    for (DType dt : {DType::BF16, DType::F32}) {
      const Tensor q = gpu_randn({s.seq, s.batch, s.hq, s.d}, 1, dt);
      const Tensor k = gpu_randn({s.seq, s.batch, s.hkv, s.d}, 2, dt);
      const Tensor v = gpu_randn({s.seq, s.batch, s.hkv, s.d}, 3, dt);
      const Tensor dout = gpu_randn({s.seq, s.batch, s.hq, s.d}, 4, dt);
      ops::AttentionOptions opts;
      opts.causal = true;
      auto fwd = ops::attention_forward(q, k, v, opts);
      const double t_fwd = time_it([&] { (void)ops::attention_forward(q, k, v, opts); });
      const double t_bwd = time_it(
          [&] { (void)ops::attention_backward(dout, q, k, v, fwd.out, fwd.softmax_lse, opts); });
      const double flops_fwd = 4.0 * s.batch * s.hq * s.seq * s.seq * s.d * 0.5;
      const double flops_bwd = 2.5 * flops_fwd;
      const std::string base = std::string("attention_") + s.name + "_" + dtype_name(dt);
      for (int pass = 0; pass < 2; ++pass) {
        const double t = pass == 0 ? t_fwd : t_bwd;
        const double f = pass == 0 ? flops_fwd : flops_bwd;
        char buf[256];
        std::snprintf(buf, sizeof(buf), "%s\n  \"%s_%s\": {\"ms\": %.4f, \"tflops\": %.2f}",
                      first ? "" : ",", base.c_str(), pass == 0 ? "fwd" : "bwd", t * 1e3,
                      f / t / 1e12);
        json += buf;
        first = false;
      }
    }
  }
  json += "\n}\n";
  std::fputs(json.c_str(), stdout);
  return 0;
}
