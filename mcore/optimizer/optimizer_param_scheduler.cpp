#include "mcore/optimizer/optimizer_param_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "mcore/base/error.h"
#include "mcore/base/logging.h"
#include "mcore/optimizer/optimizer.h"

namespace mcore::optimizer {

namespace {

template <class E, size_t N>
E parse_style(const std::string& s, const std::pair<const char*, E> (&names)[N], const char* what) {
  std::string valid;
  for (const auto& [name, value] : names) {
    if (s == name) return value;
    valid += (valid.empty() ? "" : ", ") + std::string(name);
  }
  MCORE_FAIL() << what << " '" << s << "' is not supported; expected one of: " << valid;
  throw 0;  // unreachable
}

constexpr std::pair<const char*, LRDecayStyle> kLRStyles[] = {
    {"constant", LRDecayStyle::kConstant},
    {"linear", LRDecayStyle::kLinear},
    {"cosine", LRDecayStyle::kCosine},
    {"inverse-square-root", LRDecayStyle::kInverseSquareRoot},
    {"WSD", LRDecayStyle::kWSD}};
constexpr std::pair<const char*, WSDDecayStyle> kWSDStyles[] = {
    {"linear", WSDDecayStyle::kLinear},
    {"cosine", WSDDecayStyle::kCosine},
    {"exponential", WSDDecayStyle::kExponential},
    {"minus_sqrt", WSDDecayStyle::kMinusSqrt}};
constexpr std::pair<const char*, WDIncrStyle> kWDStyles[] = {{"constant", WDIncrStyle::kConstant},
                                                             {"linear", WDIncrStyle::kLinear},
                                                             {"cosine", WDIncrStyle::kCosine}};

template <class E, size_t N>
const char* style_name(E e, const std::pair<const char*, E> (&names)[N]) {
  for (const auto& [name, value] : names) {
    if (value == e) return name;
  }
  return "?";
}

}  // namespace

LRDecayStyle parse_lr_decay_style(const std::string& s) {
  return parse_style(s, kLRStyles, "lr decay style");
}
WSDDecayStyle parse_wsd_decay_style(const std::string& s) {
  return parse_style(s, kWSDStyles, "lr WSD decay style");
}
WDIncrStyle parse_wd_incr_style(const std::string& s) {
  return parse_style(s, kWDStyles, "weight decay increment style");
}
const char* to_string(LRDecayStyle s) {
  return style_name(s, kLRStyles);
}
const char* to_string(WSDDecayStyle s) {
  return style_name(s, kWSDStyles);
}
const char* to_string(WDIncrStyle s) {
  return style_name(s, kWDStyles);
}

OptimizerParamScheduler::OptimizerParamScheduler(MegatronOptimizer* optimizer,
                                                 const OptimizerParamSchedulerConfig& c)
    : optimizer_(optimizer), c_(c) {
  validate();
  MCORE_CHECK(!(c_.override_opt_param_scheduler && c_.use_checkpoint_opt_param_scheduler))
      << "OptimizerParamScheduler: both override_opt_param_scheduler and "
      << "use_checkpoint_opt_param_scheduler are set; choose one (--override-opt_param-scheduler "
      << "or --use-checkpoint-opt_param-scheduler)";
  step(0);
}

void OptimizerParamScheduler::validate() const {
  MCORE_CHECK(c_.min_lr >= 0.0) << "OptimizerParamScheduler: min_lr " << c_.min_lr
                                << " must be >= 0";
  MCORE_CHECK(c_.max_lr >= c_.min_lr)
      << "OptimizerParamScheduler: max_lr (--lr) " << c_.max_lr << " is below min_lr " << c_.min_lr;
  MCORE_CHECK(c_.init_lr <= c_.max_lr)
      << "OptimizerParamScheduler: init_lr " << c_.init_lr << " is above max_lr " << c_.max_lr;
  MCORE_CHECK(c_.lr_decay_steps > 0)
      << "OptimizerParamScheduler: lr_decay_steps must be > 0, got " << c_.lr_decay_steps;
  MCORE_CHECK(c_.lr_warmup_steps < c_.lr_decay_steps)
      << "OptimizerParamScheduler: lr_warmup_steps " << c_.lr_warmup_steps
      << " must be below lr_decay_steps " << c_.lr_decay_steps;
  if (c_.lr_decay_style == LRDecayStyle::kWSD) {
    MCORE_CHECK(c_.wsd_decay_steps.has_value() && *c_.wsd_decay_steps >= 0 &&
                *c_.wsd_decay_steps <= c_.lr_decay_steps)
        << "OptimizerParamScheduler: the WSD decay style needs wsd_decay_steps "
        << "(--lr-wsd-decay-iters / --lr-wsd-decay-samples) in [0, lr_decay_steps = "
        << c_.lr_decay_steps << "]";
  }
  MCORE_CHECK(c_.start_wd >= 0.0) << "OptimizerParamScheduler: start_wd " << c_.start_wd
                                  << " must be >= 0";
  MCORE_CHECK(c_.end_wd >= c_.start_wd)
      << "OptimizerParamScheduler: end_wd " << c_.end_wd << " is below start_wd " << c_.start_wd;
  if (c_.wd_incr_style == WDIncrStyle::kConstant) {
    MCORE_CHECK(c_.start_wd == c_.end_wd)
        << "OptimizerParamScheduler: constant weight decay needs start_wd == end_wd, got "
        << c_.start_wd << " and " << c_.end_wd;
  } else {
    MCORE_CHECK(c_.wd_incr_steps > 0)
        << "OptimizerParamScheduler: weight decay increment style " << to_string(c_.wd_incr_style)
        << " needs wd_incr_steps > 0, got " << c_.wd_incr_steps;
  }
}

// The formulas are Megatron's, term for term and in its order of operations; contraction into
// fused multiply-adds is off so that each value is bitwise the one Python computes.
__attribute__((optimize("fp-contract=off"))) double OptimizerParamScheduler::wd_at(
    double start_wd, double end_wd) const {
  if (num_steps_ > c_.wd_incr_steps) return end_wd;
  if (c_.wd_incr_style == WDIncrStyle::kConstant) return end_wd;
  const double incr_ratio = static_cast<double>(num_steps_) / static_cast<double>(c_.wd_incr_steps);
  MCORE_CHECK(incr_ratio >= 0.0 && incr_ratio <= 1.0)
      << "OptimizerParamScheduler: weight decay step " << num_steps_ << " outside [0, "
      << c_.wd_incr_steps << "]";
  const double delta_wd = end_wd - start_wd;
  const double coeff = c_.wd_incr_style == WDIncrStyle::kLinear
                           ? incr_ratio
                           : 0.5 * (std::cos(std::numbers::pi * (1 - incr_ratio)) + 1.0);
  return start_wd + coeff * delta_wd;
}

__attribute__((optimize("fp-contract=off"))) double OptimizerParamScheduler::lr_at(
    double max_lr, double min_lr) const {
  const int64_t n = num_steps_;
  if (c_.lr_warmup_steps > 0 && n <= c_.lr_warmup_steps) {
    return c_.init_lr + ((max_lr - c_.init_lr) * static_cast<double>(n) /
                         static_cast<double>(c_.lr_warmup_steps));
  }
  if (c_.lr_decay_style == LRDecayStyle::kConstant) return max_lr;
  if (n > c_.lr_decay_steps) return min_lr;
  if (c_.lr_decay_style == LRDecayStyle::kInverseSquareRoot) {
    const double warmup = static_cast<double>(std::max<int64_t>(c_.lr_warmup_steps, 1));
    const double steps = static_cast<double>(std::max<int64_t>(n, 1));
    const double lr = max_lr * std::pow(warmup, 0.5) / std::pow(steps, 0.5);
    return std::max(min_lr, lr);
  }
  const double decay_ratio = static_cast<double>(n - c_.lr_warmup_steps) /
                             static_cast<double>(c_.lr_decay_steps - c_.lr_warmup_steps);
  MCORE_CHECK(decay_ratio >= 0.0 && decay_ratio <= 1.0)
      << "OptimizerParamScheduler: decay ratio " << decay_ratio << " at step " << n;
  const double delta_lr = max_lr - min_lr;
  double coeff = 1.0;
  switch (c_.lr_decay_style) {
    case LRDecayStyle::kLinear:
      coeff = 1.0 - decay_ratio;
      break;
    case LRDecayStyle::kCosine:
      coeff = 0.5 * (std::cos(std::numbers::pi * decay_ratio) + 1.0);
      break;
    case LRDecayStyle::kWSD: {
      const int64_t anneal_start = c_.lr_decay_steps - *c_.wsd_decay_steps;
      if (n <= anneal_start) break;  // the stable phase: coeff 1
      const double r =
          static_cast<double>(n - anneal_start) / static_cast<double>(*c_.wsd_decay_steps);
      switch (c_.lr_wsd_decay_style) {
        case WSDDecayStyle::kLinear:
          coeff = 1.0 - r;
          break;
        case WSDDecayStyle::kCosine:
          coeff = 0.5 * (std::cos(std::numbers::pi * r) + 1.0);
          break;
        case WSDDecayStyle::kExponential:
          coeff = (2.0 * std::pow(0.5, r)) - 1.0;
          break;
        case WSDDecayStyle::kMinusSqrt:
          coeff = 1.0 - std::sqrt(r);
          break;
      }
      break;
    }
    default:
      break;
  }
  return min_lr + coeff * delta_lr;
}

double OptimizerParamScheduler::get_lr() const {
  return lr_at(c_.max_lr, c_.min_lr);
}

double OptimizerParamScheduler::get_lr(const ParamGroup& group) const {
  return lr_at(group.max_lr.value_or(c_.max_lr), group.min_lr.value_or(c_.min_lr));
}

double OptimizerParamScheduler::get_wd() const {
  return wd_at(c_.start_wd, c_.end_wd);
}

void OptimizerParamScheduler::step(int64_t increment) {
  num_steps_ += increment;
  if (!optimizer_) return;
  // Empty groups too: the logged lr is read from the first default group wherever it lives.
  for (ParamGroup& group : optimizer_->param_groups()) {
    group.lr = get_lr(group);
    group.weight_decay =
        wd_at(group.start_wd.value_or(c_.start_wd), group.end_wd.value_or(c_.end_wd)) *
        group.wd_mult;
  }
}

nlohmann::json OptimizerParamScheduler::state_dict() const {
  return {{"max_lr", c_.max_lr},
          {"lr_warmup_steps", c_.lr_warmup_steps},
          {"num_steps", num_steps_},
          {"lr_decay_style", to_string(c_.lr_decay_style)},
          {"lr_decay_steps", c_.lr_decay_steps},
          {"min_lr", c_.min_lr},
          {"start_wd", c_.start_wd},
          {"end_wd", c_.end_wd},
          {"wd_incr_style", to_string(c_.wd_incr_style)},
          {"wd_incr_steps", c_.wd_incr_steps}};
}

template <class T>
T OptimizerParamScheduler::check_and_set(const T& cls_value, const T& sd_value,
                                         const char* name) const {
  if (c_.override_opt_param_scheduler) return cls_value;
  MCORE_CHECK(c_.use_checkpoint_opt_param_scheduler || cls_value == sd_value)
      << "OptimizerParamScheduler: " << name << " is " << cls_value << " here but " << sd_value
      << " in the checkpoint; pass --use-checkpoint-opt_param-scheduler to take the "
      << "checkpoint's, or --override-opt_param-scheduler to keep this run's";
  return sd_value;
}

void OptimizerParamScheduler::load_state_dict(const nlohmann::json& sd) {
  auto pick = [&](std::initializer_list<const char*> keys) -> const nlohmann::json& {
    for (const char* k : keys) {
      if (sd.contains(k)) return sd.at(k);
    }
    MCORE_FAIL() << "OptimizerParamScheduler::load_state_dict: the state has no '"
                 << *(keys.end() - 1) << "' entry: " << sd.dump();
    throw 0;  // unreachable
  };
  c_.max_lr = check_and_set(c_.max_lr, pick({"start_lr", "max_lr"}).get<double>(), "learning rate");
  c_.min_lr = check_and_set(c_.min_lr, pick({"min_lr"}).get<double>(), "minimum learning rate");
  c_.lr_warmup_steps = check_and_set(
      c_.lr_warmup_steps, pick({"warmup_iter", "warmup_steps", "lr_warmup_steps"}).get<int64_t>(),
      "warmup iterations");
  c_.lr_decay_steps = check_and_set(
      c_.lr_decay_steps, pick({"end_iter", "decay_steps", "lr_decay_steps"}).get<int64_t>(),
      "total number of iterations");
  const std::string style = check_and_set(
      std::string(to_string(c_.lr_decay_style)),
      pick({"decay_style", "lr_decay_style"}).get<std::string>(), "learning rate decay style");
  c_.lr_decay_style = parse_lr_decay_style(style);
  const int64_t num_steps = pick({"num_iters", "num_steps"}).get<int64_t>();
  if (sd.contains("start_wd")) {
    c_.start_wd = check_and_set(c_.start_wd, sd.at("start_wd").get<double>(), "start weight decay");
    c_.end_wd = check_and_set(c_.end_wd, pick({"end_wd"}).get<double>(), "end weight decay");
    c_.wd_incr_steps = check_and_set(c_.wd_incr_steps, pick({"wd_incr_steps"}).get<int64_t>(),
                                     "total number of weight decay iterations");
    c_.wd_incr_style = parse_wd_incr_style(check_and_set(std::string(to_string(c_.wd_incr_style)),
                                                         pick({"wd_incr_style"}).get<std::string>(),
                                                         "weight decay incr style"));
  }
  validate();
  // Megatron steps before reading the weight-decay values; stepping after them gives the same
  // step count and sets every group from the loaded values rather than the old ones.
  step(num_steps);
}

}  // namespace mcore::optimizer
