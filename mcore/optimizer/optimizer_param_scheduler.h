// OptimizerParamScheduler: Megatron Core's learning-rate and weight-decay schedule, with its
// formulas and their order of floating-point operations, so that every value equals Megatron's
// to the last bit. `step(increment)` advances the step count (Megatron-LM counts samples: the
// trainer passes the global batch size) and writes lr and weight_decay into every parameter
// group of the optimizer.
//
//   lr:  linear warmup from init_lr to max_lr over lr_warmup_steps, then decay to min_lr by
//        lr_decay_steps in one of the styles below, min_lr afterwards;
//   wd:  start_wd to end_wd over wd_incr_steps (constant, linear or cosine), end_wd afterwards;
//        a group's weight_decay is wd * wd_mult (0 for biases and norms).
//
// A group may carry its own max_lr / min_lr (Megatron's param-group overrides); the
// scheduler's are used otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace mcore::optimizer {

class MegatronOptimizer;
struct ParamGroup;

// --lr-decay-style
enum class LRDecayStyle { kConstant, kLinear, kCosine, kInverseSquareRoot, kWSD };
// --lr-wsd-decay-style (annealing phase of WSD)
enum class WSDDecayStyle { kLinear, kCosine, kExponential, kMinusSqrt };
// --weight-decay-incr-style
enum class WDIncrStyle { kConstant, kLinear, kCosine };

// Megatron's spellings ("constant", "linear", "cosine", "inverse-square-root", "WSD";
// "exponential", "minus_sqrt"); parse errors list the accepted names.
LRDecayStyle parse_lr_decay_style(const std::string& s);
WSDDecayStyle parse_wsd_decay_style(const std::string& s);
WDIncrStyle parse_wd_incr_style(const std::string& s);
const char* to_string(LRDecayStyle s);
const char* to_string(WSDDecayStyle s);
const char* to_string(WDIncrStyle s);

// The constructor arguments of Megatron's OptimizerParamScheduler.
struct OptimizerParamSchedulerConfig {
  double init_lr = 0.0;
  double max_lr = 0.0;
  double min_lr = 0.0;
  int64_t lr_warmup_steps = 0;
  int64_t lr_decay_steps = 1;
  LRDecayStyle lr_decay_style = LRDecayStyle::kLinear;
  double start_wd = 0.0;
  double end_wd = 0.0;
  int64_t wd_incr_steps = 1;
  WDIncrStyle wd_incr_style = WDIncrStyle::kConstant;
  // On load_state_dict: take the checkpoint's values (true), or require them to equal ours
  // (false); override_opt_param_scheduler keeps ours whatever the checkpoint says.
  bool use_checkpoint_opt_param_scheduler = true;
  bool override_opt_param_scheduler = false;
  std::optional<int64_t> wsd_decay_steps;  // required by WSD
  WSDDecayStyle lr_wsd_decay_style = WSDDecayStyle::kExponential;
};

class OptimizerParamScheduler {
 public:
  // `optimizer` may be null (the schedule alone: get_lr() / get_wd()). Validates the config as
  // Megatron asserts (min_lr >= 0, init_lr <= max_lr, min_lr <= max_lr, warmup < decay steps,
  // end_wd >= start_wd >= 0, ...) and applies step(0).
  OptimizerParamScheduler(MegatronOptimizer* optimizer, const OptimizerParamSchedulerConfig& c);

  // The schedule at the current step for the scheduler's own max/min lr, or a group's.
  double get_lr() const;
  double get_lr(const ParamGroup& group) const;
  double get_wd() const;

  // num_steps += increment, then every group's lr and weight_decay (times its wd_mult).
  void step(int64_t increment);

  int64_t num_steps() const { return num_steps_; }
  const OptimizerParamSchedulerConfig& config() const { return c_; }

  // Megatron's keys: max_lr, lr_warmup_steps, num_steps, lr_decay_style, lr_decay_steps,
  // min_lr, start_wd, end_wd, wd_incr_style, wd_incr_steps (styles as Megatron's strings).
  nlohmann::json state_dict() const;
  // Megatron's semantics: each value comes from the checkpoint (use_checkpoint), must equal
  // ours (neither flag: an error naming the value), or stays ours (override); then
  // step(num_steps) from the checkpoint. Old key names (start_lr, warmup_iter, warmup_steps,
  // end_iter, decay_steps, decay_style, num_iters) are accepted as Megatron does.
  void load_state_dict(const nlohmann::json& state_dict);

 private:
  double lr_at(double max_lr, double min_lr) const;
  double wd_at(double start_wd, double end_wd) const;
  template <class T>
  T check_and_set(const T& cls_value, const T& sd_value, const char* name) const;
  void validate() const;

  MegatronOptimizer* optimizer_;
  OptimizerParamSchedulerConfig c_;
  int64_t num_steps_ = 0;
};

}  // namespace mcore::optimizer
