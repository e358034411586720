#include "mcore/training/training_utils.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/optimizer/clip_grads.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/transformer/moe/moe_utils.h"

namespace mcore::training {

bool is_rank0() {
  return comm::get_rank() == 0;
}

void print_rank0(const std::string& s) {
  if (!is_rank0()) return;
  std::fputs(s.c_str(), stdout);
  std::fflush(stdout);
}

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

// The next `n` microbatches of `loader`, or an error naming the split and iteration.
std::vector<datasets::GPTBatch> next_batches(datasets::DataLoader& loader, int64_t n,
                                             const std::string& split, int64_t iteration,
                                             int64_t consumed) {
  std::vector<datasets::GPTBatch> v;
  for (int64_t m = 0; m < n; ++m) {
    auto batch = loader.next();
    MCORE_CHECK(batch) << split << " data ran out at iteration " << iteration + 1
                       << " (consumed samples " << consumed << ")";
    v.push_back(std::move(*batch));
  }
  return v;
}

// Megatron's --log-params-norm: the L2 norm of the whole model, each element counted once (no
// tensor-parallel replicas, no tied copy), over the model-parallel group.
bool experts_spread(const Arguments& args) {
  return args.num_experts.value_or(0) > 0 &&
         (args.expert_model_parallel_size > 1 || args.tensor_model_parallel_size > 1);
}

std::function<bool(const nn::Parameter&)> experts_counted_once() {
  const int dp_cp_rank = parallel_state::get_data_parallel_rank(/*with_context_parallel=*/true);
  const int edp_rank = parallel_state::get_expert_data_parallel_rank();
  const int tp_rank = parallel_state::get_tensor_model_parallel_rank();
  return [dp_cp_rank, edp_rank, tp_rank](const nn::Parameter& p) {
    if (!p.allreduce) return edp_rank == 0;
    return dp_cp_rank == 0 && (p.tensor_model_parallel || tp_rank == 0);
  };
}

double params_norm(const NamedParameters& params, const Arguments& args) {
  const int tp_rank = optimizer::default_tensor_model_parallel_rank();
  const bool spread = experts_spread(args);
  const auto once = spread ? experts_counted_once() : nullptr;
  std::vector<Tensor> values;
  for (const auto& [name, p] : params) {
    if (!optimizer::param_is_not_shared(*p)) continue;
    if (spread ? !once(*p) : !optimizer::param_is_not_tensor_parallel_duplicate(*p, tp_rank))
      continue;
    values.push_back(p->detach().to(DType::F32).to(Device::cpu()).contiguous());
  }
  return optimizer::get_grad_norm_fp32(
      values, 2.0, spread ? comm::world() : optimizer::default_grad_stats_parallel_group());
}

std::string format_eta(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "-";
  const int64_t s = static_cast<int64_t>(seconds);
  return strf("%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
              static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
}

const std::vector<std::string> kTimersToLog = {"forward-backward",
                                               "forward-compute",
                                               "backward-compute",
                                               "batch-generator",
                                               "forward-recv",
                                               "forward-send",
                                               "backward-recv",
                                               "backward-send",
                                               "forward-send-forward-recv",
                                               "forward-send-backward-recv",
                                               "backward-send-forward-recv",
                                               "backward-send-backward-recv",
                                               "forward-backward-send-forward-backward-recv",
                                               "layernorm-grads-all-reduce",
                                               "embedding-grads-all-reduce",
                                               "all-grads-sync",
                                               "params-all-gather",
                                               "optimizer-copy-to-main-grad",
                                               "optimizer-unscale-and-check-inf",
                                               "optimizer-clip-main-grad",
                                               "optimizer-count-zeros",
                                               "optimizer-inner-step",
                                               "optimizer",
                                               "save-checkpoint"};

// Collective over every rank; rank 0 prints (after the iteration line it belongs to).
void log_timers(timers::Timers& t, const std::vector<std::string>& names, double normalizer) {
  const auto report = t.report(names, comm::world(), std::max(normalizer, 1.0));
  if (report) print_rank0(*report + "\n");
}

// A level-1 timer, started after a barrier (Megatron's --barrier-with-L1-time) so that it
// measures this rank's phase, not its wait for the slowest rank to arrive.
void start_l1_timer(timers::Timers& t, const char* name, bool barrier) {
  if (!t.enabled(1)) return;
  if (barrier) comm::world()->barrier();
  t(name, 1).start();
}

std::vector<std::pair<std::string, double>> moe_aux_losses(const Arguments& args,
                                                           int64_t num_microbatches) {
  std::vector<std::pair<std::string, double>> out;
  if (args.num_experts.value_or(0) <= 0) return out;
  std::vector<std::string> names;
  if (args.moe_router_load_balancing_type == "aux_loss" && args.moe_aux_loss_coeff > 0)
    names.push_back("load_balancing_loss");
  if (args.moe_z_loss_coeff.value_or(0.0) > 0) names.push_back("z_loss");
  const int64_t layers = *args.num_layers;
  const comm::ProcessGroupPtr world = comm::world();
  for (const std::string& name : names) {
    const std::vector<double> mine = transformer::moe::take_aux_losses(name, layers);
    Tensor t = from_vector<double>(mine).to(comm::group_device(*world));
    world->all_reduce(t);  // each layer once per data-parallel replica
    const Tensor host = t.to(Device::cpu());
    double sum = 0;
    for (int64_t i = 0; i < layers; ++i) sum += host.data<double>()[i];
    out.push_back({name, sum / static_cast<double>(layers * args.data_parallel_size *
                                                   std::max<int64_t>(1, num_microbatches))});
  }
  return out;
}

}  // namespace mcore::training
