#include "mcore/tensor/factory.h"

#include "mcore/base/philox.h"
#include "mcore/tensor/copy.h"

namespace mcore {

Tensor empty(const Shape& shape, TensorOptions o) {
  for (int64_t s : shape)
    MCORE_CHECK(s >= 0) << "empty: negative size in shape " << shape_str(shape);
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(o.dtype);
  return Tensor(std::make_shared<StorageImpl>(bytes, o.device), shape, contiguous_strides(shape), 0,
                o.dtype);
}
Tensor full(const Shape& shape, double value, TensorOptions o) {
  Tensor t = empty(shape, o);
  t.fill_(value);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions o) {
  return full(shape, 0.0, o);
}
Tensor ones(const Shape& shape, TensorOptions o) {
  return full(shape, 1.0, o);
}
Tensor empty_like(const Tensor& t) {
  return empty(t.shape(), {t.dtype(), t.device()});
}
Tensor zeros_like(const Tensor& t) {
  return zeros(t.shape(), {t.dtype(), t.device()});
}
Tensor ones_like(const Tensor& t) {
  return ones(t.shape(), {t.dtype(), t.device()});
}
Tensor scalar_tensor(double value, TensorOptions o) {
  return full({}, value, o);
}

Tensor arange(int64_t end, TensorOptions o) {
  return arange(0, end, 1, o);
}
Tensor arange(int64_t start, int64_t end, int64_t step, TensorOptions o) {
  MCORE_CHECK(step != 0) << "arange: step must be non-zero";
  int64_t n = std::max<int64_t>(0, (end - start + step + (step > 0 ? -1 : 1)) / step);
  Tensor t = empty({n}, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<double>(start + i * step);
  return t.to(o.dtype).to(o.device);
}

namespace {

// Fills `t` with stream values addressed by global linear index.
template <class DrawRange>
void fill_random(Tensor& t, const RandomSpec& spec, DrawRange&& draw) {
  Shape gshape = spec.global_shape.empty() ? t.shape() : spec.global_shape;
  Shape goff = spec.global_offset.empty() ? Shape(t.shape().size(), 0) : spec.global_offset;
  MCORE_CHECK(gshape.size() == t.shape().size() && goff.size() == t.shape().size())
      << "random fill: global shape " << shape_str(gshape) << " / offset " << shape_str(goff)
      << " must have the rank of the local shape " << shape_str(t.shape());
  for (size_t d = 0; d < gshape.size(); ++d) {
    MCORE_CHECK(goff[d] >= 0 && goff[d] + t.shape()[d] <= gshape[d])
        << "random fill: slice offset " << shape_str(goff) << " + local shape "
        << shape_str(t.shape()) << " exceeds global shape " << shape_str(gshape);
  }
  // A contiguous float32 CPU tensor is filled in place; others through a float32 staging copy.
  const bool direct = t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
  Tensor staging = direct ? t : empty(t.shape(), DType::F32);
  float* out = staging.data<float>();
  const int64_t nd = static_cast<int64_t>(gshape.size());
  const int64_t n = t.numel();
  if (n > 0) {
    // Each innermost local row is a contiguous run of the global index space.
    const int64_t row = nd ? t.shape()[nd - 1] : 1;
    const Shape gstrides = contiguous_strides(gshape);
    const int64_t rows = n / row;
    // Rows on every thread: a weight is thousands of short rows, each below the draw's own
    // parallel threshold, and its initialization ran on one core (a GPT-2 model took 1.5 s).
    // Every value comes from its global index, so the result does not depend on the threads.
#pragma omp parallel for schedule(static) if (n > 65536 && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t rem = r, gidx = nd ? goff[nd - 1] : 0;
      for (int64_t d = nd - 2; d >= 0; --d) {
        int64_t i = rem % t.shape()[d];
        rem /= t.shape()[d];
        gidx += (i + goff[d]) * gstrides[d];
      }
      draw(static_cast<uint64_t>(gidx), row, out + r * row);
    }
  }
  if (!direct) copy_tensor(t, staging.to(Device::cpu()), false);
}

}  // namespace

void normal_(Tensor& t, const RandomSpec& spec, double mean, double std) {
  fill_random(t, spec, [&](uint64_t first, int64_t n, float* out) {
    Philox::fill_normal(spec.seed, spec.stream, first, n, out);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(mean + std * out[i]);
  });
}

void uniform_(Tensor& t, const RandomSpec& spec, double low, double high) {
  fill_random(t, spec, [&](uint64_t first, int64_t n, float* out) {
    Philox::fill_uniform(spec.seed, spec.stream, first, n, out);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(low + (high - low) * out[i]);
  });
}

Tensor randn(const Shape& shape, const RandomSpec& spec, TensorOptions o) {
  Tensor t = empty(shape, o);
  normal_(t, spec);
  return t;
}
Tensor rand(const Shape& shape, const RandomSpec& spec, TensorOptions o) {
  Tensor t = empty(shape, o);
  uniform_(t, spec);
  return t;
}

}  // namespace mcore
