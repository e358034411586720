#include "mcore/ops/reduction.h"

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_check.h"
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
template <class T>
void sum_all_kernel(const T* p, int64_t n, T* out) {
  using A = acc_t<T>;
  const int64_t block = 1 << 16;
  const int64_t nblocks = (n + block - 1) / block;
  std::vector<A> partial(static_cast<size_t>(nblocks));
#pragma omp parallel for schedule(static) if (nblocks > 1)
  for (int64_t b = 0; b < nblocks; ++b)
    partial[b] = pairwise_sum<T, A>(p + b * block, std::min(block, n - b * block));
  A total = 0;
  for (A v : partial) total += v;
  *out = store<T>(total);
}

}  // namespace

Tensor sum_all(const Tensor& x) {
  check_cpu({x}, "sum");
  Tensor c = x.contiguous();
  Tensor out = empty({}, {x.dtype(), x.device()});
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), "sum", [&] {
    sum_all_kernel<scalar_t>(static_cast<const scalar_t*>(c.data_ptr()), c.numel(),
                             static_cast<scalar_t*>(out.data_ptr()));
  });
  return out;
}

}  // namespace mcore::ops
