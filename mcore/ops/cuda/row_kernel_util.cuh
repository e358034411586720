// Shared pieces of the row-wise CUDA kernels (norms, softmax, RoPE, activations, embedding,
// cross-entropy, dropout): 16-byte packed loads/stores that widen to float, warp-shuffle and
// block reductions for "one warp or one block per row" kernels, the launch plan that picks
// between the two, a dtype dispatch onto CUDA element types, and host-side argument checks.
//
// Row kernels use 2-D blocks: blockDim.x threads share one row, blockDim.y rows per block.
// blockDim.x is 32 (a warp per row, for short rows; reductions are shuffles only) or a multiple
// of 32 with blockDim.y == 1 (a block per row; reductions go through shared memory).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "mcore/ops/cuda/scalar_cast.cuh"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

// ---- packed loads -------------------------------------------------------------------------

// N elements of T moved as one aligned load/store (16 bytes when N = 16 / sizeof(T)).
template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <class T>
constexpr int kVecWidth = 16 / static_cast<int>(sizeof(T));

// Loads p[0..N) widened to float. p must be N * sizeof(T)-aligned.
template <class T, int N>
__device__ __forceinline__ void load_pack(const T* p, float (&f)[N]) {
  const Pack<T, N> pk = *reinterpret_cast<const Pack<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) f[i] = to_float(pk.v[i]);
}

// Stores f[0..N) to p rounded once to T.
template <class T, int N>
__device__ __forceinline__ void store_pack(T* p, const float (&f)[N]) {
  Pack<T, N> pk;
#pragma unroll
  for (int i = 0; i < N; ++i) pk.v[i] = from_float<T>(f[i]);
  *reinterpret_cast<Pack<T, N>*>(p) = pk;
}

// True when every row start (base + r * row_elems) of a contiguous [rows, row_elems] tensor is
// 16-byte aligned and rows split into whole 16-byte packs: the condition for the packed path.
inline bool rows_vectorizable(const void* base, int64_t row_elems, size_t elem_size) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 &&
         (static_cast<uint64_t>(row_elems) * elem_size) % 16 == 0;
}

// ---- reductions ---------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (kMax: max) over the blockDim.x threads of this row; every thread gets the result. With
// blockDim.x == 32 it is shuffles only; otherwise blockDim.y must be 1 and all threads of the
// block must call it (it synchronizes). `scratch` is 33 floats of shared memory.
template <bool kMax>
__device__ __forceinline__ float row_reduce(float v, float* scratch) {
  v = kMax ? warp_max(v) : warp_sum(v);
  if (blockDim.x == 32) return v;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < nwarps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
    w = kMax ? warp_max(w) : warp_sum(w);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

__device__ __forceinline__ float row_sum(float v, float* scratch) {
  return row_reduce<false>(v, scratch);
}
__device__ __forceinline__ float row_max(float v, float* scratch) {
  return row_reduce<true>(v, scratch);
}

// ---- launch plans -------------------------------------------------------------------------

struct RowPlan {
  dim3 grid, block;
};

// One warp per row (4 rows per block) when a row is at most 4 items per lane, else one block
// per row with about 4 items per thread (up to 1024 threads). `items` counts the units a thread
// handles per step (packs when vectorized, else elements). Grid-stride loops cover rows beyond
// the grid.
inline RowPlan plan_rows(int64_t rows, int64_t items) {
  RowPlan p;
  if (items <= 128) {
    p.block = dim3(32, 4);
  } else {
    const int64_t t = std::min<int64_t>(1024, ((items + 3) / 4 + 31) / 32 * 32);
    p.block = dim3(static_cast<unsigned>(t), 1);
  }
  const int64_t blocks = std::max<int64_t>(1, (rows + p.block.y - 1) / p.block.y);
  p.grid = dim3(static_cast<unsigned>(std::min<int64_t>(blocks, 1 << 30)));
  return p;
}

// Grid for a flat elementwise kernel of `n` items with `threads` per block (grid-stride).
inline unsigned flat_blocks(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, 1 << 30));
}

// ---- host checks --------------------------------------------------------------------------

// Every defined tensor lives on `device` (a CUDA device); names the op and both devices.
inline void check_same_cuda_device(std::initializer_list<Tensor> tensors, Device device,
                                   const char* op) {
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    MCORE_CHECK(t.device() == device)
        << op << ": tensor " << shape_str(t.shape()) << " on " << t.device()
        << " but the input is on " << device << " (move all arguments to one device)";
  }
}

inline void check_cuda_float(DType dt, const char* op) {
  MCORE_CHECK(dt == DType::F32 || dt == DType::BF16 || dt == DType::F16)
      << op << ": dtype " << dt
      << " has no CUDA kernel (float32, bfloat16, float16); convert, or run on the CPU";
}

}  // namespace mcore::ops::cuda

// float32, bfloat16, float16 with scalar_t bound to the CUDA element type.
#define MCORE_DISPATCH_CUDA_FLOAT(dtype, name, ...)    \
  [&] {                                                \
    switch (dtype) {                                   \
      case ::mcore::DType::F32: {                      \
        using scalar_t = float;                        \
        return __VA_ARGS__();                          \
      }                                                \
      case ::mcore::DType::BF16: {                     \
        using scalar_t = __nv_bfloat16;                \
        return __VA_ARGS__();                          \
      }                                                \
      case ::mcore::DType::F16: {                      \
        using scalar_t = __half;                       \
        return __VA_ARGS__();                          \
      }                                                \
      default:                                         \
        break;                                         \
    }                                                  \
    ::mcore::ops::cuda::check_cuda_float(dtype, name); \
    throw 0; /* unreachable */                         \
  }()
