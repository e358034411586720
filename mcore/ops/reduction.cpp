#include "mcore/ops/reduction.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_check.h"
#include "mcore/ops/device_route.h"
#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/reduction_cuda.h"
#endif
#include "mcore/ops/elementwise.h"
#include "mcore/tensor/factory.h"

namespace mcore::ops {

namespace {

// Pairwise summation over contiguous data: error grows with log(n), not n.
template <class T, class A>
A pairwise_sum(const T* p, int64_t n) {
  if (n <= 256) {
    A s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<A>(p[i]);
    return s;
  }
  int64_t h = n / 2;
  return pairwise_sum<T, A>(p, h) + pairwise_sum<T, A>(p + h, n - h);
}

// One long contiguous sum split over threads in fixed blocks (deterministic for any team size).
template <class T>
acc_t<T> parallel_sum(const T* p, int64_t n) {
  using A = acc_t<T>;
  const int64_t block = 1 << 16;
  const int64_t nblocks = (n + block - 1) / block;
  std::vector<A> partial(static_cast<size_t>(nblocks));
#pragma omp parallel for schedule(static) if (nblocks > 1)
  for (int64_t b = 0; b < nblocks; ++b)
    partial[b] = pairwise_sum<T, A>(p + b * block, std::min(block, n - b * block));
  A total = 0;
  for (A v : partial) total += v;
  return total;
}

template <class T>
void sum_all_kernel(const T* p, int64_t n, T* out) {
  *out = store<T>(parallel_sum<T>(p, n));
}

// Which dimensions a reduction removes; empty `dims` means all of them.
std::vector<bool> reduced_mask(const Shape& shape, const std::vector<int64_t>& dims,
                               const char* op) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  std::vector<bool> red(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    int64_t k = d < 0 ? d + nd : d;
    MCORE_CHECK(k >= 0 && k < nd) << op << ": dim " << d
                                  << " is out of range for a tensor of shape " << shape_str(shape);
    MCORE_CHECK(!red[k]) << op << ": dim " << d << " is listed twice for shape "
                         << shape_str(shape);
    red[k] = true;
  }
  return red;
}

Shape reduced_shape(const Shape& shape, const std::vector<bool>& red, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!red[d])
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// x seen as a contiguous [outer, reduce, inner] array. When the reduced dimensions (ignoring
// size-1 ones) are one run, that is a view of x.contiguous(); otherwise the reduced dimensions
// are permuted to the end and copied once.
struct Plan {
  Tensor src;
  int64_t outer = 1, reduce = 1, inner = 1;
};
Plan plan_reduction(const Tensor& x, const std::vector<bool>& red) {
  const Shape& s = x.shape();
  Plan p;
  int state = 0;  // 0: before the reduced run, 1: inside it, 2: after it
  bool one_run = true;
  for (size_t d = 0; d < s.size(); ++d) {
    if (s[d] == 1) continue;
    if (red[d]) {
      if (state == 2) one_run = false;
      state = 1;
    } else if (state == 1) {
      state = 2;
    }
  }
  if (one_run) {
    p.src = x.contiguous();
    bool seen = false;
    for (size_t d = 0; d < s.size(); ++d) {
      if (red[d]) {
        p.reduce *= s[d];
        seen |= s[d] != 1;
      } else {
        (seen ? p.inner : p.outer) *= s[d];
      }
    }
    return p;
  }
  std::vector<int64_t> perm;
  for (size_t d = 0; d < s.size(); ++d)
    if (!red[d]) perm.push_back(static_cast<int64_t>(d)), p.outer *= s[d];
  for (size_t d = 0; d < s.size(); ++d)
    if (red[d]) perm.push_back(static_cast<int64_t>(d)), p.reduce *= s[d];
  p.src = x.permute(perm).contiguous();
  return p;
}

constexpr int64_t kCols = 256;  // columns per task when reducing over a strided dimension
constexpr int64_t kRows = 64;   // rows summed into a partial before joining the total

// out[o, i] = scale * sum_r x[o, r, i].
template <class T>
void sum_dims_kernel(const T* x, T* out, int64_t outer, int64_t reduce, int64_t inner,
                     double scale) {
  using A = acc_t<T>;
  const A sc = static_cast<A>(scale);
  if (inner == 1) {
    if (outer < omp_get_max_threads() && reduce >= (int64_t{1} << 17)) {
      for (int64_t o = 0; o < outer; ++o)
        out[o] = store<T>(parallel_sum<T>(x + o * reduce, reduce) * sc);
      return;
    }
#pragma omp parallel for schedule(static) if (outer * reduce > 32768)
    for (int64_t o = 0; o < outer; ++o)
      out[o] = store<T>(pairwise_sum<T, A>(x + o * reduce, reduce) * sc);
    return;
  }
  // Strided reduction: each task owns kCols output columns of one outer index and walks the
  // reduced rows in order, so every load is a contiguous run of kCols elements. Two-level
  // accumulation (blocks of kRows rows) keeps float error at O(kRows + reduce / kRows) ulps.
  const int64_t col_blocks = (inner + kCols - 1) / kCols;
  const int64_t tasks = outer * col_blocks;
#pragma omp parallel for schedule(static) if (outer * reduce * inner > 32768)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / col_blocks, c0 = (t % col_blocks) * kCols;
    const int64_t nc = std::min(kCols, inner - c0);
    A total[kCols], part[kCols];
    std::fill(total, total + nc, A(0));
    const T* base = x + o * reduce * inner + c0;
    for (int64_t r0 = 0; r0 < reduce; r0 += kRows) {
      std::fill(part, part + nc, A(0));
      const int64_t r1 = std::min(reduce, r0 + kRows);
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = base + r * inner;
        for (int64_t i = 0; i < nc; ++i) part[i] += static_cast<A>(row[i]);
      }
      for (int64_t i = 0; i < nc; ++i) total[i] += part[i];
    }
    T* dst = out + o * inner + c0;
    for (int64_t i = 0; i < nc; ++i) dst[i] = store<T>(total[i] * sc);
  }
}

Tensor reduce_sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool mean,
                  const char* op) {
  const bool gpu = on_cuda({x}, op);
  std::vector<bool> red = reduced_mask(x.shape(), dims, op);
  Tensor out = empty(reduced_shape(x.shape(), red, keepdim), {x.dtype(), x.device()});
  Plan p = plan_reduction(x, red);
  const double scale = mean ? 1.0 / static_cast<double>(p.reduce) : 1.0;
  if (out.numel() == 0) return out;
  if (gpu) {
#ifdef MCORE_WITH_CUDA
    cuda::sum_dims(p.src, out, p.outer, p.reduce, p.inner, scale);
#endif
    return out;
  }
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] {
    sum_dims_kernel<scalar_t>(static_cast<const scalar_t*>(p.src.data_ptr()),
                              static_cast<scalar_t*>(out.data_ptr()), p.outer, p.reduce, p.inner,
                              scale);
  });
  return out;
}

// NaN wins over any number; among equals the first position is kept.
template <class A>
inline bool beats(A v, A best) {
  return v > best || (v != v && best == best);
}

template <class T>
void max_kernel(const T* x, T* vals, int64_t* idx, int64_t outer, int64_t reduce, int64_t inner) {
  using A = acc_t<T>;
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * reduce > 32768)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * reduce;
      A best = static_cast<A>(row[0]);
      int64_t bi = 0;
      for (int64_t r = 1; r < reduce; ++r) {
        A v = static_cast<A>(row[r]);
        if (beats(v, best)) best = v, bi = r;
      }
      vals[o] = row[bi];
      idx[o] = bi;
    }
    return;
  }
  const int64_t col_blocks = (inner + kCols - 1) / kCols;
  const int64_t tasks = outer * col_blocks;
#pragma omp parallel for schedule(static) if (outer * reduce * inner > 32768)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / col_blocks, c0 = (t % col_blocks) * kCols;
    const int64_t nc = std::min(kCols, inner - c0);
    A best[kCols];
    int64_t bi[kCols];
    const T* base = x + o * reduce * inner + c0;
    for (int64_t i = 0; i < nc; ++i) best[i] = static_cast<A>(base[i]), bi[i] = 0;
    for (int64_t r = 1; r < reduce; ++r) {
      const T* row = base + r * inner;
      for (int64_t i = 0; i < nc; ++i) {
        A v = static_cast<A>(row[i]);
        if (beats(v, best[i])) best[i] = v, bi[i] = r;
      }
    }
    for (int64_t i = 0; i < nc; ++i) {
      vals[o * inner + c0 + i] = base[bi[i] * inner + i];
      idx[o * inner + c0 + i] = bi[i];
    }
  }
}

template <class T>
void max_backward_kernel(const T* g, const int64_t* idx, T* gx, int64_t outer, int64_t reduce,
                         int64_t inner) {
#pragma omp parallel for schedule(static) if (outer * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t r = idx[o * inner + i];
      gx[(o * reduce + r) * inner + i] = g[o * inner + i];
    }
}

template <class T>
double sum_squares(const T* p, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    double v = static_cast<double>(static_cast<float>(p[i]));
    s += v * v;
  }
  return s;
}
template <>
double sum_squares<double>(const double* p, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += p[i] * p[i];
  return s;
}

}  // namespace

Tensor sum_all(const Tensor& x) {
  const bool gpu = on_cuda({x}, "sum");
  Tensor c = x.contiguous();
  Tensor out = empty({}, {x.dtype(), x.device()});
  if (gpu) {
#ifdef MCORE_WITH_CUDA
    cuda::sum_dims(c, out, 1, c.numel(), 1, 1.0);
#endif
    return out;
  }
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), "sum", [&] {
    sum_all_kernel<scalar_t>(static_cast<const scalar_t*>(c.data_ptr()), c.numel(),
                             static_cast<scalar_t*>(out.data_ptr()));
  });
  return out;
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_sum(x, dims, keepdim, false, "sum");
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_sum(x, dims, keepdim, true, "mean");
}

Tensor sum_backward(const Tensor& grad, const Shape& input_shape, const std::vector<int64_t>& dims,
                    bool keepdim) {
  std::vector<bool> red = reduced_mask(input_shape, dims, "sum_backward");
  Shape expected = reduced_shape(input_shape, red, keepdim);
  MCORE_CHECK(grad.shape() == expected)
      << "sum_backward: gradient of shape " << shape_str(grad.shape()) << " does not match the "
      << "reduced shape " << shape_str(expected) << " of input " << shape_str(input_shape);
  Tensor g = grad.reshape(reduced_shape(input_shape, red, true));
  Tensor out = empty(input_shape, {grad.dtype(), grad.device()});
  out.copy_(g.expand(input_shape));
  return out;
}

Tensor mean_backward(const Tensor& grad, const Shape& input_shape, const std::vector<int64_t>& dims,
                     bool keepdim) {
  Tensor out = sum_backward(grad, input_shape, dims, keepdim);
  std::vector<bool> red = reduced_mask(input_shape, dims, "mean_backward");
  int64_t count = 1;
  for (size_t d = 0; d < input_shape.size(); ++d)
    if (red[d]) count *= input_shape[d];
  if (count != 1) scale_(out, 1.0 / static_cast<double>(count));
  return out;
}

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  const bool gpu = on_cuda({x}, "max");
  const int64_t nd = x.dim();
  MCORE_CHECK(nd > 0) << "max: a 0-d tensor has no dimension " << dim << " to reduce";
  std::vector<bool> red = reduced_mask(x.shape(), {dim}, "max");
  const int64_t d = dim < 0 ? dim + nd : dim;
  MCORE_CHECK(x.size(d) > 0) << "max: dimension " << dim << " of shape " << shape_str(x.shape())
                             << " is empty; the maximum of no elements is undefined";
  Shape out_shape = reduced_shape(x.shape(), red, keepdim);
  MaxResult r{empty(out_shape, {x.dtype(), x.device()}),
              empty(out_shape, {DType::I64, x.device()})};
  if (r.values.numel() == 0) return r;
  Plan p = plan_reduction(x, red);
  if (gpu) {
#ifdef MCORE_WITH_CUDA
    cuda::max_dims(p.src, r.values, r.indices, p.outer, p.reduce, p.inner);
#endif
    return r;
  }
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), "max", [&] {
    max_kernel<scalar_t>(static_cast<const scalar_t*>(p.src.data_ptr()),
                         static_cast<scalar_t*>(r.values.data_ptr()), r.indices.data<int64_t>(),
                         p.outer, p.reduce, p.inner);
  });
  return r;
}

Tensor max_backward(const Tensor& grad, const Tensor& indices, const Shape& input_shape,
                    int64_t dim, bool keepdim) {
  const bool gpu = on_cuda({grad, indices}, "max_backward");
  std::vector<bool> red = reduced_mask(input_shape, {dim}, "max_backward");
  Shape expected = reduced_shape(input_shape, red, keepdim);
  MCORE_CHECK(grad.shape() == expected && indices.shape() == expected)
      << "max_backward: gradient " << shape_str(grad.shape()) << " and indices "
      << shape_str(indices.shape()) << " must both have the reduced shape " << shape_str(expected)
      << " of input " << shape_str(input_shape);
  MCORE_CHECK(indices.dtype() == DType::I64)
      << "max_backward: indices must be int64, got " << indices.dtype();
  Tensor gx = zeros(input_shape, {grad.dtype(), grad.device()});
  if (grad.numel() == 0) return gx;
  Plan p = plan_reduction(gx, red);  // gx is contiguous and one dim is reduced: a pure view
  Tensor g = grad.contiguous(), idx = indices.contiguous();
  if (gpu) {
#ifdef MCORE_WITH_CUDA
    cuda::max_backward_scatter(g, idx, gx, p.outer, p.reduce, p.inner);
#endif
    return gx;
  }
  MCORE_DISPATCH_FLOAT_TYPES(grad.dtype(), "max_backward", [&] {
    max_backward_kernel<scalar_t>(static_cast<const scalar_t*>(g.data_ptr()), idx.data<int64_t>(),
                                  static_cast<scalar_t*>(gx.data_ptr()), p.outer, p.reduce,
                                  p.inner);
  });
  return gx;
}

double multi_tensor_l2norm_squared(const std::vector<Tensor>& tensors) {
#ifdef MCORE_WITH_CUDA
  if (!tensors.empty() && tensors[0].defined() && tensors[0].device().is_cuda()) {
    for (size_t k = 0; k < tensors.size(); ++k) {
      MCORE_CHECK(tensors[k].defined() && tensors[k].device() == tensors[0].device())
          << "multi_tensor_l2norm_squared: tensor " << k << " is not on " << tensors[0].device()
          << " like tensor 0 (all tensors must share one device)";
      const DType d = tensors[k].dtype();
      MCORE_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16)
          << "multi_tensor_l2norm_squared: tensor " << k << " of shape "
          << shape_str(tensors[k].shape()) << " has dtype " << d
          << "; expected float32, float64, bfloat16 or float16";
    }
    return cuda::sum_squares(tensors);
  }
#endif
  // Contiguous copies only where needed; chunks of a fixed size over all tensors form one
  // parallel loop, and the per-chunk partials are added in order.
  constexpr int64_t kChunk = 1 << 15;
  struct Chunk {
    const void* p;
    DType dtype;
    int64_t n;
  };
  std::vector<Tensor> keep;
  std::vector<Chunk> chunks;
  keep.reserve(tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    check_cpu({t}, "multi_tensor_l2norm_squared");
    MCORE_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::BF16 ||
                t.dtype() == DType::F16)
        << "multi_tensor_l2norm_squared: tensor " << k << " of shape " << shape_str(t.shape())
        << " has dtype " << t.dtype() << "; expected float32, float64, bfloat16 or float16";
    keep.push_back(t.contiguous());
    const char* base = static_cast<const char*>(keep.back().data_ptr());
    for (int64_t s = 0; s < t.numel(); s += kChunk)
      chunks.push_back({base + s * static_cast<int64_t>(t.element_size()), t.dtype(),
                        std::min(kChunk, t.numel() - s)});
  }
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
  std::vector<double> partial(chunks.size());
#pragma omp parallel for schedule(dynamic, 4) if (nchunks > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const Chunk& ch = chunks[c];
    switch (ch.dtype) {
      case DType::F32:
        partial[c] = sum_squares(static_cast<const float*>(ch.p), ch.n);
        break;
      case DType::F64:
        partial[c] = sum_squares(static_cast<const double*>(ch.p), ch.n);
        break;
      case DType::BF16:
        partial[c] = sum_squares(static_cast<const BFloat16*>(ch.p), ch.n);
        break;
      default:
        partial[c] = sum_squares(static_cast<const Half*>(ch.p), ch.n);
        break;
    }
  }
  double total = 0;
  for (double v : partial) total += v;
  return total;
}

}  // namespace mcore::ops
