// Module: the base of every layer. It owns named parameters, buffers and child modules, so a
// model exposes dotted names ("decoder.layers.0.mlp.linear_fc1.weight") exactly as Megatron's
// state dicts do, switches train/eval recursively, and saves/loads a state dict.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mcore/nn/parameter.h"

namespace mcore::nn {

using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, ParameterPtr>> named_parameters(bool recurse = true) const;
  std::vector<ParameterPtr> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Parameters and buffers by dotted name (values share storage with the module).
  StateDict state_dict() const;
  // Copies values in. strict: every name must match both ways. Shapes must match; dtypes are
  // converted. Errors list what is missing or unexpected.
  void load_state_dict(const StateDict& state, bool strict = true);
  void zero_grad();
  // Moves every parameter and buffer (recursively) to `device` in place: the Parameter objects,
  // their requires_grad, hooks and attributes stay; only the storage they point at changes, so
  // every holder of a handle sees the moved tensor. Grads (and main_grad) move along. Call it
  // before DistributedDataParallel or an optimizer takes views of the parameters.
  void to(Device device);

 protected:
  ParameterPtr register_parameter(const std::string& name, const Tensor& data);
  void register_buffer(const std::string& name, const Tensor& data);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  // Called after train() changes the mode of this module.
  virtual void on_train(bool) {}

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect_parameters(const std::string& prefix, bool recurse,
                          std::vector<std::pair<std::string, ParameterPtr>>& out) const;
  void collect_buffers(const std::string& prefix, bool recurse,
                       std::vector<std::pair<std::string, Tensor>>& out) const;

  std::vector<std::pair<std::string, ParameterPtr>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace mcore::nn
