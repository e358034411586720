// Tensor-core attention forward for bf16/fp16 with head dims 64 and 128 (d == dv): the same
// online-softmax algorithm as attention_fwd.cu, with the two tile products (S = Q K^T and
// O += P V) on WMMA 16x16x16 fragments and float32 accumulation. A block of 4 warps covers 64
// query rows (16 per warp) and streams 64-key tiles of K and V through shared memory.
//
// WMMA hides which accumulator element belongs to which row, so the running output O lives in
// shared memory (float32): each warp loads its O fragments, accumulates P V, stores them back,
// and rescales its own rows by exp(m_old - m_new) between tiles. Every warp touches only its own
// 16 rows of S, P and O, so only the K/V loads need block-wide barriers.
//
// P is rounded to the input dtype before the P V product (as FlashAttention does); the row sums
// use the unrounded values. The saved logsumexp is the CPU's. Other dtypes/head dims use the SIMT
// kernel in attention_fwd.cu.
#include <mma.h>

#include "mcore/ops/cuda/attention_kernels.cuh"
#include "mcore/ops/cuda/attention_tc.cuh"
#include "mcore/ops/cuda/launch_util.cuh"

namespace mcore::ops::cuda {

namespace {

constexpr int kTcRows = 64;  // query rows per block
constexpr int kTcKeys = 64;  // keys per tile
constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kPad16 = 8;  // 16-bit element padding per row (keeps 32-byte fragment alignment)
constexpr int kPad32 = 4;  // float padding per row

constexpr size_t align128(size_t b) {
  return (b + 127) / 128 * 128;
}

template <int kD>
struct TcLayout {
  static constexpr int ld_in = kD + kPad16;      // Q, K, V tiles (16-bit)
  static constexpr int ld_s = kTcKeys + kPad32;  // S tile (float)
  static constexpr int ld_p = kTcKeys + kPad16;  // P tile (16-bit)
  static constexpr int ld_o = kD + kPad32;       // O accumulator (float)
  static constexpr size_t q_bytes = align128(sizeof(uint16_t) * kTcRows * ld_in);
  static constexpr size_t kv_bytes = align128(sizeof(uint16_t) * kTcKeys * ld_in);
  static constexpr size_t s_bytes = align128(sizeof(float) * kTcRows * ld_s);
  static constexpr size_t p_bytes = align128(sizeof(uint16_t) * kTcRows * ld_p);
  static constexpr size_t o_bytes = align128(sizeof(float) * kTcRows * ld_o);
  static constexpr size_t total = q_bytes + 2 * kv_bytes + s_bytes + p_bytes + o_bytes;
};

// Copies rows [s0, s0 + rows) of head (b, h) into a 16-bit tile (zeros past s_end), 16 bytes at
// a time when the host found every row 16-byte aligned, else element by element.
template <class T, int kD>
__device__ __forceinline__ void copy_tile(T* dst, int ld, const AttnRows& src, int s0, int rows,
                                          int s_end, int b, int h, bool vec) {
  const T* base = static_cast<const T*>(src.p) + b * src.sb + h * src.sh;
  if (vec) {
    constexpr int kChunks = kD / 8;  // 8 elements per 16 bytes
    for (int idx = threadIdx.x; idx < rows * kChunks; idx += blockDim.x) {
      const int r = idx / kChunks, c = idx % kChunks;
      const int s = s0 + r;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (s < s_end) v = *reinterpret_cast<const uint4*>(base + s * src.ss + c * 8);
      *reinterpret_cast<uint4*>(dst + r * ld + c * 8) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < rows * kD; idx += blockDim.x) {
      const int r = idx / kD, e = idx % kD;
      const int s = s0 + r;
      dst[r * ld + e] = s < s_end ? base[s * src.ss + e] : from_float<T>(0.f);
    }
  }
}

template <class T, int kD>
__global__ void __launch_bounds__(kTcThreads)
    attention_fwd_tc_kernel(AttnParams p, bool vec, T* __restrict__ out, float* __restrict__ lse) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using L = TcLayout<kD>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* ks = reinterpret_cast<T*>(smem_raw + L::q_bytes);
  T* vs = reinterpret_cast<T*>(smem_raw + L::q_bytes + L::kv_bytes);
  float* ss = reinterpret_cast<float*>(smem_raw + L::q_bytes + 2 * L::kv_bytes);
  T* ps = reinterpret_cast<T*>(smem_raw + L::q_bytes + 2 * L::kv_bytes + L::s_bytes);
  float* os =
      reinterpret_cast<float*>(smem_raw + L::q_bytes + 2 * L::kv_bytes + L::s_bytes + L::p_bytes);

  const int ntiles = gridDim.x;
  const int i0 = (ntiles - 1 - static_cast<int>(blockIdx.x)) * kTcRows;
  const int b = blockIdx.y / p.hq, h = blockIdx.y % p.hq, hk = h / p.group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = warp * 16;  // this warp's first row in the tile

  copy_tile<T, kD>(qs, L::ld_in, p.q, i0, kTcRows, p.sq, b, h, vec);
  for (int idx = lane; idx < 16 * kD; idx += 32) os[(row0 + idx / kD) * L::ld_o + idx % kD] = 0.f;

  float m[16], l[16];  // per row of the warp, identical in every lane
#pragma unroll
  for (int r = 0; r < 16; ++r) {
    m[r] = -CUDART_INF_F;
    l[r] = 0.f;
  }

  const int kend = p.key_end(min(i0 + kTcRows, p.sq) - 1);
  for (int j0 = 0; j0 < kend; j0 += kTcKeys) {
    __syncthreads();  // every warp is done with the previous K/V tile
    copy_tile<T, kD>(ks, L::ld_in, p.k, j0, kTcKeys, p.sk, b, hk, vec);
    copy_tile<T, kD>(vs, L::ld_in, p.v, j0, kTcKeys, p.sk, b, hk, vec);
    __syncthreads();

    // S_w = Q_w K^T (16 x 64).
#pragma unroll
    for (int nt = 0; nt < kTcKeys / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bt;
        wmma::load_matrix_sync(a, qs + row0 * L::ld_in + kk * 16, L::ld_in);
        wmma::load_matrix_sync(bt, ks + nt * 16 * L::ld_in + kk * 16, L::ld_in);
        wmma::mma_sync(acc, a, bt, acc);
      }
      wmma::store_matrix_sync(ss + row0 * L::ld_s + nt * 16, acc, L::ld_s, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax on the warp's rows: lanes hold keys lane and lane + 32.
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const int ir = row0 + r, i = i0 + ir;
      float x0 = ss[ir * L::ld_s + lane], x1 = ss[ir * L::ld_s + lane + 32];
      x0 = attn_visible(p, b, h, i, j0 + lane) ? x0 * p.scale_log2 : -CUDART_INF_F;
      x1 = attn_visible(p, b, h, i, j0 + lane + 32) ? x1 * p.scale_log2 : -CUDART_INF_F;
      const float m_new = fmaxf(m[r], warp_max(fmaxf(x0, x1)));
      float p0 = 0.f, p1 = 0.f, alpha = 1.f;
      if (m_new != -CUDART_INF_F) {
        alpha = exp2f(m[r] - m_new);
        p0 = exp2f(x0 - m_new);
        p1 = exp2f(x1 - m_new);
        l[r] = l[r] * alpha + warp_sum(p0 + p1);
        m[r] = m_new;
      }
      ps[ir * L::ld_p + lane] = from_float<T>(p0);
      ps[ir * L::ld_p + lane + 32] = from_float<T>(p1);
      if (alpha != 1.f) {
        for (int e = lane; e < kD; e += 32) os[ir * L::ld_o + e] *= alpha;
      }
    }
    __syncwarp();

    // O_w += P_w V (16 x kD).
#pragma unroll
    for (int nt = 0; nt < kD / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, os + row0 * L::ld_o + nt * 16, L::ld_o, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kTcKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bv;
        wmma::load_matrix_sync(a, ps + row0 * L::ld_p + kk * 16, L::ld_p);
        wmma::load_matrix_sync(bv, vs + kk * 16 * L::ld_in + nt * 16, L::ld_in);
        wmma::mma_sync(acc, a, bv, acc);
      }
      wmma::store_matrix_sync(os + row0 * L::ld_o + nt * 16, acc, L::ld_o, wmma::mem_row_major);
    }
    __syncwarp();
  }

  constexpr float kLn2 = 0.6931471805599453f;
#pragma unroll
  for (int r = 0; r < 16; ++r) {
    const int ir = row0 + r, i = i0 + ir;
    if (i >= p.sq) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;  // no visible key: output 0
    T* dst = out + ((static_cast<int64_t>(i) * p.batch + b) * p.hq + h) * p.dv;
    for (int e = lane; e < kD; e += 32) dst[e] = from_float<T>(os[ir * L::ld_o + e] * inv);
    if (lane == 0) {
      lse[(static_cast<int64_t>(b) * p.hq + h) * p.sq + i] =
          l[r] > 0.f ? m[r] * kLn2 + logf(l[r]) : -CUDART_INF_F;
    }
  }
#else
  __trap();  // the host only selects this kernel on sm_80+
#endif
}

template <class T, int kD>
void launch(const AttnParams& p, Tensor& out, Tensor& lse) {
  using L = TcLayout<kD>;
  // 16-byte row copies need 16-byte aligned bases and row strides that are multiples of 8.
  auto aligned = [](const AttnRows& r) {
    return reinterpret_cast<uintptr_t>(r.p) % 16 == 0 && r.ss % 8 == 0 && r.sb % 8 == 0 &&
           r.sh % 8 == 0;
  };
  const bool vec = aligned(p.q) && aligned(p.k) && aligned(p.v);
  auto kernel = attention_fwd_tc_kernel<T, kD>;
  MCORE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(L::total)));
  const dim3 grid(static_cast<unsigned>(ceil_div(p.sq, kTcRows)),
                  static_cast<unsigned>(p.batch * p.hq));
  kernel<<<grid, kTcThreads, L::total, mcore::cuda::current_stream()>>>(p, vec, dev_ptr<T>(out),
                                                                        dev_ptr<float>(lse));
  MCORE_CUDA_CHECK_LAUNCH("attention_fwd_tc_kernel");
}

}  // namespace

bool attention_forward_tc_supported(const AttnParams& p, DType dtype) {
  if (dtype != DType::BF16 && dtype != DType::F16) return false;
  if (p.d != p.dv || (p.d != 64 && p.d != 128)) return false;
  int major = 0;
  MCORE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                          mcore::cuda::current_device()));
  return major >= 8;
}

void attention_forward_tc(const AttnParams& p, DType dtype, Tensor& out, Tensor& lse) {
  if (dtype == DType::BF16) {
    if (p.d == 64) return launch<__nv_bfloat16, 64>(p, out, lse);
    return launch<__nv_bfloat16, 128>(p, out, lse);
  }
  if (p.d == 64) return launch<__half, 64>(p, out, lse);
  return launch<__half, 128>(p, out, lse);
}

}  // namespace mcore::ops::cuda
