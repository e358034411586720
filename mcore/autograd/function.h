// Custom differentiable ops, PyTorch-style:
//
//   struct Gelu : autograd::Function<Gelu> {
//     static Tensor forward(AutogradContext* ctx, const Tensor& x) {
//       ctx->save_for_backward({x});
//       return ops::gelu(x);
//     }
//     static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grads) {
//       return {ops::gelu_backward(grads[0], ctx->saved_tensors()[0])};
//     }
//   };
//   Tensor y = Gelu::apply(x);
//
// forward runs without recording; it may return a Tensor or std::vector<Tensor>. Every Tensor
// (or std::vector<Tensor>) argument is an input; backward returns one gradient per input tensor
// in argument order (undefined where none). Missing output gradients arrive as zeros.
#pragma once

#include <any>
#include <map>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "mcore/autograd/node.h"

namespace mcore::autograd {

template <class>
class FunctionNode;

class AutogradContext {
 public:
  // Saved tensors are kept detached, so an output saved for backward does not keep its own
  // grad_fn alive (no reference cycle).
  void save_for_backward(const std::vector<Tensor>& tensors);
  const std::vector<Tensor>& saved_tensors() const;
  template <class T>
  void save(const std::string& key, T value) {
    data_[key] = std::move(value);
  }
  template <class T>
  T get(const std::string& key) const {
    auto it = data_.find(key);
    MCORE_CHECK(it != data_.end()) << "AutogradContext: nothing saved under '" << key << "'";
    return std::any_cast<T>(it->second);
  }
  bool needs_input_grad(size_t i) const {
    return i < needs_input_grad_.size() && needs_input_grad_[i];
  }
  void release() {
    saved_.clear();
    data_.clear();
    released_ = true;
  }

 private:
  template <class>
  friend class Function;
  template <class>
  friend class FunctionNode;
  std::vector<Tensor> saved_;
  std::map<std::string, std::any> data_;
  std::vector<bool> needs_input_grad_;
  bool released_ = false;
};

namespace detail {
inline void collect(std::vector<Tensor>& out, const Tensor& t) {
  out.push_back(t);
}
inline void collect(std::vector<Tensor>& out, const std::vector<Tensor>& ts) {
  out.insert(out.end(), ts.begin(), ts.end());
}
template <class T>
inline void collect(std::vector<Tensor>&, const T&) {}

inline std::vector<Tensor> as_vector(Tensor t) {
  return {std::move(t)};
}
inline std::vector<Tensor> as_vector(std::vector<Tensor> ts) {
  return ts;
}
}  // namespace detail

template <class Derived>
class FunctionNode final : public Node {
 public:
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    MCORE_CHECK(!ctx_.released_) << name() << ": backward through the graph a second time "
                                 << "(pass retain_graph=true to the first backward)";
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) {
        const OutputMeta& m = output_meta_[i];
        grads[i] =
            Tensor(std::make_shared<StorageImpl>(
                       static_cast<size_t>(shape_numel(m.shape)) * dtype_size(m.dtype), m.device),
                   m.shape, contiguous_strides(m.shape), 0, m.dtype);
        grads[i].zero_();
      }
    }
    std::vector<Tensor> out = Derived::backward(&ctx_, std::move(grads));
    MCORE_CHECK(out.size() == input_shapes_.size())
        << name() << "::backward returned " << out.size() << " gradients for "
        << input_shapes_.size() << " inputs";
    for (size_t i = 0; i < out.size(); ++i) {
      if (!out[i].defined() || !next_edges_[i].valid()) {
        out[i] = Tensor();
        continue;
      }
      MCORE_CHECK(out[i].shape() == input_shapes_[i])
          << name() << "::backward: gradient " << i << " has shape " << shape_str(out[i].shape())
          << " but the input had shape " << shape_str(input_shapes_[i]);
    }
    return out;
  }
  std::string name() const override {
    std::string n = typeid(Derived).name();
    return n;
  }
  void release_variables() override { ctx_.release(); }

  AutogradContext ctx_;
  std::vector<Shape> input_shapes_;
};

template <class Derived>
class Function {
 public:
  template <class... Args>
  static auto apply(Args&&... args) {
    std::vector<Tensor> inputs;
    (detail::collect(inputs, args), ...);
    bool any_requires = false;
    for (const Tensor& t : inputs) any_requires |= t.defined() && t.requires_grad();
    const bool record = any_requires && is_grad_enabled();

    std::shared_ptr<FunctionNode<Derived>> node;
    AutogradContext scratch;
    AutogradContext* ctx = &scratch;
    if (record) {
      node = std::make_shared<FunctionNode<Derived>>();
      std::vector<Edge> edges;
      for (const Tensor& t : inputs) {
        edges.push_back(t.defined() ? gradient_edge(t) : Edge{});
        node->ctx_.needs_input_grad_.push_back(edges.back().valid());
        node->input_shapes_.push_back(t.defined() ? t.shape() : Shape{});
      }
      node->set_next_edges(std::move(edges));
      ctx = &node->ctx_;
    }
    using Result = decltype(Derived::forward(ctx, std::forward<Args>(args)...));
    Result result = [&] {
      NoGradGuard guard;
      return Derived::forward(ctx, std::forward<Args>(args)...);
    }();
    if (record) {
      std::vector<Tensor> outs = detail::as_vector(result);
      for (Tensor& o : outs) {
        // An output that aliases an input (or already has history) gets a fresh handle.
        if (o.defined() && o.impl()->autograd_) o = o.detach();
        if (o.defined() && is_floating(o.dtype())) {
          set_history(o, node);
        }
      }
      if constexpr (std::is_same_v<std::decay_t<Result>, Tensor>) {
        return outs[0];
      } else {
        return outs;
      }
    } else {
      return result;
    }
  }
};

}  // namespace mcore::autograd
