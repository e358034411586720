// Tensor: a refcounted handle to (storage, shape, strides, offset, dtype, device) plus the
// autograd state PyTorch keeps on a tensor (requires_grad, grad, grad_fn). Copying a Tensor
// copies the handle; views share storage. The methods here never record autograd history:
// graph-tracked versions of view-like and math ops live in mcore/nn/functional.h (namespace
// mcore::F), and calling a view method on a tensor that requires grad while grad mode is on is an
// error rather than a silent detach.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mcore/base/dtype.h"
#include "mcore/base/error.h"
#include "mcore/tensor/allocator.h"
#include "mcore/tensor/device.h"

namespace mcore {

namespace autograd {
class Node;
}

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

class TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  Tensor(Storage storage, Shape shape, Shape strides, int64_t offset, DType dtype);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // Metadata.
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  int64_t offset() const;
  DType dtype() const;
  Device device() const;
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  const Storage& storage() const;

  void* data_ptr() const;
  template <class T>
  T* data() const {
    MCORE_CHECK(dtype() == dtype_of<T>)
        << "data<" << dtype_name(dtype_of<T>) << ">() on a tensor of dtype " << dtype();
    return static_cast<T*>(data_ptr());
  }
  // The single element of a one-element tensor, converted to double.
  double item() const;
  template <class T>
  T item() const {
    return static_cast<T>(item());
  }

  // Views: share storage, no copy.
  Tensor view(const Shape& shape) const;     // contiguous input; one -1 allowed
  Tensor reshape(const Shape& shape) const;  // view when possible, else a contiguous copy
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops the dimension
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor flatten() const { return reshape({numel()}); }
  Tensor expand(const Shape& shape) const;  // broadcast size-1 dims with stride 0

  // Copies.
  Tensor contiguous() const;
  Tensor clone() const;
  // Convert; narrow targets round to nearest even. `saturate` clamps fp8 overflow to the max.
  Tensor to(DType dtype, bool saturate = false) const;
  Tensor to(Device device) const;
  Tensor& copy_(const Tensor& src, bool saturate = false);  // same shape (or broadcastable)
  Tensor& fill_(double value);
  Tensor& zero_();

  // Autograd state.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad);
  bool is_leaf() const;
  const Tensor& grad() const;
  void set_grad(const Tensor& grad);
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  uint32_t output_nr() const;
  Tensor detach() const;  // same storage, no history
  // Defined in mcore/autograd/engine.cpp.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Called with the incoming gradient; may return a replacement (or an undefined tensor to
  // keep it). Runs before the gradient is used.
  void register_hook(std::function<Tensor(const Tensor&)> hook) const;
  // Leaf tensors only: called after the gradient was accumulated into grad() (DDP uses this).
  void register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) const;

  std::string str() const;  // "Tensor(shape=[2, 3], dtype=float32, device=cpu)"
  std::string debug_string(int64_t max_elements = 16) const;  // with values

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Autograd fields; the behaviour lives in mcore/autograd.
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<autograd::Node> grad_accumulator;
  std::vector<std::function<Tensor(const Tensor&)>> hooks;
  std::vector<std::function<void(Tensor&)>> post_accumulate_hooks;
};

class TensorImpl {
 public:
  TensorImpl(Storage storage, Shape shape, Shape strides, int64_t offset, DType dtype)
      : storage_(std::move(storage)),
        shape_(std::move(shape)),
        strides_(std::move(strides)),
        offset_(offset),
        dtype_(dtype) {}

  Storage storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
  std::unique_ptr<AutogradMeta> autograd_;  // created on first use

  AutogradMeta& autograd_meta() {
    if (!autograd_) autograd_ = std::make_unique<AutogradMeta>();
    return *autograd_;
  }
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Thread-local grad mode (PyTorch's torch.is_grad_enabled()). The guard types live in
// mcore/autograd/grad_mode.h; the flag sits here because Tensor's view checks read it.
bool is_grad_enabled();
void set_grad_enabled(bool enabled);

// Disables graph recording in its scope (PyTorch's torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Enables graph recording in its scope (torch.enable_grad()); activation recompute uses it.
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace mcore
