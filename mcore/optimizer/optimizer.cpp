#include "mcore/optimizer/optimizer.h"

#include <cmath>
#include <optional>
#include <set>
#include <unordered_map>

#include "mcore/base/error.h"
#include "mcore/nn/functional/basic.h"
#include "mcore/ops/adam.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/multi_tensor.h"
#include "mcore/ops/sgd.h"
#include "mcore/optimizer/distrib_optimizer.h"
#include "mcore/tensor/factory.h"
#include "mcore/timers/timers.h"

namespace mcore::optimizer {

namespace {

bool is_bf16_or_fp16(DType d) {
  return d == DType::BF16 || d == DType::F16;
}

const std::string kStatePrefix = "optimizer.state.";

}  // namespace

std::vector<ParamGroup> get_param_groups(
    const std::vector<std::pair<std::string, nn::ParameterPtr>>& named_parameters) {
  std::vector<ParamGroup> groups(2);
  groups[1].wd_mult = 0.0;
  std::set<const nn::Parameter*> seen;
  for (const auto& [name, p] : named_parameters) {
    MCORE_CHECK(p) << "get_param_groups: parameter '" << name << "' is null";
    if (!p->requires_grad()) continue;
    if (!seen.insert(p.get()).second) continue;  // tied weights listed twice: one entry
    const bool no_wd = p->no_weight_decay || p->dim() == 1;
    groups[no_wd ? 1 : 0].params.push_back({name, p});
  }
  return groups;
}

MegatronOptimizer::MegatronOptimizer(std::vector<ParamGroup> param_groups,
                                     const OptimizerConfig& config,
                                     std::unique_ptr<MegatronGradScaler> grad_scaler,
                                     comm::ProcessGroupPtr grad_stats_parallel_group, int tp_rank,
                                     std::shared_ptr<const DistributedOptimizerShards> shards)
    : config_(config),
      groups_(std::move(param_groups)),
      grad_scaler_(std::move(grad_scaler)),
      grad_stats_group_(std::move(grad_stats_parallel_group)),
      tp_rank_(tp_rank),
      shards_(std::move(shards)) {
  std::set<std::string> names;
  std::set<const nn::Parameter*> params;
  std::string first_name;
  Device first_device;
  for (ParamGroup& group : groups_) {
    group.lr = config_.lr;
    group.weight_decay = config_.weight_decay * group.wd_mult;
    auto& slots = slots_.emplace_back();
    for (const NamedParameter& np : group.params) {
      const nn::ParameterPtr& p = np.param;
      MCORE_CHECK(p) << "MegatronOptimizer: parameter '" << np.name << "' is null";
      MCORE_CHECK(names.insert(np.name).second)
          << "MegatronOptimizer: two parameters named '" << np.name
          << "'; names key the saved state and must be unique";
      MCORE_CHECK(params.insert(p.get()).second)
          << "MegatronOptimizer: parameter '" << np.name << "' appears twice in the groups";
      MCORE_CHECK(p->is_contiguous()) << "MegatronOptimizer: parameter '" << np.name << "' "
                                      << shape_str(p->shape()) << " must be contiguous";
      // State and fp32 main params are made on the parameter's device (move the model with
      // Module::to before building the optimizer).
      if (first_name.empty()) {
        first_name = np.name;
        first_device = p->device();
      }
      MCORE_CHECK(p->device() == first_device)
          << "MegatronOptimizer: parameter '" << np.name << "' is on " << p->device() << " but '"
          << first_name << "' on " << first_device << "; move the whole model to one device";
      const DType d = p->dtype();
      MCORE_CHECK(d == DType::F32 || is_bf16_or_fp16(d))
          << "MegatronOptimizer: parameter '" << np.name << "' has dtype " << d
          << "; expected float32, bfloat16 or float16";
      MCORE_CHECK(d != DType::F16 || grad_scaler_)
          << "MegatronOptimizer: fp16 parameter '" << np.name << "' needs a loss scaler "
          << "(--fp16 uses a dynamic one unless --loss-scale is given)";
      Slot slot;
      slot.name = np.name;
      slot.model = p;
      slot.mixed = is_bf16_or_fp16(d);
      slot.end = p->numel();
      slot.model_part = p->detach();
      if (shards_) {
        const auto r = shards_->local_range(*p);
        slot.begin = r.begin;
        slot.end = r.end;
        slot.model_part = slot.model_part.reshape({p->numel()}).narrow(0, r.begin, r.size());
      }
      slot.main_param = slot.mixed ? slot.model_part.to(DType::F32) : slot.model_part;
      slots.push_back(std::move(slot));
    }
  }
}

std::vector<nn::ParameterPtr> MegatronOptimizer::get_parameters() const {
  std::vector<nn::ParameterPtr> out;
  for (const auto& slots : slots_) {
    for (const Slot& s : slots) out.push_back(s.model);
  }
  return out;
}

const Tensor& MegatronOptimizer::main_param(const nn::Parameter& param) const {
  for (const auto& slots : slots_) {
    for (const Slot& s : slots) {
      if (s.model.get() == &param) return s.main_param;
    }
  }
  MCORE_FAIL() << "MegatronOptimizer::main_param: parameter " << shape_str(param.shape())
               << " is not in this optimizer";
  throw 0;  // unreachable
}

void MegatronOptimizer::zero_grad(bool set_to_none) {
  for (auto& slots : slots_) {
    for (Slot& s : slots) {
      if (set_to_none) {
        s.model->set_grad(Tensor());
      } else if (s.model->grad().defined()) {
        Tensor g = s.model->grad();
        g.zero_();
      }
      s.grad = Tensor();
    }
  }
}

Tensor MegatronOptimizer::scale_loss(const Tensor& loss) const {
  return F::scale(loss, static_cast<double>(get_loss_scale()));
}

bool MegatronOptimizer::prepare_grads() {
  // Megatron's _copy_model_grads_to_main_grads: main_grad (DDP's fp32 buffer) or grad, fp32.
  std::vector<Tensor> grads;
  std::optional<timers::ScopedTimer> copy_timer(std::in_place, "optimizer-copy-to-main-grad", 1);
  for (auto& slots : slots_) {
    for (Slot& s : slots) {
      Tensor src = s.model->main_grad.defined() ? s.model->main_grad : s.model->grad();
      s.grad = Tensor();
      if (!src.defined()) continue;
      // The distributed optimizer reads this rank's part of the reduce-scattered buffer.
      if (shards_) src = src.reshape({src.numel()}).narrow(0, s.begin, s.end - s.begin);
      MCORE_CHECK(src.numel() == s.main_param.numel())
          << "MegatronOptimizer: gradient of '" << s.name << "' has shape "
          << shape_str(src.shape()) << " but the parameter " << shape_str(s.model->shape());
      MCORE_CHECK(!shards_ || s.model->main_grad.defined())
          << "MegatronOptimizer: parameter '" << s.name << "' has no main_grad; the "
          << "distributed optimizer needs the model wrapped in DistributedDataParallel";
      if (src.dtype() == DType::F32 && src.is_contiguous()) {
        s.grad = src;  // in place, as Megatron: unscaling and clipping act on it
      } else {
        if (!s.grad_buffer.defined())
          s.grad_buffer = empty(s.main_param.shape(), {DType::F32, s.main_param.device()});
        Tensor src_view =
            src.shape() == s.grad_buffer.shape() ? src : src.reshape(s.grad_buffer.shape());
        s.grad_buffer.copy_(src_view);
        s.grad = s.grad_buffer;
      }
      if (s.grad.numel() > 0) grads.push_back(s.grad);
    }
  }
  copy_timer.reset();
  if (!grad_scaler_) return false;
  timers::ScopedTimer timer("optimizer-unscale-and-check-inf", 1);
  bool found_inf = ops::non_finite_check_and_unscale_(grads, grad_scaler_->inv_scale());
  if (grad_stats_group_ && grad_stats_group_->size() > 1) {
    Tensor flag =
        from_vector<float>({found_inf ? 1.0f : 0.0f}).to(comm::group_device(*grad_stats_group_));
    grad_stats_group_->all_reduce(flag, comm::ReduceOp::kMax);
    found_inf = flag.item() > 0.0;
  }
  grad_scaler_->update(found_inf);
  return found_inf;
}

std::vector<Tensor> MegatronOptimizer::get_main_grads_for_grad_norm() const {
  std::vector<Tensor> out;
  for (const auto& slots : slots_) {
    for (const Slot& s : slots) {
      if (s.grad.defined() && s.grad.numel() > 0 && param_is_not_shared(*s.model) &&
          // Expert weights (allreduce = false) are whole on each rank and replicated over the
          // expert-data-parallel group, which the filter (or the shards) count once.
          (param_is_not_tensor_parallel_duplicate(*s.model, tp_rank_) || !s.model->allreduce) &&
          (!grad_stats_filter_ || grad_stats_filter_(*s.model))) {
        out.push_back(s.grad);
      }
    }
  }
  return out;
}

double MegatronOptimizer::get_grad_norm() {
  return get_grad_norm_fp32(get_main_grads_for_grad_norm(), 2.0, grad_stats_group_);
}

double MegatronOptimizer::clip_grad_norm(double clip_grad) {
  const double norm = get_grad_norm();
  clip_by_total_norm(clip_grad, norm);
  return norm;
}

void MegatronOptimizer::clip_by_total_norm(double clip_grad, double total_norm) {
  std::vector<Tensor> grads;
  for (auto& slots : slots_) {
    for (Slot& s : slots) {
      if (s.grad.defined() && s.grad.numel() > 0) grads.push_back(s.grad);
    }
  }
  clip_grad_by_total_norm_fp32(grads, clip_grad, total_norm);
}

int64_t MegatronOptimizer::count_zeros() {
  return count_zeros_fp32(get_main_grads_for_grad_norm(), grad_stats_group_);
}

bool MegatronOptimizer::step_with_ready_grads() {
  const std::vector<std::string> names = state_names();
  std::optional<timers::ScopedTimer> timer(std::in_place, "optimizer-inner-step", 1);
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (Slot& s : slots_[gi]) {
      if (!s.grad.defined()) continue;  // no gradient: untouched, as torch
      if (s.state.size() != names.size()) {
        s.state.clear();
        for (size_t i = 0; i < names.size(); ++i) s.state.push_back(zeros_like(s.main_param));
      }
      ++s.step;  // counted on every rank, so saved step counts agree whoever saves
      if (s.main_param.numel() > 0) update(s, groups_[gi]);
    }
  }
  timer.reset();
  if (shards_) {
    timers::ScopedTimer gather_timer("params-all-gather", 1);
    shards_->all_gather_params();
  }
  return true;
}

StepResult MegatronOptimizer::step() {
  ++iteration_;
  StepResult result;
  if (prepare_grads()) {
    ++num_skipped_;
    result.success = false;
    return result;
  }
  if (config_.clip_grad > 0.0) {
    timers::ScopedTimer timer("optimizer-clip-main-grad", 1);
    const double norm = get_grad_norm();
    // With a loss scaler an overflow was caught above; here a NaN/Inf norm is a real failure,
    // reported before the grads are touched.
    if (config_.check_for_nan_in_grad) check_for_nan_or_inf(norm, "grad norm", iteration_);
    clip_by_total_norm(config_.clip_grad, norm);
    result.grad_norm = norm;
  }
  if (config_.log_num_zeros_in_grad) {
    timers::ScopedTimer timer("optimizer-count-zeros", 1);
    result.num_zeros_in_grad = count_zeros();
  }
  result.success = step_with_ready_grads();
  return result;
}

void MegatronOptimizer::reload_model_params() {
  for (auto& slots : slots_) {
    for (Slot& s : slots) {
      if (s.mixed) s.main_param.copy_(s.model_part);
    }
  }
}

OptimizerStateDict MegatronOptimizer::state_dict() const {
  OptimizerStateDict sd;
  const std::vector<std::string> names = state_names();
  nlohmann::json groups = nlohmann::json::array();
  nlohmann::json steps = nlohmann::json::object();
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    nlohmann::json params = nlohmann::json::array();
    for (const Slot& s : slots_[gi]) {
      params.push_back(s.name);
      steps[s.name] = s.step;
      for (size_t i = 0; i < s.state.size(); ++i) {
        sd.tensors[kStatePrefix + names[i] + "." + s.name] = s.state[i];
      }
      if (s.mixed) sd.tensors[kStatePrefix + "fp32_param." + s.name] = s.main_param;
    }
    groups.push_back({{"lr", g.lr},
                      {"weight_decay", g.weight_decay},
                      {"wd_mult", g.wd_mult},
                      {"default_config", g.default_config},
                      {"params", params}});
  }
  sd.meta = {{"optimizer", name()}, {"param_groups", groups}, {"step", steps}};
  if (grad_scaler_) sd.meta["grad_scaler"] = grad_scaler_->state_dict();
  if (shards_) {
    // Each rank holds its part of every state tensor: join the parts, so that the state saved
    // is the whole tensors a non-distributed run saves (loadable under any layout).
    std::unordered_map<const nn::Parameter*, const Slot*> slot_of;
    for (const auto& slots : slots_) {
      for (const Slot& s : slots) slot_of[s.model.get()] = &s;
    }
    std::vector<std::string> kinds = names;
    kinds.push_back("fp32_param");
    for (size_t i = 0; i < kinds.size(); ++i) {
      const bool main = i == names.size();
      auto held = [&](const nn::Parameter& p) -> const Tensor* {
        auto it = slot_of.find(&p);
        if (it == slot_of.end()) return nullptr;
        const Slot& s = *it->second;
        if (main) return s.mixed ? &s.main_param : nullptr;
        return i < s.state.size() ? &s.state[i] : nullptr;
      };
      shards_->gather(
          DType::F32,
          [&](const nn::Parameter& p) {
            const Tensor* t = held(p);
            const auto r = shards_->local_range(p);
            return t ? *t : zeros({r.size()}, {DType::F32, p.device()});
          },
          [&](const nn::Parameter& p, const Tensor& whole) {
            if (!held(p)) return;
            const Slot& s = *slot_of.at(&p);
            sd.tensors[kStatePrefix + kinds[i] + "." + s.name] = whole.view(p.shape()).clone();
          });
    }
  }
  return sd;
}

Tensor MegatronOptimizer::part_of(const Slot& s, const std::string& key, const Tensor& t) const {
  MCORE_CHECK(t.numel() == s.model->numel())
      << "MegatronOptimizer::load_state_dict: '" << key << "' has shape " << shape_str(t.shape())
      << " but the parameter's state is " << shape_str(s.model->shape());
  if (!shards_) return t;
  return t.reshape({t.numel()}).narrow(0, s.begin, s.end - s.begin);
}

void MegatronOptimizer::load_state_dict(const OptimizerStateDict& sd) {
  const nlohmann::json& meta = sd.meta;
  MCORE_CHECK(meta.value("optimizer", std::string()) == name())
      << "MegatronOptimizer::load_state_dict: the state is of optimizer '"
      << meta.value("optimizer", std::string("?")) << "' but this one is '" << name() << "'";
  const auto& groups = meta.at("param_groups");
  MCORE_CHECK(groups.size() == groups_.size())
      << "MegatronOptimizer::load_state_dict: " << groups.size() << " saved param groups, "
      << groups_.size() << " here";
  // Saved tensors are whole; with the distributed optimizer each rank takes its part.
  auto copy_into = [&](const Slot& s, Tensor& dst, const std::string& key) {
    auto it = sd.tensors.find(key);
    MCORE_CHECK(it != sd.tensors.end())
        << "MegatronOptimizer::load_state_dict: no '" << key << "' in the saved state";
    const Tensor src = part_of(s, key, it->second);
    dst.copy_(src.shape() == dst.shape() ? src : src.reshape(dst.shape()));
  };
  const std::vector<std::string> names = state_names();
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    groups_[gi].lr = groups[gi].at("lr").get<double>();
    groups_[gi].weight_decay = groups[gi].at("weight_decay").get<double>();
    for (Slot& s : slots_[gi]) {
      MCORE_CHECK(meta.at("step").contains(s.name))
          << "MegatronOptimizer::load_state_dict: parameter '" << s.name
          << "' has no saved state (was the model built with the same layers?)";
      s.step = meta.at("step").at(s.name).get<int64_t>();
      s.state.clear();
      if (s.step > 0) {
        for (const std::string& n : names) {
          Tensor t = zeros_like(s.main_param);
          copy_into(s, t, kStatePrefix + n + "." + s.name);
          s.state.push_back(t);
        }
      }
      if (s.mixed) copy_into(s, s.main_param, kStatePrefix + "fp32_param." + s.name);
    }
  }
  if (grad_scaler_ && meta.contains("grad_scaler")) {
    grad_scaler_->load_state_dict(meta.at("grad_scaler"));
  }
}

// ---- update rules ----

void Adam::update(Slot& s, const ParamGroup& group) {
  ops::AdamConfig c;
  c.lr = group.lr;
  c.beta1 = config().adam_beta1;
  c.beta2 = config().adam_beta2;
  c.eps = config().adam_eps;
  Tensor grad = s.grad;
  if (config().decoupled_weight_decay) {
    c.weight_decay = group.weight_decay;
  } else if (group.weight_decay != 0.0) {
    // torch.optim.Adam: grad + wd * param, then the plain Adam update.
    if (!l2_grad_.defined() || l2_grad_.numel() < s.main_param.numel()) {
      l2_grad_ = empty({s.main_param.numel()}, {DType::F32, s.main_param.device()});
    }
    grad = l2_grad_.narrow(0, 0, s.main_param.numel()).view(s.main_param.shape());
    grad.copy_(s.grad);
    ops::add_(grad, s.main_param, group.weight_decay);
  }
  if (s.mixed) {
    Tensor model = s.model_part;
    ops::adam_step_with_main_(model, s.main_param, grad, s.state[0], s.state[1], s.step, c);
  } else {
    ops::adam_step_(s.main_param, grad, s.state[0], s.state[1], s.step, c);
  }
}

std::vector<std::string> SGD::state_names() const {
  if (config().sgd_momentum == 0.0) return {};
  return {"momentum_buffer"};
}

void SGD::update(Slot& s, const ParamGroup& group) {
  ops::SgdConfig c;
  c.lr = group.lr;
  c.momentum = config().sgd_momentum;
  c.weight_decay = group.weight_decay;
  Tensor none;
  Tensor& buf = s.state.empty() ? none : s.state[0];
  // A buffer holds nothing before the first update (PyTorch's None): it is set to the grad.
  const bool first = s.step == 1;
  if (s.mixed) {
    Tensor model = s.model_part;
    ops::sgd_step_with_main_(model, s.main_param, s.grad, buf, first, c);
  } else {
    ops::sgd_step_(s.main_param, s.grad, buf, first, c);
  }
}

std::unique_ptr<MegatronOptimizer> get_megatron_optimizer(
    const OptimizerConfig& config,
    const std::vector<std::pair<std::string, nn::ParameterPtr>>& named_parameters,
    comm::ProcessGroupPtr grad_stats_parallel_group, int tp_rank,
    std::shared_ptr<const DistributedOptimizerShards> shards) {
  std::unique_ptr<MegatronGradScaler> scaler;
  if (config.fp16 || config.bf16) {
    if (config.loss_scale > 0.0) {
      scaler = std::make_unique<ConstantGradScaler>(config.loss_scale);
    } else if (config.fp16) {
      scaler =
          std::make_unique<DynamicGradScaler>(config.initial_loss_scale, config.min_loss_scale, 2.0,
                                              0.5, config.loss_scale_window, config.hysteresis);
    }
  }
  auto groups = get_param_groups(named_parameters);
  if (config.optimizer == "adam") {
    return std::make_unique<Adam>(std::move(groups), config, std::move(scaler),
                                  std::move(grad_stats_parallel_group), tp_rank, shards);
  }
  if (config.optimizer == "sgd") {
    return std::make_unique<SGD>(std::move(groups), config, std::move(scaler),
                                 std::move(grad_stats_parallel_group), tp_rank, shards);
  }
  MCORE_FAIL() << "get_megatron_optimizer: optimizer '" << config.optimizer
               << "' is not supported; expected 'adam' or 'sgd' (--optimizer)";
  throw 0;  // unreachable
}

}  // namespace mcore::optimizer
