// Tensor factories. Random factories draw from Philox by global element index: with
// `global_shape`/`global_offset` a rank fills only its slice of a larger (global) tensor and gets
// exactly the values the whole tensor has there.
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore {

struct TensorOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}  // NOLINT: lets callers write empty(shape, DType::F64)
  TensorOptions(DType d, Device dev) : dtype(d), device(dev) {}
};

Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor arange(int64_t end, TensorOptions options = DType::I64);
Tensor arange(int64_t start, int64_t end, int64_t step = 1, TensorOptions options = DType::I64);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

// Which Philox stream to draw from, and how this tensor sits inside the global tensor.
struct RandomSpec {
  uint64_t seed = 0;
  uint64_t stream = 0;
  Shape global_shape = {};   // empty: the tensor is the whole global tensor
  Shape global_offset = {};  // start of this slice in each global dimension
};
Tensor randn(const Shape& shape, const RandomSpec& spec, TensorOptions options = {});
Tensor rand(const Shape& shape, const RandomSpec& spec, TensorOptions options = {});
// In place: t = mean + std * normal, t = low + (high - low) * uniform.
void normal_(Tensor& t, const RandomSpec& spec, double mean = 0.0, double std = 1.0);
void uniform_(Tensor& t, const RandomSpec& spec, double low = 0.0, double high = 1.0);

// A tensor holding a copy of `values` with the given shape (default: 1-d).
template <class T>
Tensor from_vector(const std::vector<T>& values, Shape shape = {}) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  MCORE_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()))
      << "from_vector: " << values.size() << " values do not fill shape " << shape_str(shape);
  Tensor t = empty(shape, dtype_of<T>);
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}
// Scalar (0-d) tensor.
Tensor scalar_tensor(double value, TensorOptions options = {});
// Copy of t's elements into a std::vector<T> (converted).
template <class T>
std::vector<T> to_vector(const Tensor& t) {
  Tensor c = t.to(Device::cpu()).to(dtype_of<T>).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace mcore
