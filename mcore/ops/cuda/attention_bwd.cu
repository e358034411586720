// Fused attention backward on CUDA (FlashAttention-2's algorithm, see attention_cuda.h):
//   delta_i = dO_i . O_i
//   P = exp(scale * Q K^T - lse),  dP = dO V^T,  dS = P * (dP - delta)
//   dV = P^T dO,  dK = scale * dS^T Q,  dQ = scale * dS K
// Probabilities are recomputed tile by tile from the saved logsumexp. dK/dV and dQ are produced
// by two kernels that each own their output rows (the dK/dV kernel loops over every query head of
// its GQA group), so no atomics are needed and the result is bit-reproducible, as on the CPU.
// The dQ kernel recomputes P and dS instead of sharing them: two extra tile products for a
// deterministic, conflict-free write pattern.
#include <limits>

#include "mcore/ops/cuda/attention_cuda.h"
#include "mcore/ops/cuda/attention_kernels.cuh"
#include "mcore/ops/cuda/launch_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

struct BwdArgs {
  AttnRows dout, out;
  const float* lse = nullptr;  // [B, Hq, Sq]
  float* delta = nullptr;      // [B, Hq, Sq]
};

// One warp per (i, b, h) row: delta[b, h, i] = sum_e dO * O.
template <class T>
__global__ void attention_delta_kernel(AttnParams p, BwdArgs a) {
  const int64_t rows = static_cast<int64_t>(p.sq) * p.batch * p.hq;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; t < rows;
       t += warps) {
    const int h = static_cast<int>(t % p.hq);
    const int b = static_cast<int>((t / p.hq) % p.batch);
    const int i = static_cast<int>(t / (static_cast<int64_t>(p.hq) * p.batch));
    const T* x = static_cast<const T*>(a.dout.p) + i * a.dout.ss + b * a.dout.sb + h * a.dout.sh;
    const T* y = static_cast<const T*>(a.out.p) + i * a.out.ss + b * a.out.sb + h * a.out.sh;
    float sum = 0.f;
    for (int e = lane; e < p.dv; e += 32) sum = fmaf(to_float(x[e]), to_float(y[e]), sum);
    sum = warp_sum(sum);
    if (lane == 0) a.delta[(static_cast<int64_t>(b) * p.hq + h) * p.sq + i] = sum;
  }
}

// Loads lse (in the exp2 domain) and delta of rows [i0, i0 + 32) of head (b, h); rows past the
// end get lse = +inf so that their probabilities are 0.
__device__ __forceinline__ void load_row_stats(const AttnParams& p, const BwdArgs& a, int b, int h,
                                               int i0, float* lse2, float* delta) {
  if (threadIdx.x < kAttnTile) {
    const int i = i0 + threadIdx.x;
    const int64_t row = (static_cast<int64_t>(b) * p.hq + h) * p.sq + i;
    float l = CUDART_INF_F, dl = 0.f;
    if (i < p.sq) {
      l = a.lse[row];
      // A fully masked row (lse = -inf) has no gradient: treat it like a missing row.
      l = l == -CUDART_INF_F ? CUDART_INF_F : l * kLog2e;
      dl = a.delta[row];
    }
    lse2[threadIdx.x] = l;
    delta[threadIdx.x] = dl;
  }
}

// For the warp's four rows and the lane's key: P and dS of the tile into ps / dss ([32][33]).
__device__ __forceinline__ void tile_grads(const AttnParams& p, int b, int h, int i0, int j0,
                                           const float* qs, const float* dos, const float* ks,
                                           const float* vs, const float* lse2, const float* delta,
                                           float* ps, float* dss) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float s[kAttnRowsPerWarp], dp[kAttnRowsPerWarp];
  tile_dot(qs, p.d, ks, p.ks, p.d, s);
  tile_dot(dos, p.dv, vs, p.vs, p.dv, dp);
#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
    const int ir = warp * kAttnRowsPerWarp + r;
    const float pr =
        attn_visible(p, b, h, i0 + ir, j0 + lane) ? exp2f(s[r] * p.scale_log2 - lse2[ir]) : 0.f;
    if (ps) ps[ir * (kAttnTile + 1) + lane] = pr;
    dss[ir * (kAttnTile + 1) + lane] = pr * (dp[r] - delta[ir]);
  }
}

// Grid: x = key tile, y = b * hkv + kv head. Warp w accumulates dK/dV of keys 4w..4w+3 of the
// tile, lane l the columns l, l + 32, ...
template <class T, int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    attention_dkdv_kernel(AttnParams p, BwdArgs a, T* __restrict__ dk, T* __restrict__ dv) {
  constexpr int kCols = kMaxD / 32;
  constexpr int kPs = kAttnTile + 1;
  extern __shared__ float smem[];
  float* ks = smem;                    // [32][p.ks]
  float* vs = ks + kAttnTile * p.ks;   // [32][p.vs]
  float* qs = vs + kAttnTile * p.vs;   // [32][d]
  float* dos = qs + kAttnTile * p.d;   // [32][dv]
  float* ps = dos + kAttnTile * p.dv;  // [32][33]
  float* dss = ps + kAttnTile * kPs;   // [32][33]
  float* lse2 = dss + kAttnTile * kPs;
  float* delta = lse2 + kAttnTile;

  const int j0 = blockIdx.x * kAttnTile;
  const int b = blockIdx.y / p.hkv, hk = blockIdx.y % p.hkv;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  load_tile<T>(ks, p.ks, p.k, j0, p.sk, b, hk, p.d);
  load_tile<T>(vs, p.vs, p.v, j0, p.sk, b, hk, p.dv);

  float gk[kAttnRowsPerWarp][kCols], gv[kAttnRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < kCols; ++c) gk[r][c] = gv[r][c] = 0.f;
  }

  const int qstart = p.query_begin(j0) / kAttnTile * kAttnTile;
  for (int h = hk * p.group; h < (hk + 1) * p.group; ++h) {
    for (int i0 = qstart; i0 < p.sq; i0 += kAttnTile) {
      __syncthreads();  // the previous tile's Q, dO, P, dS are no longer read
      load_tile<T>(qs, p.d, p.q, i0, p.sq, b, h, p.d);
      load_tile<T>(dos, p.dv, a.dout, i0, p.sq, b, h, p.dv);
      load_row_stats(p, a, b, h, i0, lse2, delta);
      __syncthreads();
      tile_grads(p, b, h, i0, j0, qs, dos, ks, vs, lse2, delta, ps, dss);
      __syncthreads();
      // dV += P^T dO, dK += dS^T Q (scale applied on store).
      for (int i = 0; i < kAttnTile; ++i) {
        const float* qrow = qs + i * p.d;
        const float* dorow = dos + i * p.dv;
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          const int e = lane + 32 * c;
          const float xq = e < p.d ? qrow[e] : 0.f;
          const float xo = e < p.dv ? dorow[e] : 0.f;
#pragma unroll
          for (int r = 0; r < kAttnRowsPerWarp; ++r) {
            const int jr = warp * kAttnRowsPerWarp + r;
            gv[r][c] = fmaf(ps[i * kPs + jr], xo, gv[r][c]);
            gk[r][c] = fmaf(dss[i * kPs + jr], xq, gk[r][c]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
    const int j = j0 + warp * kAttnRowsPerWarp + r;
    if (j >= p.sk) continue;
    const int64_t row = (static_cast<int64_t>(j) * p.batch + b) * p.hkv + hk;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int e = lane + 32 * c;
      if (e < p.d) dk[row * p.d + e] = from_float<T>(gk[r][c] * p.scale);
      if (e < p.dv) dv[row * p.dv + e] = from_float<T>(gv[r][c]);
    }
  }
}

// Grid: x = query tile, y = b * hq + h. Warp w accumulates dQ of rows 4w..4w+3.
template <class T, int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    attention_dq_kernel(AttnParams p, BwdArgs a, T* __restrict__ dq) {
  constexpr int kCols = kMaxD / 32;
  constexpr int kPs = kAttnTile + 1;
  extern __shared__ float smem[];
  float* ks = smem;                     // [32][p.ks]
  float* vs = ks + kAttnTile * p.ks;    // [32][p.vs]
  float* qs = vs + kAttnTile * p.vs;    // [32][d]
  float* dos = qs + kAttnTile * p.d;    // [32][dv]
  float* dss = dos + kAttnTile * p.dv;  // [32][33]
  float* lse2 = dss + kAttnTile * kPs;
  float* delta = lse2 + kAttnTile;

  const int ntiles = gridDim.x;
  const int i0 = (ntiles - 1 - static_cast<int>(blockIdx.x)) * kAttnTile;
  const int b = blockIdx.y / p.hq, h = blockIdx.y % p.hq, hk = h / p.group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  load_tile<T>(qs, p.d, p.q, i0, p.sq, b, h, p.d);
  load_tile<T>(dos, p.dv, a.dout, i0, p.sq, b, h, p.dv);
  load_row_stats(p, a, b, h, i0, lse2, delta);

  float gq[kAttnRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < kCols; ++c) gq[r][c] = 0.f;
  }

  const int kend = p.key_end(min(i0 + kAttnTile, p.sq) - 1);
  for (int j0 = 0; j0 < kend; j0 += kAttnTile) {
    __syncthreads();
    load_tile<T>(ks, p.ks, p.k, j0, p.sk, b, hk, p.d);
    load_tile<T>(vs, p.vs, p.v, j0, p.sk, b, hk, p.dv);
    __syncthreads();
    tile_grads(p, b, h, i0, j0, qs, dos, ks, vs, lse2, delta, nullptr, dss);
    __syncwarp();  // each warp reads back only the dS rows it wrote
    // dQ += dS K.
    for (int j = 0; j < kAttnTile; ++j) {
      const float* krow = ks + j * p.ks;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int e = lane + 32 * c;
        const float xk = e < p.d ? krow[e] : 0.f;
#pragma unroll
        for (int r = 0; r < kAttnRowsPerWarp; ++r) {
          gq[r][c] = fmaf(dss[(warp * kAttnRowsPerWarp + r) * kPs + j], xk, gq[r][c]);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
    const int i = i0 + warp * kAttnRowsPerWarp + r;
    if (i >= p.sq) continue;
    T* dst = dq + ((static_cast<int64_t>(i) * p.batch + b) * p.hq + h) * p.d;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int e = lane + 32 * c;
      if (e < p.d) dst[e] = from_float<T>(gq[r][c] * p.scale);
    }
  }
}

template <class T, int kMaxD>
void launch_backward(const AttnParams& p, const BwdArgs& a, Tensor& dq, Tensor& dk, Tensor& dv) {
  cudaStream_t stream = mcore::cuda::current_stream();
  const int64_t tile_bytes = sizeof(float) * kAttnTile;
  const size_t stats = sizeof(float) * (2 * kAttnTile * (kAttnTile + 1) + 2 * kAttnTile);
  const size_t smem_kv = tile_bytes * (p.ks + p.vs + p.d + p.dv) + stats;
  auto kv_kernel = attention_dkdv_kernel<T, kMaxD>;
  MCORE_CUDA_CHECK(cudaFuncSetAttribute(kv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem_kv)));
  const dim3 grid_kv(static_cast<unsigned>(ceil_div(p.sk, kAttnTile)),
                     static_cast<unsigned>(p.batch * p.hkv));
  if (p.sk > 0) {
    kv_kernel<<<grid_kv, kAttnThreads, smem_kv, stream>>>(p, a, dev_ptr<T>(dk), dev_ptr<T>(dv));
    MCORE_CUDA_CHECK_LAUNCH("attention_dkdv_kernel");
  }
  auto q_kernel = attention_dq_kernel<T, kMaxD>;
  const size_t smem_q = smem_kv - sizeof(float) * kAttnTile * (kAttnTile + 1);  // no P tile
  MCORE_CUDA_CHECK(cudaFuncSetAttribute(q_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem_q)));
  const dim3 grid_q(static_cast<unsigned>(ceil_div(p.sq, kAttnTile)),
                    static_cast<unsigned>(p.batch * p.hq));
  if (p.sq > 0) {  // with no query the dK/dV kernel alone writes (zero) gradients
    q_kernel<<<grid_q, kAttnThreads, smem_q, stream>>>(p, a, dev_ptr<T>(dq));
    MCORE_CUDA_CHECK_LAUNCH("attention_dq_kernel");
  }
}

template <class T>
void dispatch_backward(int bucket, const AttnParams& p, const BwdArgs& a, Tensor& dq, Tensor& dk,
                       Tensor& dv) {
  const int64_t rows = static_cast<int64_t>(p.sq) * p.batch * p.hq;
  attention_delta_kernel<T>
      <<<grid_for(rows * 32, 256), 256, 0, mcore::cuda::current_stream()>>>(p, a);
  MCORE_CUDA_CHECK_LAUNCH("attention_delta_kernel");
  switch (bucket) {
    case 64:
      return launch_backward<T, 64>(p, a, dq, dk, dv);
    case 128:
      return launch_backward<T, 128>(p, a, dq, dk, dv);
    default:
      return launch_backward<T, 256>(p, a, dq, dk, dv);
  }
}

}  // namespace

AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q_in, const Tensor& k_in,
                                  const Tensor& v_in, const Tensor& out_in,
                                  const Tensor& softmax_lse, const AttentionOptions& options) {
  const char* op = "attention_backward";
  Tensor q = q_in, k = k_in, v = v_in, mask_holder;
  DeviceGuard guard(q.device());
  check_same_cuda({q, grad_out, out_in, softmax_lse}, op);
  const AttnParams p = make_attn_params(q, k, v, options, mask_holder, op);
  const int bucket = attn_head_bucket(p, op);
  MCORE_CHECK(softmax_lse.dtype() == DType::F32)
      << op << ": softmax_lse must be the forward's float32 [B, Hq, Sq] tensor, got "
      << softmax_lse.dtype() << " " << shape_str(softmax_lse.shape());
  const Tensor dout = head_contiguous(grad_out), out = head_contiguous(out_in);
  const Tensor lse = softmax_lse.contiguous();
  AttentionGrads g;
  g.dq = empty(q.shape(), {q.dtype(), q.device()});
  g.dk = empty(k.shape(), {k.dtype(), k.device()});
  g.dv = empty(v.shape(), {v.dtype(), v.device()});
  if (p.batch == 0 || p.hq == 0) return g;
  Tensor delta = empty({p.batch, p.hq, p.sq}, {DType::F32, q.device()});
  BwdArgs a;
  a.dout = {dout.data_ptr(), dout.stride(0), dout.stride(1), dout.stride(2)};
  a.out = {out.data_ptr(), out.stride(0), out.stride(1), out.stride(2)};
  a.lse = dev_ptr<const float>(lse);
  a.delta = dev_ptr<float>(delta);
  switch (q.dtype()) {
    case DType::BF16:
      dispatch_backward<__nv_bfloat16>(bucket, p, a, g.dq, g.dk, g.dv);
      break;
    case DType::F16:
      dispatch_backward<__half>(bucket, p, a, g.dq, g.dk, g.dv);
      break;
    default:
      dispatch_backward<float>(bucket, p, a, g.dq, g.dk, g.dv);
      break;
  }
  return g;
}

}  // namespace mcore::ops::cuda
