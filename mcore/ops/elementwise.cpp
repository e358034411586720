#include "mcore/ops/elementwise.h"

#include <omp.h>

#include <algorithm>
#include <array>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_check.h"
#include "mcore/ops/device_route.h"
#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/elementwise_cuda.h"
#include "mcore/ops/reduction.h"
#endif
#include "mcore/tensor/factory.h"
#include "mcore/tensor/strided.h"

namespace mcore::ops {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MCORE_CHECK(da == db || da == 1 || db == 1)
        << "shapes " << shape_str(a) << " and " << shape_str(b) << " cannot be broadcast together";
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Strides of `t` seen as a tensor of `shape` (stride 0 on broadcast dims).
Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape st(shape.size(), 0);
  size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    st[lead + i] = t.shape()[i] == 1 && shape[lead + i] != 1 ? 0 : t.strides()[i];
  return st;
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  MCORE_CHECK(a.dtype() == b.dtype())
      << op << ": dtype mismatch, " << a.dtype() << " " << shape_str(a.shape()) << " vs "
      << b.dtype() << " " << shape_str(b.shape());
}

// out = f(a, b) elementwise over the broadcast shape; out may alias a (in-place forms).
template <class T, class F>
void binary_kernel(Tensor& out, const Tensor& a, const Tensor& b, F f) {
  using A = acc_t<T>;
  T* o = static_cast<T*>(out.data_ptr());
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  const Shape& shape = out.shape();
  const int64_t n = out.numel();
  if (a.shape() == shape && b.shape() == shape && out.is_contiguous() && a.is_contiguous() &&
      b.is_contiguous()) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i)
      o[i] = store<T>(f(static_cast<A>(pa[i]), static_cast<A>(pb[i])));
    return;
  }
  Shape sa = broadcast_strides(a, shape), sb = broadcast_strides(b, shape);
  std::array<const Shape*, 3> st = {&out.strides(), &sa, &sb};
  auto row = [&](const std::array<int64_t, 3>& off, int64_t len, const std::array<int64_t, 3>& in) {
    T* po = o + off[0];
    const T* qa = pa + off[1];
    const T* qb = pb + off[2];
    if (in[0] == 1 && in[1] == 1 && in[2] == 1) {  // e.g. adding a [S, 1, H] position table
#pragma omp simd
      for (int64_t i = 0; i < len; ++i)
        po[i] = store<T>(f(static_cast<A>(qa[i]), static_cast<A>(qb[i])));
      return;
    }
    for (int64_t i = 0; i < len; ++i)
      po[i * in[0]] = store<T>(f(static_cast<A>(qa[i * in[1]]), static_cast<A>(qb[i * in[2]])));
  };
  // Large broadcasts use every thread, each on its own rows of out (each element of out is
  // written once, from the same elements of a and b, so in-place forms are safe).
  const int64_t rows = row_count(shape);
  if (n > (int64_t(1) << 16) && rows > 1 && !omp_in_parallel()) {
#pragma omp parallel
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      for_each_row_range<3>(shape, st, rows * t / nt, rows * (t + 1) / nt, row);
    }
    return;
  }
  for_each_row<3>(shape, st, row);
}

// The kernel each op runs on a GPU (its CPU form is the lambda).
struct GpuOp {
  int kind;  // cuda::BinaryOp or cuda::UnaryOp
  double alpha = 1.0;
};

template <class F>
void binary_into(Tensor& out, const Tensor& a, const Tensor& b, const char* op, F f,
                 [[maybe_unused]] GpuOp g) {
  if (on_cuda({out, a, b}, op)) {
#ifdef MCORE_WITH_CUDA
    cuda::binary(out, a, b, static_cast<cuda::BinaryOp>(g.kind), g.alpha);
#endif
    return;
  }
  MCORE_DISPATCH_FLOAT_TYPES(out.dtype(), op, [&] { binary_kernel<scalar_t>(out, a, b, f); });
}

template <class F>
Tensor binary(const Tensor& a, const Tensor& b, const char* op, F f, GpuOp g) {
  check_same_dtype(a, b, op);
  Tensor out = empty(broadcast_shapes(a.shape(), b.shape()), {a.dtype(), a.device()});
  binary_into(out, a, b, op, f, g);
  return out;
}

template <class T, class F>
void unary_kernel(Tensor& out, const Tensor& x, F f) {
  using A = acc_t<T>;
  T* o = static_cast<T*>(out.data_ptr());
  const T* px = static_cast<const T*>(x.data_ptr());
  const int64_t n = x.numel();
  if (out.is_contiguous() && x.is_contiguous()) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) o[i] = store<T>(f(static_cast<A>(px[i])));
    return;
  }
  std::array<const Shape*, 2> st = {&out.strides(), &x.strides()};
  for_each_row<2>(
      x.shape(), st,
      [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& in) {
        for (int64_t i = 0; i < len; ++i)
          o[off[0] + i * in[0]] = store<T>(f(static_cast<A>(px[off[1] + i * in[1]])));
      });
}

template <class F>
void unary_into(Tensor& out, const Tensor& x, const char* op, F f, [[maybe_unused]] GpuOp g) {
  if (on_cuda({out, x}, op)) {
#ifdef MCORE_WITH_CUDA
    cuda::unary(out, x, static_cast<cuda::UnaryOp>(g.kind), g.alpha);
#endif
    return;
  }
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] { unary_kernel<scalar_t>(out, x, f); });
}

template <class F>
Tensor unary(const Tensor& x, const char* op, F f, GpuOp g) {
  Tensor out = empty(x.shape(), {x.dtype(), x.device()});
  unary_into(out, x, op, f, g);
  return out;
}

constexpr int kAdd = 0, kSub = 1, kMul = 2, kDiv = 3;  // cuda::BinaryOp
constexpr int kScale = 0, kAddScalar = 1;              // cuda::UnaryOp

}  // namespace

Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  if (alpha == 1.0) return binary(a, b, "add", [](auto x, auto y) { return x + y; }, {kAdd});
  return binary(a, b, "add",
                [alpha](auto x, auto y) {
                  using A = decltype(x);
                  return x + static_cast<A>(alpha) * y;
                },
                {kAdd, alpha});
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(a, b, "sub", [](auto x, auto y) { return x - y; }, {kSub});
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(a, b, "mul", [](auto x, auto y) { return x * y; }, {kMul});
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary(a, b, "div", [](auto x, auto y) { return x / y; }, {kDiv});
}
Tensor scale(const Tensor& x, double alpha) {
  return unary(x, "scale", [alpha](auto v) { return static_cast<decltype(v)>(alpha) * v; },
               {kScale, alpha});
}
Tensor add_scalar(const Tensor& x, double value) {
  return unary(x, "add_scalar", [value](auto v) { return v + static_cast<decltype(v)>(value); },
               {kAddScalar, value});
}
Tensor neg(const Tensor& x) {
  return unary(x, "neg", [](auto v) { return -v; }, {kScale, -1.0});
}

Tensor& add_(Tensor& a, const Tensor& b, double alpha) {
  check_same_dtype(a, b, "add_");
  MCORE_CHECK(broadcast_shapes(a.shape(), b.shape()) == a.shape())
      << "add_: cannot add " << shape_str(b.shape()) << " into " << shape_str(a.shape())
      << " in place";
  binary_into(a, a, b, "add_",
              [alpha](auto x, auto y) { return x + static_cast<decltype(x)>(alpha) * y; },
              {kAdd, alpha});
  return a;
}
Tensor& mul_(Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "mul_");
  MCORE_CHECK(broadcast_shapes(a.shape(), b.shape()) == a.shape())
      << "mul_: cannot multiply " << shape_str(a.shape()) << " by " << shape_str(b.shape())
      << " in place";
  binary_into(a, a, b, "mul_", [](auto x, auto y) { return x * y; }, {kMul});
  return a;
}
Tensor& scale_(Tensor& a, double alpha) {
  unary_into(a, a, "scale_", [alpha](auto v) { return static_cast<decltype(v)>(alpha) * v; },
             {kScale, alpha});
  return a;
}
Tensor& axpy_(Tensor& y, double alpha, const Tensor& x) {
  MCORE_CHECK(y.shape() == x.shape())
      << "axpy_: shape mismatch, y " << shape_str(y.shape()) << " vs x " << shape_str(x.shape());
  return add_(y, x, alpha);
}

namespace {

// o[c] = sum over r of p[r * n + c], each column summed in row order.
template <class T>
void column_sums(const T* p, int64_t rows, int64_t n, T* o) {
  using A = acc_t<T>;
  constexpr int64_t kCols = 256;  // a chunk's sums stay in L1 while the rows stream
  // About two chunks per thread, whole vectors, so n = 768 splits evenly over 2 threads.
  const int64_t per = (n + 2 * omp_get_max_threads() - 1) / (2 * omp_get_max_threads());
  const int64_t chunk = std::clamp<int64_t>((per + 15) / 16 * 16, 16, kCols);
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t c1 = std::min(n, c0 + chunk);
    A acc[kCols] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * n;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += static_cast<A>(row[c]);
    }
    for (int64_t c = c0; c < c1; ++c) o[c] = store<T>(acc[c - c0]);
  }
}

}  // namespace

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  MCORE_CHECK(broadcast_shapes(shape, t.shape()) == t.shape())
      << "sum_to: shape " << shape_str(shape) << " does not broadcast to " << shape_str(t.shape());
#ifdef MCORE_WITH_CUDA
  if (t.device().is_cuda()) {
    // Sum over the leading dims broadcasting added and the dims it expanded from 1.
    const size_t lead = t.shape().size() - shape.size();
    std::vector<int64_t> dims;
    for (size_t d = 0; d < t.shape().size(); ++d)
      if (d < lead || (shape[d - lead] == 1 && t.shape()[d] != 1))
        dims.push_back(static_cast<int64_t>(d));
    NoGradGuard no_grad;
    return sum(t, dims, /*keepdim=*/true).reshape(shape);
  }
#endif
  check_cpu({t}, "sum_to");
  // A bias gradient: a contiguous [rows, n] summed to its last dimension. Columns are split
  // across the threads, each summing its columns over the rows in row order (the generic loop's
  // order, so the result is the same), instead of one thread walking all of it.
  const int64_t n = t.dim() >= 1 ? t.size(-1) : 0;
  if (shape.size() == 1 && shape[0] == n && n > 0 && t.is_contiguous() && t.numel() > 32768) {
    Tensor out = empty(shape, {t.dtype(), t.device()});
    const int64_t rows = t.numel() / n;
    MCORE_DISPATCH_FLOAT_TYPES(t.dtype(), "sum_to", [&] {
      column_sums(static_cast<const scalar_t*>(t.data_ptr()), rows, n, out.data<scalar_t>());
    });
    return out;
  }
  Tensor out = zeros(shape, {t.dtype(), t.device()});
  // Accumulate in the accumulator type, then store once.
  MCORE_DISPATCH_FLOAT_TYPES(t.dtype(), "sum_to", [&] {
    using A = acc_t<scalar_t>;
    Tensor acc = zeros(shape, dtype_of<A>);
    A* o = acc.data<A>();
    const scalar_t* p = static_cast<const scalar_t*>(t.data_ptr());
    Shape so = broadcast_strides(acc, t.shape());
    std::array<const Shape*, 2> st = {&so, &t.strides()};
    for_each_row<2>(
        t.shape(), st,
        [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& in) {
          for (int64_t i = 0; i < len; ++i)
            o[off[0] + i * in[0]] += static_cast<A>(p[off[1] + i * in[1]]);
        });
    out.copy_(acc);
  });
  return out;
}

}  // namespace mcore::ops
