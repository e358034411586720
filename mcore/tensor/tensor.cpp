#include "mcore/tensor/tensor.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>

#include "mcore/tensor/copy.h"

namespace mcore {

namespace {
thread_local bool t_grad_enabled = true;

int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  int64_t w = d < 0 ? d + ndim : d;
  MCORE_CHECK(w >= 0 && w < ndim) << op << ": dimension " << d << " out of range for a " << ndim
                                  << "-d tensor";
  return w;
}
}  // namespace

bool is_grad_enabled() {
  return t_grad_enabled;
}
void set_grad_enabled(bool enabled) {
  t_grad_enabled = enabled;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

Tensor::Tensor(Storage storage, Shape shape, Shape strides, int64_t offset, DType dtype)
    : impl_(std::make_shared<TensorImpl>(std::move(storage), std::move(shape), std::move(strides),
                                         offset, dtype)) {}

#define MCORE_REQUIRE_DEFINED() MCORE_CHECK(impl_) << "operation on an undefined Tensor"

const Shape& Tensor::shape() const {
  MCORE_REQUIRE_DEFINED();
  return impl_->shape_;
}
const Shape& Tensor::strides() const {
  MCORE_REQUIRE_DEFINED();
  return impl_->strides_;
}
int64_t Tensor::dim() const {
  return static_cast<int64_t>(shape().size());
}
int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  return strides()[wrap_dim(d, dim(), "stride")];
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}
int64_t Tensor::offset() const {
  MCORE_REQUIRE_DEFINED();
  return impl_->offset_;
}
DType Tensor::dtype() const {
  MCORE_REQUIRE_DEFINED();
  return impl_->dtype_;
}
Device Tensor::device() const {
  MCORE_REQUIRE_DEFINED();
  return impl_->storage_ ? impl_->storage_->device() : Device::cpu();
}
const Storage& Tensor::storage() const {
  MCORE_REQUIRE_DEFINED();
  return impl_->storage_;
}

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  MCORE_REQUIRE_DEFINED();
  if (!impl_->storage_ || !impl_->storage_->data()) return nullptr;
  return static_cast<char*>(impl_->storage_->data()) + impl_->offset_ * element_size();
}

double Tensor::item() const {
  MCORE_CHECK(numel() == 1) << "item() needs a one-element tensor, got shape "
                            << shape_str(shape());
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  return MCORE_DISPATCH_ALL(c.dtype(), "item", [&] {
    return static_cast<double>(*static_cast<const scalar_t*>(c.data_ptr()));
  });
}

namespace {
void check_view_allowed(const Tensor& t, const char* op) {
  MCORE_CHECK(!(t.requires_grad() && is_grad_enabled()))
      << "Tensor::" << op << " on a tensor that requires grad would drop it from the autograd "
      << "graph; use F::" << op << " from mcore/nn/functional.h, or call it under NoGradGuard";
}

Tensor make_view(const Tensor& t, Shape shape, Shape strides, int64_t offset) {
  return Tensor(t.storage(), std::move(shape), std::move(strides), offset, t.dtype());
}

// Strides for viewing `t` with `shape` without copying, if its memory layout allows it.
bool view_strides(const Tensor& t, const Shape& shape, Shape* out) {
  if (t.is_contiguous()) {
    *out = contiguous_strides(shape);
    return true;
  }
  // General case (PyTorch's computeStride): match chunks of old dims that are contiguous
  // among themselves against new dims of the same element count.
  const Shape& osh = t.shape();
  const Shape& ost = t.strides();
  Shape st(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(osh.size()) - 1; td >= 0; --td) {
    tensor_numel *= osh[td];
    if (td == 0 || (osh[td - 1] != 1 && ost[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = ost[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return false;
  *out = st;
  return true;
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      MCORE_CHECK(infer < 0) << op << ": only one dimension can be -1 in " << shape_str(shape);
      infer = static_cast<int64_t>(i);
    } else {
      MCORE_CHECK(out[i] >= 0) << op << ": negative size in " << shape_str(shape);
      known *= out[i];
    }
  }
  if (infer >= 0) {
    MCORE_CHECK(known > 0 && numel % known == 0)
        << op << ": cannot view shape " << shape_str(from) << " as " << shape_str(shape);
    out[infer] = numel / known;
  }
  MCORE_CHECK(shape_numel(out) == numel)
      << op << ": shape " << shape_str(shape) << " is invalid for a tensor of shape "
      << shape_str(from) << " (" << numel << " elements)";
  return out;
}
}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  check_view_allowed(*this, "view");
  Shape s = infer_shape(shape, numel(), "view", this->shape());
  Shape st;
  MCORE_CHECK(view_strides(*this, s, &st))
      << "view: tensor of shape " << shape_str(this->shape()) << " with strides "
      << shape_str(strides()) << " cannot be viewed as " << shape_str(s)
      << " without a copy; use reshape()";
  return make_view(*this, s, st, offset());
}

Tensor Tensor::reshape(const Shape& shape) const {
  check_view_allowed(*this, "reshape");
  Shape s = infer_shape(shape, numel(), "reshape", this->shape());
  Shape st;
  if (view_strides(*this, s, &st)) return make_view(*this, s, st, offset());
  return contiguous().view(s);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  check_view_allowed(*this, "narrow");
  d = wrap_dim(d, dim(), "narrow");
  MCORE_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d])
      << "narrow: range [" << start << ", " << start + length << ") out of bounds for dimension "
      << d << " of size " << shape()[d];
  Shape sh = shape();
  sh[d] = length;
  return make_view(*this, sh, strides(), offset() + start * strides()[d]);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  check_view_allowed(*this, "select");
  d = wrap_dim(d, dim(), "select");
  int64_t n = shape()[d];
  if (index < 0) index += n;
  MCORE_CHECK(index >= 0 && index < n)
      << "select: index " << index << " out of range for size " << n;
  Shape sh = shape(), st = strides();
  int64_t off = offset() + index * st[d];
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return make_view(*this, sh, st, off);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  check_view_allowed(*this, "transpose");
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  Shape sh = shape(), st = strides();
  std::swap(sh[d0], sh[d1]);
  std::swap(st[d0], st[d1]);
  return make_view(*this, sh, st, offset());
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  check_view_allowed(*this, "permute");
  MCORE_CHECK(static_cast<int64_t>(dims.size()) == dim())
      << "permute: got " << dims.size() << " dims for a " << dim() << "-d tensor";
  Shape sh(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    MCORE_CHECK(!seen[d]) << "permute: dimension " << d << " repeated";
    seen[d] = true;
    sh[i] = shape()[d];
    st[i] = strides()[d];
  }
  return make_view(*this, sh, st, offset());
}

Tensor Tensor::unsqueeze(int64_t d) const {
  check_view_allowed(*this, "unsqueeze");
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape(), st = strides();
  int64_t s = d < dim() ? st[d] * sh[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, s);
  return make_view(*this, sh, st, offset());
}

Tensor Tensor::squeeze(int64_t d) const {
  check_view_allowed(*this, "squeeze");
  d = wrap_dim(d, dim(), "squeeze");
  MCORE_CHECK(shape()[d] == 1) << "squeeze: dimension " << d << " has size " << shape()[d];
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return make_view(*this, sh, st, offset());
}

Tensor Tensor::expand(const Shape& shape) const {
  check_view_allowed(*this, "expand");
  MCORE_CHECK(static_cast<int64_t>(shape.size()) >= dim())
      << "expand: cannot expand " << shape_str(this->shape()) << " to " << shape_str(shape);
  Shape st(shape.size(), 0);
  int64_t lead = static_cast<int64_t>(shape.size()) - dim();
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t s = this->shape()[i], t = shape[lead + i];
    MCORE_CHECK(s == t || s == 1) << "expand: cannot expand " << shape_str(this->shape()) << " to "
                                  << shape_str(shape);
    st[lead + i] = (s == t) ? strides()[i] : 0;
  }
  return make_view(*this, shape, st, offset());
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out(std::make_shared<StorageImpl>(nbytes(), device()), shape(),
             contiguous_strides(shape()), 0, dtype());
  copy_tensor(out, *this, false);
  return out;
}

Tensor Tensor::to(DType d, bool saturate) const {
  if (d == dtype()) return *this;
  Tensor out(std::make_shared<StorageImpl>(static_cast<size_t>(numel()) * dtype_size(d), device()),
             shape(), contiguous_strides(shape()), 0, d);
  copy_tensor(out, *this, saturate);
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out(std::make_shared<StorageImpl>(nbytes(), d), shape(), contiguous_strides(shape()), 0,
             dtype());
  copy_between_devices(out, src);
  return out;
}

Tensor& Tensor::copy_(const Tensor& src, bool saturate) {
  Tensor s = src;
  if (src.shape() != shape()) {
    NoGradGuard no_grad;
    s = src.expand(shape());
  }
  copy_tensor(*this, s, saturate);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  fill_tensor(*this, value);
  return *this;
}
Tensor& Tensor::zero_() {
  return fill_(0.0);
}

bool Tensor::requires_grad() const {
  return impl_ && impl_->autograd_ && impl_->autograd_->requires_grad;
}
Tensor& Tensor::set_requires_grad(bool r) {
  MCORE_REQUIRE_DEFINED();
  MCORE_CHECK(!r || is_floating(dtype()))
      << "only floating-point tensors can require gradients, got " << dtype();
  MCORE_CHECK(is_leaf() || r) << "set_requires_grad(false) on a non-leaf tensor; use detach()";
  impl_->autograd_meta().requires_grad = r;
  return *this;
}
bool Tensor::is_leaf() const {
  return !impl_ || !impl_->autograd_ || !impl_->autograd_->grad_fn;
}

const Tensor& Tensor::grad() const {
  static const Tensor kUndefined;
  if (!impl_ || !impl_->autograd_) return kUndefined;
  return impl_->autograd_->grad;
}
void Tensor::set_grad(const Tensor& g) {
  MCORE_REQUIRE_DEFINED();
  if (g.defined()) {
    MCORE_CHECK(g.shape() == shape()) << "set_grad: gradient shape " << shape_str(g.shape())
                                      << " does not match tensor shape " << shape_str(shape());
  }
  impl_->autograd_meta().grad = g;
}
const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<autograd::Node> kNone;
  if (!impl_ || !impl_->autograd_) return kNone;
  return impl_->autograd_->grad_fn;
}
uint32_t Tensor::output_nr() const {
  return impl_ && impl_->autograd_ ? impl_->autograd_->output_nr : 0;
}
Tensor Tensor::detach() const {
  MCORE_REQUIRE_DEFINED();
  return Tensor(storage(), shape(), strides(), offset(), dtype());
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype() << ", device=" << device();
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::string Tensor::debug_string(int64_t max_elements) const {
  std::ostringstream os;
  os << str();
  if (!impl_) return os.str();
  Tensor c = to(Device::cpu()).to(DType::F64).contiguous();
  const double* p = c.data<double>();
  os << " [";
  for (int64_t i = 0; i < std::min(numel(), max_elements); ++i) os << (i ? ", " : "") << p[i];
  if (numel() > max_elements) os << ", ...";
  os << "]";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.str();
}

}  // namespace mcore
