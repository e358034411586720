#include "mcore/nn/module.h"

#include <set>

namespace mcore::nn {

namespace {
void check_name(const std::string& name) {
  MCORE_CHECK(!name.empty() && name.find('.') == std::string::npos)
      << "invalid member name '" << name << "' (non-empty, no dots)";
}
}  // namespace

ParameterPtr Module::register_parameter(const std::string& name, const Tensor& data) {
  check_name(name);
  for (const auto& p : params_)
    MCORE_CHECK(p.first != name) << "parameter '" << name << "' registered twice";
  auto param = std::make_shared<Parameter>(data);
  params_.emplace_back(name, param);
  return param;
}

void Module::register_buffer(const std::string& name, const Tensor& data) {
  check_name(name);
  buffers_.emplace_back(name, data);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name);
  MCORE_CHECK(module) << "child module '" << name << "' is null";
  for (const auto& c : children_)
    MCORE_CHECK(c.first != name) << "child module '" << name << "' registered twice";
  children_.emplace_back(name, std::move(module));
}

void Module::collect_parameters(const std::string& prefix, bool recurse,
                                std::vector<std::pair<std::string, ParameterPtr>>& out) const {
  for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
  if (!recurse) return;
  for (const auto& [n, c] : children_) c->collect_parameters(prefix + n + ".", true, out);
}

void Module::collect_buffers(const std::string& prefix, bool recurse,
                             std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, b] : buffers_) out.emplace_back(prefix + n, b);
  if (!recurse) return;
  for (const auto& [n, c] : children_) c->collect_buffers(prefix + n + ".", true, out);
}

std::vector<std::pair<std::string, ParameterPtr>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, ParameterPtr>> out;
  collect_parameters("", recurse, out);
  return out;
}

std::vector<ParameterPtr> Module::parameters(bool recurse) const {
  std::vector<ParameterPtr> out;
  for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_buffers("", recurse, out);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, p] : named_parameters()) n += p->numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  on_train(on);
  for (auto& [n, c] : children_) c->train(on);
}

StateDict Module::state_dict() const {
  StateDict sd;
  for (auto& [n, p] : named_parameters()) sd[n] = p->detach();
  for (auto& [n, b] : named_buffers()) sd[n] = b;
  return sd;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  StateDict mine = state_dict();
  std::vector<std::string> missing, unexpected;
  for (const auto& [n, t] : mine)
    if (!state.count(n)) missing.push_back(n);
  for (const auto& [n, t] : state)
    if (!mine.count(n)) unexpected.push_back(n);
  if (strict && (!missing.empty() || !unexpected.empty())) {
    std::string msg = "load_state_dict: keys do not match.";
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 10; ++i) s += (i ? ", " : " ") + v[i];
      if (v.size() > 10) s += ", ... (" + std::to_string(v.size()) + " in all)";
      return s;
    };
    if (!missing.empty()) msg += " Missing:" + list(missing) + ".";
    if (!unexpected.empty()) msg += " Unexpected:" + list(unexpected) + ".";
    MCORE_FAIL() << msg;
  }
  NoGradGuard no_grad;
  for (auto& [n, dst] : mine) {
    auto it = state.find(n);
    if (it == state.end()) continue;
    MCORE_CHECK(it->second.shape() == dst.shape())
        << "load_state_dict: '" << n << "' has shape " << shape_str(it->second.shape())
        << " in the state dict but " << shape_str(dst.shape()) << " in the model";
    dst.copy_(it->second.to(dst.dtype()));
  }
}

namespace {

// Points t's TensorImpl at a contiguous copy on `device` (no-op when already there).
void move_impl(Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return;
  Tensor moved = t.detach().to(device);  // to() makes a contiguous copy
  TensorImpl* impl = t.impl();
  impl->storage_ = moved.storage();
  impl->strides_ = moved.strides();
  impl->offset_ = 0;
}

}  // namespace

void Module::to(Device device) {
  NoGradGuard no_grad;
  std::set<const TensorImpl*> done;  // tied parameters are listed once per holder
  for (auto& p : parameters()) {
    if (!done.insert(p->impl()).second) continue;
    MCORE_CHECK(p->is_leaf()) << "Module::to: parameter " << p->str() << " is not a leaf";
    move_impl(*p, device);
    if (p->grad().defined()) {
      Tensor g = p->grad();
      if (done.insert(g.impl()).second) move_impl(g, device);
    }
    if (p->main_grad.defined() && done.insert(p->main_grad.impl()).second)
      move_impl(p->main_grad, device);
  }
  for (auto& [n, b] : named_buffers()) {
    if (!done.insert(b.impl()).second) continue;
    move_impl(b, device);
  }
}

void Module::zero_grad() {
  for (auto& p : parameters()) {
    p->set_grad(Tensor());
    if (p->main_grad.defined()) p->main_grad.zero_();
  }
}

}  // namespace mcore::nn
