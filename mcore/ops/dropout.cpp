#include "mcore/ops/dropout.h"

#include <algorithm>

#include "mcore/base/philox.h"
#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/dropout_cuda.h"
#endif

namespace mcore::ops {

namespace {

// Philox costs ~10 multiply rounds per 4 elements: parallel even for moderate sizes.
constexpr int64_t kParallelMin = 4096;

// Calls body(i, keep) for the elements [0, n) of one contiguous run whose first element has
// the global index `first`, one Philox block per 4 global indices; a block straddling the run's
// ends contributes only its lanes inside the run.
template <class Body>
void for_each_keep_run(int64_t n, double p, uint64_t seed, uint64_t stream, uint64_t first,
                       Body&& body) {
  const uint64_t b0 = first / 4, b1 = (first + static_cast<uint64_t>(n) - 1) / 4;
  for (uint64_t b = b0; b <= b1; ++b) {
    const Philox::Block bits = Philox::block(seed, stream, b);
    for (int l = 0; l < 4; ++l) {
      const uint64_t idx = b * 4 + static_cast<uint64_t>(l);
      if (idx < first || idx - first >= static_cast<uint64_t>(n)) continue;
      body(static_cast<int64_t>(idx - first), static_cast<double>(Philox::to_uniform(bits[l])) > p);
    }
  }
}

// Calls body(local_index, keep) for every element of [0, n) placed by `map`.
template <class Body>
void for_each_keep(int64_t n, double p, uint64_t seed, uint64_t stream, const DropoutIndexMap& map,
                   Body&& body) {
  if (n <= 0) return;
  if (map.is_contiguous()) {
    // One run, split into blocks of 4 global indices over the threads.
    const uint64_t first = map.offset;
    const uint64_t b0 = first / 4, b1 = (first + static_cast<uint64_t>(n) - 1) / 4;
    const int64_t nblocks = static_cast<int64_t>(b1 - b0) + 1;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t bi = 0; bi < nblocks; ++bi) {
      const uint64_t b = b0 + static_cast<uint64_t>(bi);
      const uint64_t lo = std::max(b * 4, first), hi = std::min(b * 4 + 4, first + n);
      for_each_keep_run(
          static_cast<int64_t>(hi - lo), p, seed, stream, lo,
          [&](int64_t i, bool keep) { body(static_cast<int64_t>(lo - first) + i, keep); });
    }
    return;
  }
  MCORE_CHECK(map.rows > 0 && map.cols > 0 && n % (map.rows * map.cols) == 0)
      << "dropout: an index map of rows " << map.rows << " x cols " << map.cols
      << " does not tile a tensor of " << n << " elements";
  const int64_t nrows = n / map.cols;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t k = 0; k < nrows; ++k) {
    const uint64_t slab = static_cast<uint64_t>(k / map.rows),
                   r = static_cast<uint64_t>(k % map.rows);
    const int64_t base = k * map.cols;
    for_each_keep_run(map.cols, p, seed, stream,
                      map.offset + slab * map.slab_stride + r * map.row_stride,
                      [&](int64_t i, bool keep) { body(base + i, keep); });
  }
}

template <class T>
void dropout_kernel(const T* x, T* y, int64_t n, double p, uint64_t seed, uint64_t stream,
                    const DropoutIndexMap& map) {
  using A = acc_t<T>;
  // p == 1 drops everything; the (infinite) scale is then never applied.
  const A scale = p < 1.0 ? static_cast<A>(1.0 / (1.0 - p)) : A(0);
  for_each_keep(n, p, seed, stream, map, [&](int64_t i, bool keep) {
    y[i] = store<T>(keep ? static_cast<A>(x[i]) * scale : A(0));
  });
}

void check_p(double p, const char* op) {
  MCORE_CHECK(p >= 0.0 && p <= 1.0) << op << ": dropout probability must be in [0, 1], got " << p;
}

Tensor apply_dropout(const Tensor& x_in, double p, uint64_t seed, uint64_t stream,
                     const DropoutIndexMap& map, const char* op) {
  [[maybe_unused]] const bool on_gpu = on_cuda({x_in}, op);
  check_p(p, op);
#ifdef MCORE_WITH_CUDA
  if (on_gpu) {
    MCORE_CHECK(map.is_contiguous())
        << op << ": a dropout index map (attention dropout under context parallelism) runs on "
        << "the CPU only; on a GPU set --attention-dropout 0";
    return cuda::dropout_forward(x_in, p, seed, stream, map.offset);
  }
#endif
  Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] {
    dropout_kernel<scalar_t>(static_cast<const scalar_t*>(x.data_ptr()),
                             static_cast<scalar_t*>(y.data_ptr()), x.numel(), p, seed, stream, map);
  });
  return y;
}

}  // namespace

Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       uint64_t global_offset) {
  return apply_dropout(x, p, seed, stream, DropoutIndexMap::contiguous(global_offset), "dropout");
}

Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       const DropoutIndexMap& map) {
  return apply_dropout(x, p, seed, stream, map, "dropout");
}

// The backward is the same masked scaling applied to dy: the mask depends only on the key.
Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        uint64_t global_offset) {
  return apply_dropout(dy, p, seed, stream, DropoutIndexMap::contiguous(global_offset),
                       "dropout_backward");
}

Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        const DropoutIndexMap& map) {
  return apply_dropout(dy, p, seed, stream, map, "dropout_backward");
}

Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    uint64_t global_offset) {
  return dropout_mask(shape, p, seed, stream, DropoutIndexMap::contiguous(global_offset));
}

Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    const DropoutIndexMap& map) {
  check_p(p, "dropout_mask");
  Tensor mask = empty(shape, DType::U8);
  uint8_t* m = mask.data<uint8_t>();
  for_each_keep(mask.numel(), p, seed, stream, map,
                [m](int64_t i, bool keep) { m[i] = keep ? 1 : 0; });
  return mask;
}

}  // namespace mcore::ops
