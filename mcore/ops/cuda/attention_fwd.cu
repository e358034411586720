// Fused attention forward on CUDA, FlashAttention-2 style (see attention_cuda.h): one block per
// (32 query rows, batch, head); key/value tiles of 32 stream through shared memory while each
// warp keeps the running max, sum and output of its four rows in registers (online softmax).
// Only the output and the [B, Hq, Sq] logsumexp reach global memory.
//
// This SIMT float32 path serves every dtype and head dim <= 256; bf16/fp16 with d == dv in
// {64, 128} take the tensor-core kernel of attention_fwd_tc.cu instead. cuDNN's fused flash
// attention (cudnn_frontend SDPA, which Transformer Engine uses) could replace both for speed;
// it saves the same [B, H, Sq] float32 logsumexp, so the interface would not change.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "mcore/ops/cuda/attention_cuda.h"
#include "mcore/ops/cuda/attention_kernels.cuh"
#include "mcore/ops/cuda/attention_tc.cuh"
#include "mcore/ops/cuda/launch_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

// Grid: x = query tile (heaviest causal tiles first), y = b * hq + h.
template <class T, int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    attention_fwd_kernel(AttnParams p, T* __restrict__ out, float* __restrict__ lse) {
  constexpr int kCols = kMaxD / 32;  // output columns per lane
  extern __shared__ float smem[];
  float* qs = smem;                   // [32][d]
  float* ks = qs + kAttnTile * p.d;   // [32][p.ks]
  float* vs = ks + kAttnTile * p.ks;  // [32][p.vs]

  const int ntiles = gridDim.x;
  const int i0 = (ntiles - 1 - static_cast<int>(blockIdx.x)) * kAttnTile;
  const int bh = blockIdx.y;
  const int b = bh / p.hq, h = bh % p.hq, hk = h / p.group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  load_tile<T>(qs, p.d, p.q, i0, p.sq, b, h, p.d);

  float m[kAttnRowsPerWarp], l[kAttnRowsPerWarp], o[kAttnRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
    m[r] = -CUDART_INF_F;
    l[r] = 0.f;  // this lane's share of the row sum (reduced over the warp at the end)
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[r][c] = 0.f;
  }

  const int last_row = min(i0 + kAttnTile, p.sq) - 1;
  const int kend = p.key_end(last_row);
  for (int j0 = 0; j0 < kend; j0 += kAttnTile) {
    __syncthreads();  // the previous tile's K/V are no longer read
    load_tile<T>(ks, p.ks, p.k, j0, p.sk, b, hk, p.d);
    load_tile<T>(vs, p.vs, p.v, j0, p.sk, b, hk, p.dv);
    __syncthreads();

    float s[kAttnRowsPerWarp];
    tile_dot(qs, p.d, ks, p.ks, p.d, s);
    float pr[kAttnRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kAttnRowsPerWarp; ++r) {
      const int i = i0 + warp * kAttnRowsPerWarp + r;
      const float x = attn_visible(p, b, h, i, j0 + lane) ? s[r] * p.scale_log2 : -CUDART_INF_F;
      const float m_new = fmaxf(m[r], warp_max(x));
      if (m_new == -CUDART_INF_F) {  // nothing visible in this row yet
        pr[r] = 0.f;
        continue;
      }
      const float alpha = exp2f(m[r] - m_new);  // 0 when m was -inf (o and l are 0 then)
      pr[r] = exp2f(x - m_new);
      l[r] = l[r] * alpha + pr[r];
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[r][c] *= alpha;
    }
    // O += P V: key jj's probability comes from lane jj, V's row is read along the columns.
#pragma unroll 2
    for (int jj = 0; jj < kAttnTile; ++jj) {
      float pj[kAttnRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kAttnRowsPerWarp; ++r) pj[r] = __shfl_sync(0xffffffffu, pr[r], jj);
      const float* vrow = vs + jj * p.vs;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int e = lane + 32 * c;
        const float x = e < p.dv ? vrow[e] : 0.f;
#pragma unroll
        for (int r = 0; r < kAttnRowsPerWarp; ++r) o[r][c] = fmaf(pj[r], x, o[r][c]);
      }
    }
  }

  constexpr float kLn2 = 0.6931471805599453f;
#pragma unroll
  for (int r = 0; r < kAttnRowsPerWarp; ++r) {
    const int i = i0 + warp * kAttnRowsPerWarp + r;
    const float sum = warp_sum(l[r]);
    if (i >= p.sq) continue;
    T* dst = out + ((static_cast<int64_t>(i) * p.batch + b) * p.hq + h) * p.dv;
    const float inv = sum > 0.f ? 1.f / sum : 0.f;  // no visible key: output 0
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int e = lane + 32 * c;
      if (e < p.dv) dst[e] = from_float<T>(o[r][c] * inv);
    }
    if (lane == 0) {
      lse[(static_cast<int64_t>(b) * p.hq + h) * p.sq + i] =
          sum > 0.f ? m[r] * kLn2 + logf(sum) : -CUDART_INF_F;
    }
  }
}

template <class T, int kMaxD>
void launch_forward(const AttnParams& p, Tensor& out, Tensor& lse) {
  const size_t smem = sizeof(float) * kAttnTile * (p.d + p.ks + p.vs);
  auto kernel = attention_fwd_kernel<T, kMaxD>;
  MCORE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(ceil_div(p.sq, kAttnTile)),
                  static_cast<unsigned>(p.batch * p.hq));
  kernel<<<grid, kAttnThreads, smem, mcore::cuda::current_stream()>>>(p, dev_ptr<T>(out),
                                                                      dev_ptr<float>(lse));
  MCORE_CUDA_CHECK_LAUNCH("attention_fwd_kernel");
}

template <class T>
void dispatch_forward(int bucket, const AttnParams& p, Tensor& out, Tensor& lse) {
  switch (bucket) {
    case 64:
      return launch_forward<T, 64>(p, out, lse);
    case 128:
      return launch_forward<T, 128>(p, out, lse);
    default:
      return launch_forward<T, 256>(p, out, lse);
  }
}

}  // namespace

Tensor head_contiguous(const Tensor& t) {
  return (t.stride(3) == 1 || t.size(3) <= 1) ? t : t.contiguous();
}

AttnParams make_attn_params(Tensor& q, Tensor& k, Tensor& v, const AttentionOptions& o,
                            Tensor& mask_holder, const char* op) {
  check_same_cuda({q, k, v}, op);
  MCORE_CHECK(q.dtype() == DType::F32 || q.dtype() == DType::BF16 || q.dtype() == DType::F16)
      << op << ": the CUDA kernel takes float32, bfloat16 or float16; got " << q.dtype() << " q "
      << shape_str(q.shape()) << " (float64 attention runs on the CPU)";
  q = head_contiguous(q);
  k = head_contiguous(k);
  v = head_contiguous(v);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  MCORE_CHECK(q.size(0) < kIntMax && k.size(0) < kIntMax && q.size(1) * q.size(2) < 65536)
      << op << ": sizes beyond the kernel's index range: q " << shape_str(q.shape()) << ", k "
      << shape_str(k.shape()) << " (B * Hq must be < 65536)";
  AttnParams p;
  p.q = {q.data_ptr(), q.stride(0), q.stride(1), q.stride(2)};
  p.k = {k.data_ptr(), k.stride(0), k.stride(1), k.stride(2)};
  p.v = {v.data_ptr(), v.stride(0), v.stride(1), v.stride(2)};
  p.sq = static_cast<int>(q.size(0));
  p.sk = static_cast<int>(k.size(0));
  p.batch = static_cast<int>(q.size(1));
  p.hq = static_cast<int>(q.size(2));
  p.hkv = static_cast<int>(k.size(2));
  p.group = p.hq / p.hkv;
  p.d = static_cast<int>(q.size(3));
  p.dv = static_cast<int>(v.size(3));
  const double scale =
      o.softmax_scale != 0.0 ? o.softmax_scale : 1.0 / std::sqrt(static_cast<double>(p.d));
  p.scale = static_cast<float>(scale);
  p.scale_log2 = static_cast<float>(scale * 1.4426950408889634);
  p.causal = o.causal;
  p.causal_offset = p.sk - p.sq;
  p.ks = odd_stride(p.d);
  p.vs = odd_stride(p.dv);
  if (o.attention_mask.defined()) {
    const Tensor& m = o.attention_mask;
    MCORE_CHECK(m.device() == q.device())
        << op << ": attention_mask on " << m.device() << " but q on " << q.device();
    MCORE_CHECK(m.dtype() == DType::BOOL)
        << op << ": attention_mask must be bool (true = masked out), got " << m.dtype() << " "
        << shape_str(m.shape());
    const Shape want = {p.batch, p.hq, p.sq, p.sk};
    Shape s4;
    if (m.dim() == 2) s4 = {m.size(0), 1, 1, m.size(1)};
    if (m.dim() == 4) s4 = m.shape();
    bool ok = s4.size() == 4 && s4[3] == p.sk;
    for (size_t i = 0; ok && i < 3; ++i) ok = s4[i] == want[i] || s4[i] == 1;
    MCORE_CHECK(ok) << op << ": attention_mask " << shape_str(m.shape())
                    << " must be [B, Sk] or broadcastable to [B, Hq, Sq, Sk] = " << shape_str(want);
    mask_holder = m.contiguous().view(s4);
    p.mask = static_cast<const bool*>(mask_holder.data_ptr());
    const Shape st = mask_holder.strides();
    p.mask_sb = s4[0] == 1 ? 0 : st[0];
    p.mask_sh = s4[1] == 1 ? 0 : st[1];
    p.mask_si = s4[2] == 1 ? 0 : st[2];
  }
  return p;
}

int attn_head_bucket(const AttnParams& p, const char* op) {
  const int d = p.d > p.dv ? p.d : p.dv;
  MCORE_CHECK(d <= kAttnMaxHeadDim)
      << op << ": head dims d=" << p.d << ", dv=" << p.dv << " exceed the CUDA kernel's limit of "
      << kAttnMaxHeadDim << "; use the unfused attention path for larger heads";
  return d <= 64 ? 64 : (d <= 128 ? 128 : 256);
}

AttentionForwardResult attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                         const AttentionOptions& options) {
  Tensor q = q_in, k = k_in, v = v_in, mask_holder;
  DeviceGuard guard(q.device());
  const AttnParams p = make_attn_params(q, k, v, options, mask_holder, "attention_forward");
  const int bucket = attn_head_bucket(p, "attention_forward");
  AttentionForwardResult r;
  r.out = empty({p.sq, p.batch, p.hq, p.dv}, {q.dtype(), q.device()});
  r.softmax_lse = empty({p.batch, p.hq, p.sq}, {DType::F32, q.device()});
  if (p.sq == 0 || p.batch == 0 || p.hq == 0) return r;
  static const bool force_simt = [] {
    const char* e = std::getenv("MCORE_ATTENTION_SIMT");
    return e && std::strcmp(e, "0") != 0;
  }();
  if (!force_simt && attention_forward_tc_supported(p, q.dtype())) {
    attention_forward_tc(p, q.dtype(), r.out, r.softmax_lse);
    return r;
  }
  switch (q.dtype()) {
    case DType::BF16:
      dispatch_forward<__nv_bfloat16>(bucket, p, r.out, r.softmax_lse);
      break;
    case DType::F16:
      dispatch_forward<__half>(bucket, p, r.out, r.softmax_lse);
      break;
    default:
      dispatch_forward<float>(bucket, p, r.out, r.softmax_lse);
      break;
  }
  return r;
}

}  // namespace mcore::ops::cuda
