#include "mcore/pipeline_parallel/schedule_runner.h"

#include "mcore/autograd/engine.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"
#include "mcore/timers/timers.h"
#include "mcore/transformer/moe/moe_utils.h"

namespace mcore::pipeline_parallel::detail {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

ScheduleRunner::ScheduleRunner(const ForwardStepFunc& forward_step_func,
                               const ScheduleConfig& config)
    : forward_step_func_(forward_step_func),
      config_(config),
      start_(std::chrono::steady_clock::now()) {
  MCORE_CHECK(config_.num_microbatches >= 1)
      << "pipeline schedule: num_microbatches must be at least 1, got " << config_.num_microbatches;
  // Megatron's forward_step: a MoE layer's auxiliary loss gets the gradient the main loss gets
  // per microbatch (the loss scale, divided by the microbatch count unless the loss is summed
  // per token), so it weighs the same whatever the schedule or accumulation.
  if (!config_.forward_only) {
    double scale = 1.0;
    if (config_.grad_scale_func) {
      NoGradGuard no_grad;
      scale = config_.grad_scale_func(scalar_tensor(1.0, DType::F32)).to(Device::cpu()).item();
    }
    if (!config_.calculate_per_token_loss) scale /= static_cast<double>(config_.num_microbatches);
    transformer::moe::set_aux_loss_backward_scale(scale);
  }
  MCORE_CHECK(config_.ddp.empty() ||
              static_cast<int>(config_.ddp.size()) == config_.num_model_chunks)
      << "pipeline schedule: " << config_.ddp.size() << " DDP wrappers for "
      << config_.num_model_chunks << " model chunks (pass one per chunk, or none)";
}

ScheduleRunner::~ScheduleRunner() = default;

Tensor ScheduleRunner::forward_step(int64_t microbatch_id, int chunk, const Tensor& input,
                                    bool is_last_stage) {
  const auto t0 = std::chrono::steady_clock::now();
  timers::ScopedTimer timer("forward-compute", 2);
  ForwardStepOutput out = forward_step_func_(microbatch_id, chunk, input, is_last_stage);
  MCORE_CHECK(out.output.defined()) << "forward_step_func returned no output for microbatch "
                                    << microbatch_id << " of model chunk " << chunk;
  Tensor result = out.output;
  if (is_last_stage) {
    MCORE_CHECK(out.output.numel() == 1)
        << "forward_step_func: on the last pipeline stage the output must be the microbatch's "
           "scalar loss, got shape "
        << shape_str(out.output.shape());
    result_.losses_reduced.push_back(std::move(out.reported));
    result_.num_tokens += out.num_tokens;
    if (!config_.forward_only && !config_.calculate_per_token_loss)
      result = F::scale(out.output, 1.0 / static_cast<double>(config_.num_microbatches));
  }
  ++result_.stats.forward_steps;
  if (!config_.forward_only) {
    ++live_;
    result_.stats.max_live_microbatches = std::max(result_.stats.max_live_microbatches, live_);
  }
  result_.stats.compute_seconds += seconds_since(t0);
  return result;
}

Tensor ScheduleRunner::backward_step(const Tensor& input, const Tensor& output,
                                     const Tensor& output_grad) {
  const auto t0 = std::chrono::steady_clock::now();
  timers::ScopedTimer timer("backward-compute", 2);
  if (output_grad.defined()) {
    autograd::backward({output}, {output_grad});
  } else {
    Tensor loss = config_.grad_scale_func ? config_.grad_scale_func(output) : output;
    autograd::backward({loss});
  }
  Tensor input_grad;
  if (input.defined()) {
    input_grad = input.grad();
    // A stage whose output does not depend on its input still owes the previous stage a
    // gradient: zeros.
    if (!input_grad.defined()) input_grad = zeros(input.shape(), {input.dtype(), input.device()});
  }
  ++result_.stats.backward_steps;
  --live_;
  result_.stats.compute_seconds += seconds_since(t0);
  return input_grad;
}

Tensor ScheduleRunner::release_output(const Tensor& output) const {
  // Only a non-leaf output can be replaced by a shell that keeps its grad_fn; a leaf (a stage
  // with no layers passing its input through) keeps its values.
  // The last stage's loss is a scalar whose value backward still reads (loss scaling): kept.
  if (!config_.deallocate_pipeline_outputs || !output.defined() || !output.grad_fn() ||
      output.numel() <= 1)
    return output;
  auto storage = std::make_shared<StorageImpl>(0, output.device());
  Tensor shell(storage, output.shape(), contiguous_strides(output.shape()), 0, output.dtype());
  AutogradMeta& meta = shell.impl()->autograd_meta();
  meta.requires_grad = true;
  meta.grad_fn = output.grad_fn();
  meta.output_nr = output.output_nr();
  return shell;
}

void ScheduleRunner::disable_grad_sync() {
  if (!no_sync_.empty()) return;
  for (auto* ddp : config_.ddp)
    no_sync_.push_back(std::make_unique<distributed::DistributedDataParallel::NoSync>(*ddp));
}

void ScheduleRunner::enable_grad_sync() {
  no_sync_.clear();
}

ForwardBackwardResult ScheduleRunner::finish() {
  enable_grad_sync();
  result_.stats.total_seconds = seconds_since(start_);
  return std::move(result_);
}

}  // namespace mcore::pipeline_parallel::detail
