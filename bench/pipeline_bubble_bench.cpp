// Pipeline bubble: the idle fraction of a pipelined training step, measured against theory.
//
// Each rank is one pipeline stage whose forward takes t_f and backward t_b per microbatch,
// split evenly over its virtual stages. The compute is a sleep, not arithmetic, so that the
// measurement sees the schedule alone - the ranks do not compete for this machine's few cores
// and every stage has exactly equal work, the assumption behind the formulas:
//   1F1B:        bubble = (p - 1) / (m + p - 1)
//   interleaved: bubble = (p - 1) / (v m + p - 1)      (v virtual stages per rank)
// as a fraction of the step time. Measured: 1 - m (t_f + t_b) / step time (slowest rank, median
// of several steps). Run under mpirun with p ranks (scripts/bench_pipeline).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "mcore/autograd/function.h"
#include "mcore/comm/distributed.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/pipeline_parallel/schedules.h"
#include "mcore/tensor/factory.h"

namespace mcore {
namespace {

using Ms = std::chrono::duration<double, std::milli>;

// Identity that takes `ms` in forward and twice that in backward.
struct Work : autograd::Function<Work> {
  static Tensor forward(autograd::AutogradContext* ctx, const Tensor& x, double ms) {
    ctx->save("ms", ms);
    std::this_thread::sleep_for(Ms(ms));
    return x.clone();
  }
  static std::vector<Tensor> backward(autograd::AutogradContext* ctx, std::vector<Tensor> g) {
    std::this_thread::sleep_for(Ms(2 * ctx->get<double>("ms")));
    return {g[0]};
  }
};

struct Measured {
  double step_ms = 0;  // median step time of the slowest rank
  double bubble = 0;   // idle fraction (time outside forward/backward), mean over ranks
};

Measured measure(int64_t m, int v, double forward_ms) {
  namespace pp = pipeline_parallel;
  const double chunk_ms = forward_ms / v;
  Tensor seed = full({4, 1, 8}, 1.0).set_requires_grad(true);
  pp::ForwardStepFunc step = [&](int64_t, int, const Tensor& input,
                                 bool last) -> pp::ForwardStepOutput {
    Tensor y = Work::apply(input.defined() ? input : seed, chunk_ms);
    if (last) return {F::mean(y), {}, 0.0};
    return {y, {}, 0.0};
  };
  pp::ScheduleConfig sc;
  sc.num_microbatches = m;
  sc.num_model_chunks = v;
  sc.p2p.tensor_shape = {4, 1, 8};
  auto fb = pp::get_forward_backward_func(v);
  std::vector<std::pair<double, double>> reps;  // (step ms, bubble)
  for (int rep = 0; rep < 5; ++rep) {
    comm::world()->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    pp::ForwardBackwardResult r = fb(step, sc);
    const double ms = Ms(std::chrono::steady_clock::now() - t0).count();
    // Idle = the step minus the time this rank spent computing (the sleeps as they really
    // lasted, plus autograd), so sleep overshoot does not count as bubble.
    // The step lasts until the slowest rank is done; each rank idles for that time minus its
    // own compute (the sleeps as they really lasted, plus autograd).
    Tensor step_max = from_vector<double>({ms});
    comm::world()->all_reduce(step_max, comm::ReduceOp::kMax);
    const double step = step_max.data<double>()[0];
    Tensor idle = from_vector<double>({1.0 - r.stats.compute_seconds * 1e3 / step});
    comm::world()->all_reduce(idle, comm::ReduceOp::kSum);
    reps.emplace_back(step, idle.data<double>()[0] / comm::get_world_size());
  }
  std::sort(reps.begin(), reps.end());
  return {reps[reps.size() / 2].first, reps[reps.size() / 2].second};
}

int run() {
  comm::init_distributed();
  const int p = comm::get_world_size();
  parallel_state::initialize_model_parallel(1, p);
  const double forward_ms = 4.0;  // backward: 8 ms
  if (comm::get_rank() == 0) {
    std::printf("pipeline bubble, p = %d stages, t_f = %.0f ms, t_b = %.0f ms per microbatch\n", p,
                forward_ms, 2 * forward_ms);
    std::printf("%-12s %4s %4s %10s %10s %10s\n", "schedule", "m", "v", "step ms", "measured",
                "theory");
  }
  for (int v : {1, 2}) {
    if (v > 1 && p < 2) continue;
    for (int64_t m : {int64_t{p}, int64_t{2 * p}, int64_t{4 * p}, int64_t{8 * p}}) {
      const Measured r = measure(m, v, forward_ms);
      const double theory = p == 1 ? 0.0 : (p - 1.0) / (v * m + p - 1.0);
      if (comm::get_rank() == 0)
        std::printf("%-12s %4lld %4d %10.1f %10.3f %10.3f\n", v == 1 ? "1F1B" : "interleaved",
                    static_cast<long long>(m), v, r.step_ms, r.bubble, theory);
    }
  }
  return 0;
}

}  // namespace
}  // namespace mcore

int main(int argc, char** argv) {
  return mcore::comm::run_distributed_main(argc, argv, [](int, char**) { return mcore::run(); });
}
