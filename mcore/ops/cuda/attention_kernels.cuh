// Pieces shared by the CUDA attention forward (attention_fwd.cu) and backward
// (attention_bwd.cu): the problem description passed to kernels, the 32 x 32 tile geometry and
// the device helpers that load tiles into shared memory and compute one tile of scores.
//
// Tile geometry (SIMT, float32 math): a block of 8 warps covers 32 query rows x 32 keys; warp w
// owns rows 4w..4w+3 and lane l owns key l of the tile, so a row's 32 scores live in one warp and
// its softmax statistics need only warp shuffles. Shared-memory rows of K and V have an odd
// stride so that 32 lanes reading 32 different keys at the same column hit 32 different banks.
#pragma once

#include <math_constants.h>
#include <cstdint>

#include "mcore/ops/attention.h"
#include "mcore/ops/cuda/scalar_cast.cuh"
#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

constexpr int kAttnTile = 32;  // query rows per block and keys per tile (one key per lane)
constexpr int kAttnWarps = 8;
constexpr int kAttnThreads = kAttnWarps * 32;
constexpr int kAttnRowsPerWarp = kAttnTile / kAttnWarps;  // 4
constexpr float kLog2e = 1.4426950408889634f;

// Head dims are bucketed: registers hold kMaxD / 32 output columns per lane, so a kernel built
// for kMaxD serves every d, dv <= kMaxD. 64 and 128 are exact; 256 covers the rest.
constexpr int kAttnMaxHeadDim = 256;

// One strided [S, B, H, width] operand (unit stride in the last dimension).
struct AttnRows {
  const void* p = nullptr;
  int64_t ss = 0, sb = 0, sh = 0;
};

struct AttnParams {
  AttnRows q, k, v;
  int sq = 0, sk = 0, batch = 0, hq = 0, hkv = 0, group = 1, d = 0, dv = 0;
  float scale = 1.f;       // softmax scale
  float scale_log2 = 1.f;  // scale * log2(e): scores are kept in the exp2 domain
  bool causal = false;
  int causal_offset = 0;       // sk - sq (bottom-right aligned diagonal)
  const bool* mask = nullptr;  // (b, h, i, j) at b*mask_sb + h*mask_sh + i*mask_si + j
  int64_t mask_sb = 0, mask_sh = 0, mask_si = 0;
  int ks = 0, vs = 0;  // odd shared-memory row strides (floats) of the K and V tiles

  // Keys [0, key_end(i)) may be visible to query i (host and device).
  __host__ __device__ int key_end(int i) const {
    if (!causal) return sk;
    const int e = i + causal_offset + 1;
    return e < 0 ? 0 : (e > sk ? sk : e);
  }
  __host__ __device__ int query_begin(int j) const {
    if (!causal) return 0;
    const int s = j - causal_offset;
    return s < 0 ? 0 : (s > sq ? sq : s);
  }
};

// Host: validates devices and layouts, fills the params (mask bound through `mask_holder`, which
// keeps a contiguous copy alive). The operands may be replaced by head-contiguous copies.
AttnParams make_attn_params(Tensor& q, Tensor& k, Tensor& v, const AttentionOptions& options,
                            Tensor& mask_holder, const char* op);
// Host: the kernel's head-dimension bucket for d, dv (throws above kAttnMaxHeadDim).
int attn_head_bucket(const AttnParams& p, const char* op);
// Host: a tensor whose last dimension has unit stride (the tensor itself when it has one).
Tensor head_contiguous(const Tensor& t);

__device__ __forceinline__ bool attn_visible(const AttnParams& p, int b, int h, int i, int j) {
  if (i >= p.sq || j >= p.sk) return false;
  if (p.causal && j > i + p.causal_offset) return false;
  if (p.mask && p.mask[b * p.mask_sb + h * p.mask_sh + i * p.mask_si + j]) return false;
  return true;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Loads rows [s0, s0 + 32) of head (b, h) into dst (row stride `ld` floats), widened to float;
// rows past `s_end` are zero so that they contribute nothing (0 * garbage could be NaN). Each
// warp loads whole rows with lanes along the contiguous head dimension (coalesced).
template <class T>
__device__ __forceinline__ void load_tile(float* dst, int ld, const AttnRows& src, int s0,
                                          int s_end, int b, int h, int width) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const T* base = static_cast<const T*>(src.p) + b * src.sb + h * src.sh;
  for (int r = warp; r < kAttnTile; r += kAttnWarps) {
    const int s = s0 + r;
    float* row = dst + r * ld;
    if (s < s_end) {
      const T* x = base + s * src.ss;
      for (int e = lane; e < width; e += 32) row[e] = to_float(x[e]);
    } else {
      for (int e = lane; e < width; e += 32) row[e] = 0.f;
    }
  }
}

// acc[r] = sum_e a[(4w + r) * lda + e] * bt[lane * ldb + e] for the warp's four rows: a tile of
// A B^T where A's row is broadcast to the warp and B's rows are spread over the lanes.
__device__ __forceinline__ void tile_dot(const float* a, int lda, const float* bt, int ldb,
                                         int width, float acc[kAttnRowsPerWarp]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* ar = a + warp * kAttnRowsPerWarp * lda;
  const float* br = bt + lane * ldb;
#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) acc[r] = 0.f;
#pragma unroll 4
  for (int e = 0; e < width; ++e) {
    const float x = br[e];
#pragma unroll
    for (int r = 0; r < kAttnRowsPerWarp; ++r) acc[r] = fmaf(ar[r * lda + e], x, acc[r]);
  }
}

// Odd row stride >= width: conflict-free column reads across 32 rows.
inline int odd_stride(int width) {
  return (width % 2 == 0) ? width + 1 : width;
}

}  // namespace mcore::ops::cuda
