// Internal to the schedules: the per-step machinery every schedule shares - running a
// microbatch's forward and backward, holding back gradient reduction, dropping sent
// activations, and the statistics.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "mcore/pipeline_parallel/schedules.h"

namespace mcore::pipeline_parallel::detail {

class ScheduleRunner {
 public:
  ScheduleRunner(const ForwardStepFunc& forward_step_func, const ScheduleConfig& config);
  ~ScheduleRunner();

  // One microbatch through one chunk. On the last stage returns the loss divided by the number
  // of microbatches (what backward starts from) and records the reported values.
  Tensor forward_step(int64_t microbatch_id, int chunk, const Tensor& input, bool is_last_stage);
  // Backward from `output` (with `output_grad` from the next stage, or from the loss when
  // undefined). Returns the gradient of `input` to send back (undefined when input is).
  Tensor backward_step(const Tensor& input, const Tensor& output, const Tensor& output_grad);

  // Keeps the autograd graph of a sent activation but frees its values.
  Tensor release_output(const Tensor& output) const;

  // DDP no_sync on every chunk (disable) or none (enable).
  void disable_grad_sync();
  void enable_grad_sync();

  ForwardBackwardResult finish();

  const ScheduleConfig& config() const { return config_; }
  ForwardBackwardResult& result() { return result_; }

 private:
  const ForwardStepFunc& forward_step_func_;
  const ScheduleConfig& config_;
  ForwardBackwardResult result_;
  int64_t live_ = 0;
  std::vector<std::unique_ptr<distributed::DistributedDataParallel::NoSync>> no_sync_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace mcore::pipeline_parallel::detail
