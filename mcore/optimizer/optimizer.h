// MegatronOptimizer: the optimizer the trainer drives, as Megatron Core's FP32Optimizer and
// Float16OptimizerWithFloat16Params in one class (Adam and SGD supply the update rule).
//
//   auto opt = get_megatron_optimizer(config, model.named_parameters());
//   OptimizerParamScheduler sched(opt.get(), sched_config);
//   opt->zero_grad();  loss = opt->scale_loss(loss);  loss.backward();
//   auto [ok, grad_norm, zeros] = opt->step();  if (ok) sched.step(global_batch_size);
//
// Per parameter: float32 model params are updated in place; bf16/fp16 model params get an fp32
// main copy at construction, the update runs on it, and the model param is written back
// rounded. The step's fp32 gradient is the parameter's main_grad when DDP gave it one (used in
// place, as Megatron), else its grad (float32: in place; bf16/fp16: converted into a buffer
// kept across steps). step() then unscales the grads and checks for inf/nan across the
// model-parallel group when a loss scaler is present (skipping the step on overflow), clips by
// the global norm (clip_grads.h), and applies the update with each group's lr and weight decay.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcore/comm/process_group.h"
#include "mcore/nn/parameter.h"
#include "mcore/optimizer/clip_grads.h"
#include "mcore/optimizer/grad_scaler.h"
#include "mcore/optimizer/optimizer_config.h"

namespace mcore::optimizer {

class DistributedOptimizerShards;  // distrib_optimizer.h

struct NamedParameter {
  std::string name;  // unique within the optimizer: keys its saved state
  nn::ParameterPtr param;
};

// A parameter group (torch's param_groups entry). The scheduler writes lr and weight_decay;
// the overrides, when set, replace the scheduler's own values for this group.
struct ParamGroup {
  std::vector<NamedParameter> params;
  double wd_mult = 1.0;  // 0 for biases and norm weights
  std::optional<double> max_lr, min_lr, start_wd, end_wd;
  bool default_config = true;  // follows the default schedule (its lr is the one logged)
  double lr = 0.0;
  double weight_decay = 0.0;
};

// Megatron's default grouping: parameters that take weight decay first, then those that do not
// (Parameter::no_weight_decay, or one-dimensional: biases and norm weights), wd_mult 0. Both
// groups always exist (possibly empty) so that every rank has the same group layout.
// Parameters that do not require grad are left out.
std::vector<ParamGroup> get_param_groups(
    const std::vector<std::pair<std::string, nn::ParameterPtr>>& named_parameters);

struct StepResult {
  bool success = true;                       // false: skipped (inf/nan with a loss scaler)
  std::optional<double> grad_norm;           // when clip_grad > 0 and not skipped
  std::optional<int64_t> num_zeros_in_grad;  // when log_num_zeros_in_grad and not skipped
};

// The optimizer's state: scalar values as JSON, tensors by key. Keys are Megatron's sharded
// names with the parameter's name: "optimizer.state.<state>.<param>" (exp_avg, exp_avg_sq,
// momentum_buffer) and "optimizer.state.fp32_param.<param>" for main params of bf16/fp16
// params. state_dict() hands out the live tensors (no copy).
struct OptimizerStateDict {
  nlohmann::json meta;
  std::map<std::string, Tensor> tensors;
};

class MegatronOptimizer {
 public:
  // grad_scaler: required for fp16 params (error otherwise), optional for bf16, unused for
  // fp32. grad_stats_parallel_group: where the norm, zero count and found-inf are reduced
  // (Megatron: the model-parallel group; with the distributed optimizer, every rank).
  // tp_rank: tensor-parallel rank for the duplicate rule. shards: the distributed optimizer's
  // sharding (Megatron's DistributedOptimizer): each parameter's state, main copy and update
  // cover only this data-parallel rank's part of it, the gradient comes from DDP's
  // reduce-scattered buffer, and step() ends by all-gathering the weights. state_dict() and
  // load_state_dict() still speak whole tensors (collectives over the data-parallel group).
  MegatronOptimizer(
      std::vector<ParamGroup> param_groups, const OptimizerConfig& config,
      std::unique_ptr<MegatronGradScaler> grad_scaler = nullptr,
      comm::ProcessGroupPtr grad_stats_parallel_group = default_grad_stats_parallel_group(),
      int tp_rank = default_tensor_model_parallel_rank(),
      std::shared_ptr<const DistributedOptimizerShards> shards = nullptr);
  virtual ~MegatronOptimizer() = default;
  MegatronOptimizer(const MegatronOptimizer&) = delete;
  MegatronOptimizer& operator=(const MegatronOptimizer&) = delete;

  // Which parameters this rank counts in the grad norm and zero count, when the stats group
  // spans ranks holding copies of them (expert parallelism without the distributed optimizer
  // reduces over every rank, so each copy must be counted once). Unset: all.
  void set_grad_stats_filter(std::function<bool(const nn::Parameter&)> filter) {
    grad_stats_filter_ = std::move(filter);
  }

  // set_to_none: drop each model param's grad (else fill it with zeros). main_grad is DDP's.
  void zero_grad(bool set_to_none = true);
  StepResult step();

  // The pieces of step(), for callers that interleave their own work (Megatron's names).
  // prepare_grads: gather fp32 grads, unscale, check inf/nan across the group, update the
  // scaler; returns true when the step must be skipped.
  bool prepare_grads();
  double get_grad_norm();
  double clip_grad_norm(double clip_grad);
  int64_t count_zeros();
  bool step_with_ready_grads();

  float get_loss_scale() const { return grad_scaler_ ? grad_scaler_->scale() : 1.0f; }
  // loss * loss scale, differentiable (the loss to call backward on).
  Tensor scale_loss(const Tensor& loss) const;
  MegatronGradScaler* grad_scaler() const { return grad_scaler_.get(); }

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  std::vector<nn::ParameterPtr> get_parameters() const;
  // The fp32 grads that enter the norm this step (after prepare_grads): not shared, not a
  // tensor-parallel duplicate.
  std::vector<Tensor> get_main_grads_for_grad_norm() const;
  // The fp32 parameter the update runs on (the model param itself when it is fp32); with the
  // distributed optimizer, this rank's flattened part of it.
  const Tensor& main_param(const nn::Parameter& param) const;
  // The distributed optimizer's sharding, or nullptr.
  const DistributedOptimizerShards* shards() const { return shards_.get(); }

  // Copies model params into the fp32 main params (after loading model weights without the
  // optimizer state: --no-load-optim, --finetune).
  void reload_model_params();
  OptimizerStateDict state_dict() const;
  // Copies saved state into this optimizer's tensors: every key must be present with the
  // parameter's shape (errors name the key and both shapes).
  void load_state_dict(const OptimizerStateDict& state_dict);

  // Iterations completed so far (Megatron's args.iteration; set it after loading a
  // checkpoint): step() counts one more, and NaN/Inf errors name that iteration.
  void set_iteration(int64_t iteration) { iteration_ = iteration; }
  // Steps skipped for inf/nan since construction.
  int64_t num_skipped_steps() const { return num_skipped_; }
  const OptimizerConfig& config() const { return config_; }

 protected:
  struct Slot {
    std::string name;
    nn::ParameterPtr model;
    bool mixed = false;  // bf16/fp16 model param with an fp32 main copy
    // The model param's elements this slot updates: the whole param, or (distributed
    // optimizer) the flat range [begin, end) of its elements that this rank owns.
    Tensor model_part;
    int64_t begin = 0, end = 0;
    Tensor main_param;          // fp32: shares model_part's storage unless mixed
    Tensor grad_buffer;         // fp32 copy of a bf16/fp16 grad, kept across steps
    Tensor grad;                // this step's fp32 grad (undefined: no grad, not updated)
    int64_t step = 0;           // updates applied (torch's per-parameter state['step'])
    std::vector<Tensor> state;  // the update rule's buffers, in state_names() order
  };
  // The update rule: state buffer names (allocated as zeros like the main param before the
  // first update) and one parameter's update with its group's lr and weight decay; slot.step
  // already counts this update.
  virtual std::vector<std::string> state_names() const = 0;
  virtual void update(Slot& slot, const ParamGroup& group) = 0;
  virtual const char* name() const = 0;

 private:
  void clip_by_total_norm(double clip_grad, double total_norm);
  // The whole saved tensor `t` (any shape with the param's numel), cut to the slot's part.
  Tensor part_of(const Slot& s, const std::string& key, const Tensor& t) const;

  OptimizerConfig config_;
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Slot>> slots_;  // [group][param]
  std::unique_ptr<MegatronGradScaler> grad_scaler_;
  comm::ProcessGroupPtr grad_stats_group_;
  std::function<bool(const nn::Parameter&)> grad_stats_filter_;
  int tp_rank_;
  int64_t iteration_ = 0;
  int64_t num_skipped_ = 0;
  std::shared_ptr<const DistributedOptimizerShards> shards_;
};

// torch.optim.AdamW with Megatron's OptimizerConfig (decoupled_weight_decay false: torch Adam's
// L2 term added to the gradient).
class Adam : public MegatronOptimizer {
 public:
  using MegatronOptimizer::MegatronOptimizer;

 protected:
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  void update(Slot& slot, const ParamGroup& group) override;
  const char* name() const override { return "adam"; }

 private:
  Tensor l2_grad_;  // scratch for the L2 form
};

// torch.optim.SGD(momentum=sgd_momentum, weight_decay=group's), dampening 0, no Nesterov.
class SGD : public MegatronOptimizer {
 public:
  using MegatronOptimizer::MegatronOptimizer;

 protected:
  std::vector<std::string> state_names() const override;
  void update(Slot& slot, const ParamGroup& group) override;
  const char* name() const override { return "sgd"; }
};

// Megatron's get_megatron_optimizer for one model chunk list: default param groups, the loss
// scaler its rules pick (loss_scale > 0: constant; else fp16: dynamic with growth 2, backoff
// 0.5, --loss-scale-window, --hysteresis; else none) and Adam or SGD by config.optimizer.
// shards: see MegatronOptimizer (nullptr: not distributed).
std::unique_ptr<MegatronOptimizer> get_megatron_optimizer(
    const OptimizerConfig& config,
    const std::vector<std::pair<std::string, nn::ParameterPtr>>& named_parameters,
    comm::ProcessGroupPtr grad_stats_parallel_group = default_grad_stats_parallel_group(),
    int tp_rank = default_tensor_model_parallel_rank(),
    std::shared_ptr<const DistributedOptimizerShards> shards = nullptr);

}  // namespace mcore::optimizer
