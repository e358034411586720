// Fused CPU ops at GPT-2-small shapes (4096 tokens x 768 hidden, 12 heads), forward and
// backward timed separately. bench/compare.py runs this beside bench/torch_ops.py (the same
// ops and shapes in PyTorch, same thread count) and prints the ratio. Benchmark names must
// match the keys torch_ops.py writes.
#include <benchmark/benchmark.h>

#include "mcore/ops/activation.h"
#include "mcore/ops/attention.h"
#include "mcore/ops/cross_entropy.h"
#include "mcore/ops/norm.h"
#include "mcore/ops/softmax.h"
#include "mcore/tensor/factory.h"

namespace {

using namespace mcore;

constexpr int64_t kTokens = 4096, kHidden = 768, kFfn = 3072, kVocab = 50304;

Tensor rnd(const Shape& s, uint64_t seed) {
  return randn(s, {seed, 0});
}

void set_bytes(benchmark::State& st, double bytes) {
  st.counters["GB/s"] =
      benchmark::Counter(bytes * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
void set_flops(benchmark::State& st, double flops) {
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void layer_norm_fwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, kHidden}, 1), w = rnd({kHidden}, 2), b = rnd({kHidden}, 3);
  for (auto _ : st) benchmark::DoNotOptimize(ops::layer_norm_forward(x, w, b, 1e-5).y.data_ptr());
  set_bytes(st, 2.0 * x.nbytes());
}
void layer_norm_bwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, kHidden}, 1), w = rnd({kHidden}, 2), b = rnd({kHidden}, 3);
  Tensor dy = rnd({kTokens, kHidden}, 4);
  auto f = ops::layer_norm_forward(x, w, b, 1e-5);
  for (auto _ : st)
    benchmark::DoNotOptimize(
        ops::layer_norm_backward(dy, x, f.mean, f.rstd, w, true, true, true).dx.data_ptr());
  set_bytes(st, 3.0 * x.nbytes());
}
void rms_norm_fwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, kHidden}, 1), w = rnd({kHidden}, 2);
  for (auto _ : st) benchmark::DoNotOptimize(ops::rms_norm_forward(x, w, 1e-5).y.data_ptr());
  set_bytes(st, 2.0 * x.nbytes());
}
void rms_norm_bwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, kHidden}, 1), w = rnd({kHidden}, 2), dy = rnd({kTokens, kHidden}, 4);
  auto f = ops::rms_norm_forward(x, w, 1e-5);
  for (auto _ : st)
    benchmark::DoNotOptimize(ops::rms_norm_backward(dy, x, f.rstd, w).dx.data_ptr());
  set_bytes(st, 3.0 * x.nbytes());
}
void softmax_causal_fwd(benchmark::State& st) {
  Tensor x = rnd({4, 12, 512, 512}, 5);
  for (auto _ : st) benchmark::DoNotOptimize(ops::softmax_forward(x, 0.125, true).data_ptr());
  set_bytes(st, 2.0 * x.nbytes());
}
void softmax_bwd(benchmark::State& st) {
  Tensor x = rnd({4, 12, 512, 512}, 5), dy = rnd({4, 12, 512, 512}, 6);
  Tensor y = ops::softmax_forward(x, 0.125, true);
  for (auto _ : st) benchmark::DoNotOptimize(ops::softmax_backward(dy, y, 0.125).data_ptr());
  set_bytes(st, 3.0 * x.nbytes());
}
void gelu_fwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, kFfn}, 7);
  for (auto _ : st)
    benchmark::DoNotOptimize(ops::gelu_forward(x, ops::GeluApproximate::kTanh).data_ptr());
  set_bytes(st, 2.0 * x.nbytes());
}
void gelu_bwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, kFfn}, 7), dy = rnd({kTokens, kFfn}, 8);
  for (auto _ : st)
    benchmark::DoNotOptimize(ops::gelu_backward(dy, x, ops::GeluApproximate::kTanh).data_ptr());
  set_bytes(st, 3.0 * x.nbytes());
}
void swiglu_fwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, 2 * kFfn}, 9);
  for (auto _ : st) benchmark::DoNotOptimize(ops::swiglu_forward(x).data_ptr());
  set_bytes(st, 1.5 * x.nbytes());
}
void swiglu_bwd(benchmark::State& st) {
  Tensor x = rnd({kTokens, 2 * kFfn}, 9), dy = rnd({kTokens, kFfn}, 10);
  for (auto _ : st) benchmark::DoNotOptimize(ops::swiglu_backward(dy, x).data_ptr());
  set_bytes(st, 2.5 * x.nbytes());
}
// Causal attention, S=1024, B=1, 12 heads of 64: FLOPs counted for the causal half.
constexpr int64_t kS = 1024, kH = 12, kD = 64;
double attention_flops() {
  return 4.0 * kS * kS * kD * kH / 2;
}
void attention_fwd(benchmark::State& st) {
  Tensor q = rnd({kS, 1, kH, kD}, 11), k = rnd({kS, 1, kH, kD}, 12), v = rnd({kS, 1, kH, kD}, 13);
  ops::AttentionOptions o;
  o.causal = true;
  for (auto _ : st) benchmark::DoNotOptimize(ops::attention_forward(q, k, v, o).out.data_ptr());
  set_flops(st, attention_flops());
}
void attention_bwd(benchmark::State& st) {
  Tensor q = rnd({kS, 1, kH, kD}, 11), k = rnd({kS, 1, kH, kD}, 12), v = rnd({kS, 1, kH, kD}, 13);
  Tensor dout = rnd({kS, 1, kH, kD}, 14);
  ops::AttentionOptions o;
  o.causal = true;
  auto f = ops::attention_forward(q, k, v, o);
  for (auto _ : st)
    benchmark::DoNotOptimize(
        ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, o).dq.data_ptr());
  set_flops(st, 2.5 * attention_flops());
}
// The bench steps' attention layers (bench/gpt_bench.cpp): batch 2 x 256 tokens, causal, heads of
// 64; GPT-2 small's 12 heads and the LLaMA-style model's 8 query heads over 4 kv heads.
template <int64_t kHq, int64_t kHkv>
void step_attention(benchmark::State& st, bool backward) {
  constexpr int64_t s = 256, b = 2;
  Tensor q = rnd({s, b, kHq, kD}, 21), k = rnd({s, b, kHkv, kD}, 22), v = rnd({s, b, kHkv, kD}, 23);
  Tensor dout = rnd({s, b, kHq, kD}, 24);
  ops::AttentionOptions o;
  o.causal = true;
  auto f = ops::attention_forward(q, k, v, o);
  for (auto _ : st) {
    if (backward) {
      benchmark::DoNotOptimize(
          ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, o).dq.data_ptr());
    } else {
      benchmark::DoNotOptimize(ops::attention_forward(q, k, v, o).out.data_ptr());
    }
  }
  set_flops(st, (backward ? 2.5 : 1.0) * 4.0 * s * s * kD * kHq * b / 2);
}
void attention_mha256_fwd(benchmark::State& st) {
  step_attention<12, 12>(st, false);
}
void attention_mha256_bwd(benchmark::State& st) {
  step_attention<12, 12>(st, true);
}
void attention_gqa256_fwd(benchmark::State& st) {
  step_attention<8, 4>(st, false);
}
void attention_gqa256_bwd(benchmark::State& st) {
  step_attention<8, 4>(st, true);
}
void cross_entropy_fwd(benchmark::State& st) {
  Tensor logits = rnd({2048, kVocab}, 15);
  Tensor target = empty({2048}, DType::I64);
  for (int64_t i = 0; i < 2048; ++i) target.data<int64_t>()[i] = (i * 7919) % kVocab;
  for (auto _ : st)
    benchmark::DoNotOptimize(ops::cross_entropy_forward(logits, target).loss.data_ptr());
  set_bytes(st, logits.nbytes());
}
void cross_entropy_bwd(benchmark::State& st) {
  Tensor logits = rnd({2048, kVocab}, 15);
  Tensor target = empty({2048}, DType::I64);
  for (int64_t i = 0; i < 2048; ++i) target.data<int64_t>()[i] = (i * 7919) % kVocab;
  auto f = ops::cross_entropy_forward(logits, target);
  Tensor g = ones({2048});
  for (auto _ : st)
    benchmark::DoNotOptimize(
        ops::cross_entropy_backward(g, logits, target, f.logsumexp).data_ptr());
  set_bytes(st, 2.0 * logits.nbytes());
}

#define MCORE_OP_BENCH(fn) BENCHMARK(fn)->Unit(benchmark::kMillisecond)->UseRealTime()
MCORE_OP_BENCH(layer_norm_fwd);
MCORE_OP_BENCH(layer_norm_bwd);
MCORE_OP_BENCH(rms_norm_fwd);
MCORE_OP_BENCH(rms_norm_bwd);
MCORE_OP_BENCH(softmax_causal_fwd);
MCORE_OP_BENCH(softmax_bwd);
MCORE_OP_BENCH(gelu_fwd);
MCORE_OP_BENCH(gelu_bwd);
MCORE_OP_BENCH(swiglu_fwd);
MCORE_OP_BENCH(swiglu_bwd);
MCORE_OP_BENCH(attention_fwd);
MCORE_OP_BENCH(attention_bwd);
MCORE_OP_BENCH(attention_mha256_fwd);
MCORE_OP_BENCH(attention_mha256_bwd);
MCORE_OP_BENCH(attention_gqa256_fwd);
MCORE_OP_BENCH(attention_gqa256_bwd);
MCORE_OP_BENCH(cross_entropy_fwd);
MCORE_OP_BENCH(cross_entropy_bwd);

}  // namespace

BENCHMARK_MAIN();
