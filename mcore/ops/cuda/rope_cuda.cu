#include "mcore/ops/cuda/rope_cuda.h"

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

// cos(f) * mscale, sin(f) * mscale as the CPU's trig tables compute them.
__device__ __forceinline__ void cos_sin(float f, float ms, double, float& c, float& s) {
  float sv, cv;
  sincosf(f, &sv, &cv);
  c = cv * ms;
  s = sv * ms;
}
__device__ __forceinline__ void cos_sin(double f, float, double ms, float& c, float& s) {
  double sv, cv;
  sincos(f, &sv, &cv);
  c = static_cast<float>(cv * ms);
  s = static_cast<float>(sv * ms);
}

struct RopeGeometry {
  int64_t rows, B, H, D, rot, fb;  // rows = S * B * H; fb: 1 or B (per-sample angles)
  int64_t ss, sb, sh;              // input strides of s, b, h (the channel stride is 1)
};

// Rotates pairs (a, b): forward ya = xa ca - xb sa, yb = xb cb + xa sb; inverse (the transpose,
// for the backward) ya = xa ca + xb sb, yb = xb cb - xa sa. Rotate-half pairs (i, i + rot/2),
// interleaved (2i, 2i + 1). N > 1 needs 16-byte aligned rows and rot/2 (rotate-half) or rot
// (interleaved) and D multiples of N.
template <class T, class F, int N, bool kInverse, bool kInterleaved>
__global__ void rope_kernel(const T* __restrict__ x, const F* __restrict__ freqs, T* __restrict__ y,
                            RopeGeometry g, float ms_f, double ms_d) {
  const int64_t half = g.rot / 2;
  // Interleaved with N == 1 takes one pair (two channels) per unit.
  constexpr int kStep = kInterleaved && N == 1 ? 2 : N;
  const int64_t units = kInterleaved ? g.rot / kStep : half / N;
  for (int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; row < g.rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t h = row % g.H, b = (row / g.H) % g.B, s = row / (g.B * g.H);
    const T* xr = x + s * g.ss + b * g.sb + h * g.sh;
    T* yr = y + row * g.D;
    const F* fr = freqs + (s * g.fb + (g.fb == 1 ? 0 : b)) * g.rot;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      if constexpr (kInterleaved) {
        float xv[kStep], o[kStep];
        if constexpr (N == 1) {
          xv[0] = to_float(xr[2 * u]);
          xv[1] = to_float(xr[2 * u + 1]);
        } else {
          load_pack<T, N>(xr + u * N, xv);
        }
#pragma unroll
        for (int k = 0; k < kStep; k += 2) {
          const int64_t ia = u * kStep + k;
          float ca, sa, cb, sbv;
          cos_sin(fr[ia], ms_f, ms_d, ca, sa);
          cos_sin(fr[ia + 1], ms_f, ms_d, cb, sbv);
          const float xa = xv[k], xb = xv[k + 1];
          if constexpr (kInverse) {
            o[k] = xa * ca + xb * sbv;
            o[k + 1] = xb * cb - xa * sa;
          } else {
            o[k] = xa * ca - xb * sa;
            o[k + 1] = xb * cb + xa * sbv;
          }
        }
        if constexpr (N == 1) {
          yr[2 * u] = from_float<T>(o[0]);
          yr[2 * u + 1] = from_float<T>(o[1]);
        } else {
          store_pack<T, N>(yr + u * N, o);
        }
      } else {
        float xa[N], xb[N], oa[N], ob[N];
        load_pack<T, N>(xr + u * N, xa);
        load_pack<T, N>(xr + half + u * N, xb);
#pragma unroll
        for (int k = 0; k < N; ++k) {
          const int64_t i = u * N + k;
          float ca, sa, cb, sbv;
          cos_sin(fr[i], ms_f, ms_d, ca, sa);
          cos_sin(fr[i + half], ms_f, ms_d, cb, sbv);
          if constexpr (kInverse) {
            oa[k] = xa[k] * ca + xb[k] * sbv;
            ob[k] = xb[k] * cb - xa[k] * sa;
          } else {
            oa[k] = xa[k] * ca - xb[k] * sa;
            ob[k] = xb[k] * cb + xa[k] * sbv;
          }
        }
        store_pack<T, N>(yr + u * N, oa);
        store_pack<T, N>(yr + half + u * N, ob);
      }
    }
    // The channels past rot_dim pass through unchanged (a bit copy).
    for (int64_t u = g.rot / N + threadIdx.x; u < g.D / N; u += blockDim.x)
      *reinterpret_cast<Pack<T, N>*>(yr + u * N) = *reinterpret_cast<const Pack<T, N>*>(xr + u * N);
  }
}

template <bool kInverse>
Tensor rope(const Tensor& t_in, const Tensor& freqs_in, bool interleaved, double mscale,
            const char* op) {
  check_cuda_float(t_in.dtype(), op);
  const int64_t D = t_in.size(3);
  const Tensor t = t_in.stride(3) == 1 || D <= 1 ? t_in : t_in.contiguous();
  const Tensor freqs = (freqs_in.dtype() == DType::F64 || freqs_in.dtype() == DType::F32)
                           ? freqs_in.contiguous()
                           : freqs_in.to(DType::F32).contiguous();
  Tensor out = empty(t.shape(), {t.dtype(), t.device()});
  if (out.numel() == 0) return out;
  RopeGeometry g;
  g.B = t.size(1);
  g.H = t.size(2);
  g.D = D;
  g.rows = t.size(0) * g.B * g.H;
  g.rot = freqs.size(3);
  g.fb = freqs.size(1);
  g.ss = t.stride(0);
  g.sb = t.stride(1);
  g.sh = t.stride(2);
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(t.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* xp = static_cast<const T*>(t.data_ptr());
    T* yp = static_cast<T*>(out.data_ptr());
    const bool vec = reinterpret_cast<uintptr_t>(xp) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(yp) % 16 == 0 && g.D % V == 0 && g.ss % V == 0 &&
                     g.sb % V == 0 && g.sh % V == 0 &&
                     (interleaved ? g.rot % V == 0 : (g.rot / 2) % V == 0);
    const RowPlan plan = plan_rows(g.rows, vec ? g.D / V : g.D);
    const float ms_f = static_cast<float>(mscale);
    auto launch = [&](auto f_tag, auto n_tag) {
      using F = decltype(f_tag);
      constexpr int N = decltype(n_tag)::value;
      const F* fp = static_cast<const F*>(freqs.data_ptr());
      if (interleaved) {
        rope_kernel<T, F, N, kInverse, true>
            <<<plan.grid, plan.block, 0, stream>>>(xp, fp, yp, g, ms_f, mscale);
      } else {
        rope_kernel<T, F, N, kInverse, false>
            <<<plan.grid, plan.block, 0, stream>>>(xp, fp, yp, g, ms_f, mscale);
      }
    };
    using One = std::integral_constant<int, 1>;
    using Vec = std::integral_constant<int, V>;
    if (freqs.dtype() == DType::F64) {
      vec ? launch(double{}, Vec{}) : launch(double{}, One{});
    } else {
      vec ? launch(float{}, Vec{}) : launch(float{}, One{});
    }
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
  return out;
}

}  // namespace

Tensor apply_rotary_pos_emb(const Tensor& t, const Tensor& freqs, bool rotary_interleaved,
                            double mscale) {
  return rope<false>(t, freqs, rotary_interleaved, mscale, "apply_rotary_pos_emb");
}

Tensor apply_rotary_pos_emb_backward(const Tensor& grad_out, const Tensor& freqs,
                                     bool rotary_interleaved, double mscale) {
  return rope<true>(grad_out, freqs, rotary_interleaved, mscale, "apply_rotary_pos_emb_backward");
}

}  // namespace mcore::ops::cuda
