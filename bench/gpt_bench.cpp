// One training step (forward + backward of the mean token loss, gradients zeroed first) of a
// GPT-2-small-shaped model and of a tiny LLaMA-style model, fp32. Reports tokens/s and
// GFLOP/s with FLOPs = (6 N + 12 L d T) B T per step (L layers, d hidden size, T sequence
// length, B batch: the usual dense-transformer count, attention included), and the fraction of
// this machine's measured fp32 peak. N counts the parameters that enter a matrix product: tables
// that are only looked up (position embeddings, and the word embeddings when the output layer has
// its own weight) do no multiply-adds, and counting them would credit the untied LLaMA-style
// model, whose embedding table is a third of its weights, with more FLOPs than the machine can do.
// bench/torch_gpt.py runs the same models in PyTorch under the same benchmark names;
// bench/compare.py prints the ratio:
//   OMP_NUM_THREADS=2 python3 bench/compare.py build/bench/gpt_bench bench/torch_gpt.py
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>

#include "bench/peak.h"
#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"

namespace {

using namespace mcore;

struct Shape {
  transformer::TransformerConfig config;
  int64_t vocab;  // padded to a multiple of 128, as training does
  bool tied;
  int64_t batch, seq;
};

Shape gpt2_small() {
  Shape s;
  s.config = models::get_preset("gpt2-124m").config;
  s.vocab = 50304;
  s.tied = true;
  s.batch = 2;
  s.seq = 256;
  return s;
}

Shape llama_tiny() {
  Shape s;
  auto& c = s.config;
  c = models::get_preset("llama3-tiny").config;
  c.num_layers = 4;
  c.hidden_size = 512;
  c.num_attention_heads = 8;
  c.num_query_groups = 4;
  c.kv_channels = 0;
  c.ffn_hidden_size = 1408;
  s.vocab = 32000;
  s.tied = false;
  s.batch = 2;
  s.seq = 256;
  return s;
}

double peak_gflops() {
  static const double peak = bench::measure_fp32_peak_gflops();
  return peak;
}

void run_step(benchmark::State& st, Shape s) {
  s.config.hidden_dropout = 0.0;  // as the PyTorch side (dropout costs little either way)
  s.config.attention_dropout = 0.0;
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = s.tied;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(s.config, transformer::get_gpt_layer_local_spec(), s.vocab, s.seq, o);
  Tensor ids = empty({s.batch, s.seq}, DType::I64), labels = empty({s.batch, s.seq}, DType::I64);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    ids.data<int64_t>()[i] = (i * 7919) % s.vocab;
    labels.data<int64_t>()[i] = (i * 104729 + 1) % s.vocab;
  }
  // One untimed step first, as bench/torch_gpt.py takes: the first step faults in every
  // activation and gradient buffer (the allocator reuses them after), and at the GPT-2 shape it
  // alone can outlast --benchmark_min_time, which then reported that one step (2x the others).
  model.zero_grad();
  F::mean(model.forward(ids, Tensor(), Tensor(), labels)).backward();
  // Forward and backward are also timed apart (counters fwd_ms, bwd_ms: per step).
  using Clock = std::chrono::steady_clock;
  double fwd_s = 0, bwd_s = 0;
  for (auto _ : st) {
    const auto t0 = Clock::now();
    model.zero_grad();
    Tensor loss = F::mean(model.forward(ids, Tensor(), Tensor(), labels));
    const auto t1 = Clock::now();
    loss.backward();
    benchmark::DoNotOptimize(loss.item());
    fwd_s += std::chrono::duration<double>(t1 - t0).count();
    bwd_s += std::chrono::duration<double>(Clock::now() - t1).count();
  }
  int64_t lookup_only = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    if (name == "embedding.position_embeddings.weight" ||
        (!s.tied && name == "embedding.word_embeddings.weight"))
      lookup_only += p->numel();
  }
  const double n = static_cast<double>(model.num_parameters() - lookup_only);
  const double t = static_cast<double>(s.seq), b = static_cast<double>(s.batch);
  const double flops = (6.0 * n + 12.0 * s.config.num_layers * s.config.hidden_size * t) * b * t;
  const double iters = static_cast<double>(st.iterations());
  st.counters["tokens/s"] = benchmark::Counter(b * t * iters, benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] = benchmark::Counter(flops * iters / 1e9, benchmark::Counter::kIsRate);
  st.counters["params"] = static_cast<double>(model.num_parameters());
  st.counters["matmul_params"] = n;
  st.counters["fwd_ms"] = 1e3 * fwd_s / iters;
  st.counters["bwd_ms"] = 1e3 * bwd_s / iters;
  st.counters["peak_GFLOP/s"] = peak_gflops();
}

void gpt2_small_step(benchmark::State& st) {
  run_step(st, gpt2_small());
}
void llama_tiny_step(benchmark::State& st) {
  run_step(st, llama_tiny());
}

}  // namespace

BENCHMARK(gpt2_small_step)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
BENCHMARK(llama_tiny_step)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_MAIN();
