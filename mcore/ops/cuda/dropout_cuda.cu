#include "mcore/ops/cuda/dropout_cuda.h"

#include <cmath>

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

// mcore::Philox::block (mcore/base/philox.h) as device code; the constants and the round
// function must stay identical to it.
struct Philox4 {
  uint32_t v[4];
};

__host__ __device__ __forceinline__ Philox4 philox_block(uint64_t seed, uint64_t stream,
                                                         uint64_t block_index) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(block_index), c1 = static_cast<uint32_t>(block_index >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#ifdef __CUDA_ARCH__  // the host compiler also sees this function and has no such pragma
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// The CPU keeps an element iff to_uniform(bits) = ((bits >> 8) + 1) * 2^-24 > p (compared in
// double). Both sides are exact, so this is ((bits >> 8) + 1) > floor(p * 2^24) in integers.
uint32_t keep_threshold(double p) {
  return static_cast<uint32_t>(std::floor(p * 16777216.0));
}

__host__ __device__ __forceinline__ bool keep(uint32_t bits, uint32_t threshold) {
  return (bits >> 8) + 1u > threshold;
}

// One thread per Philox block b in [first / 4, (first + n - 1) / 4]; lanes outside the slice
// [first, first + n) are skipped. kAligned: first % 4 == 0 and x/y 4-element aligned, so a
// block's 4 elements move as one pack.
template <class T, bool kAligned>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                               uint64_t first, uint64_t seed, uint64_t stream, uint32_t threshold,
                               float scale) {
  const uint64_t b0 = first / 4;
  const int64_t nblocks = static_cast<int64_t>((first + static_cast<uint64_t>(n) - 1) / 4 - b0) + 1;
  for (int64_t bi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; bi < nblocks;
       bi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t b = b0 + static_cast<uint64_t>(bi);
    const Philox4 bits = philox_block(seed, stream, b);
    if (kAligned && static_cast<int64_t>(b * 4 - first) + 4 <= n) {
      const int64_t i = static_cast<int64_t>(b * 4 - first);
      float f[4], o[4];
      load_pack<T, 4>(x + i, f);
#pragma unroll
      for (int l = 0; l < 4; ++l) o[l] = keep(bits.v[l], threshold) ? f[l] * scale : 0.0f;
      store_pack<T, 4>(y + i, o);
      continue;
    }
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint64_t idx = b * 4 + static_cast<uint64_t>(l);
      if (idx < first || idx - first >= static_cast<uint64_t>(n)) continue;
      const int64_t i = static_cast<int64_t>(idx - first);
      y[i] = from_float<T>(keep(bits.v[l], threshold) ? to_float(x[i]) * scale : 0.0f);
    }
  }
}

__global__ void dropout_mask_kernel(uint8_t* __restrict__ m, int64_t n, uint64_t first,
                                    uint64_t seed, uint64_t stream, uint32_t threshold) {
  const uint64_t b0 = first / 4;
  const int64_t nblocks = static_cast<int64_t>((first + static_cast<uint64_t>(n) - 1) / 4 - b0) + 1;
  for (int64_t bi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; bi < nblocks;
       bi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t b = b0 + static_cast<uint64_t>(bi);
    const Philox4 bits = philox_block(seed, stream, b);
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint64_t idx = b * 4 + static_cast<uint64_t>(l);
      if (idx < first || idx - first >= static_cast<uint64_t>(n)) continue;
      m[idx - first] = keep(bits.v[l], threshold) ? 1 : 0;
    }
  }
}

constexpr int kThreads = 256;

int64_t philox_blocks(int64_t n, uint64_t first) {
  return n <= 0 ? 0
                : static_cast<int64_t>((first + static_cast<uint64_t>(n) - 1) / 4 - first / 4) + 1;
}

Tensor apply(const Tensor& x_in, double p, uint64_t seed, uint64_t stream, uint64_t first,
             const char* op) {
  check_cuda_float(x_in.dtype(), op);
  const Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const int64_t n = x.numel();
  if (n == 0) return y;
  // p == 1 drops everything; the (infinite) scale is then never applied. The scale is the
  // CPU's: 1 / (1 - p) in double, rounded to float.
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const uint32_t thr = keep_threshold(p);
  cudaStream_t cs = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(x.dtype(), op, [&] {
    using T = scalar_t;
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* yp = static_cast<T*>(y.data_ptr());
    const uintptr_t align = 4 * sizeof(T);
    const bool aligned = first % 4 == 0 && reinterpret_cast<uintptr_t>(xp) % align == 0 &&
                         reinterpret_cast<uintptr_t>(yp) % align == 0;
    const unsigned blocks = flat_blocks(philox_blocks(n, first), kThreads);
    if (aligned) {
      dropout_kernel<T, true>
          <<<blocks, kThreads, 0, cs>>>(xp, yp, n, first, seed, stream, thr, scale);
    } else {
      dropout_kernel<T, false>
          <<<blocks, kThreads, 0, cs>>>(xp, yp, n, first, seed, stream, thr, scale);
    }
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
  return y;
}

}  // namespace

Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t stream,
                       uint64_t global_offset) {
  return apply(x, p, seed, stream, global_offset, "dropout");
}

Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t stream,
                        uint64_t global_offset) {
  return apply(dy, p, seed, stream, global_offset, "dropout_backward");
}

Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                    uint64_t global_offset, Device device) {
  MCORE_CHECK(device.is_cuda()) << "cuda::dropout_mask: device " << device << " is not a GPU";
  MCORE_CHECK(p >= 0.0 && p <= 1.0)
      << "dropout_mask: dropout probability must be in [0, 1], got " << p;
  Tensor mask = empty(shape, {DType::U8, device});
  const int64_t n = mask.numel();
  if (n == 0) return mask;
  cudaStream_t cs = mcore::cuda::current_stream();
  dropout_mask_kernel<<<flat_blocks(philox_blocks(n, global_offset), kThreads), kThreads, 0, cs>>>(
      static_cast<uint8_t*>(mask.data_ptr()), n, global_offset, seed, stream, keep_threshold(p));
  MCORE_CUDA_CHECK_LAUNCH("dropout_mask");
  return mask;
}

}  // namespace mcore::ops::cuda
