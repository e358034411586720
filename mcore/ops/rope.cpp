#include "mcore/ops/rope.h"

#include <cmath>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/rope_cuda.h"
#endif

namespace mcore::ops {

namespace {

// cos(freqs) * mscale and sin(freqs) * mscale as [rows, rot_dim] tables in the compute type.
// The angles are evaluated in the freqs' own precision, as Megatron's torch.cos(freqs) does;
// a table is S x rot_dim, tiny next to the S x B x H x D tensor it rotates.
template <class A>
void trig_tables(const Tensor& freqs, double mscale, std::vector<A>& cs, std::vector<A>& sn) {
  const int64_t n = freqs.numel();
  cs.resize(n);
  sn.resize(n);
  if (freqs.dtype() == DType::F64) {
    Tensor f = freqs.contiguous();
    const double* fp = f.data<double>();
    for (int64_t i = 0; i < n; ++i) {
      cs[i] = static_cast<A>(std::cos(fp[i]) * mscale);
      sn[i] = static_cast<A>(std::sin(fp[i]) * mscale);
    }
  } else {
    Tensor f = freqs.to(DType::F32).contiguous();
    const float* fp = f.data<float>();
    const float ms = static_cast<float>(mscale);
    for (int64_t i = 0; i < n; ++i) {
      cs[i] = static_cast<A>(std::cos(fp[i]) * ms);
      sn[i] = static_cast<A>(std::sin(fp[i]) * ms);
    }
  }
}

// Rotates each pair (a, b) of the first `rot` channels of every [S, B, H] row:
//   forward:  ya = xa ca - xb sa,  yb = xb cb + xa sb
//   inverse:  ya = xa ca + xb sb,  yb = xb cb - xa sa   (the transpose, used by the backward)
// Rotate-half pairs (i, i + rot/2); interleaved pairs (2i, 2i + 1).
template <class T, bool Inverse>
void rope_kernel(const Tensor& x, Tensor& out, const Tensor& freqs, bool interleaved,
                 double mscale) {
  using A = acc_t<T>;
  std::vector<A> cs, sn;
  trig_tables(freqs, mscale, cs, sn);
  const int64_t S = x.size(0), B = x.size(1), H = x.size(2), D = x.size(3);
  const int64_t rot = freqs.size(3), half = rot / 2;
  const int64_t fb = freqs.size(1);  // 1, or B for per-sample angles
  const int64_t ss = x.stride(0), sb = x.stride(1), sh = x.stride(2);
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* op = out.data<T>();
  const A* cp = cs.data();
  const A* sp = sn.data();
  const int64_t rows = S * B * H;
#pragma omp parallel for schedule(static) if (rows * D > 16384)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t h = row % H, b = (row / H) % B, s = row / (B * H);
    const T* xr = xp + s * ss + b * sb + h * sh;
    T* yr = op + row * D;
    const int64_t trow = (s * fb + (fb == 1 ? 0 : b)) * rot;
    const A* c = cp + trow;
    const A* sv = sp + trow;
    if (!interleaved) {
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const A xa = static_cast<A>(xr[i]), xb = static_cast<A>(xr[i + half]);
        const A ca = c[i], cb = c[i + half], sa = sv[i], sbv = sv[i + half];
        if constexpr (Inverse) {
          yr[i] = store<T>(xa * ca + xb * sbv);
          yr[i + half] = store<T>(xb * cb - xa * sa);
        } else {
          yr[i] = store<T>(xa * ca - xb * sa);
          yr[i + half] = store<T>(xb * cb + xa * sbv);
        }
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t ia = 2 * i, ib = 2 * i + 1;
        const A xa = static_cast<A>(xr[ia]), xb = static_cast<A>(xr[ib]);
        if constexpr (Inverse) {
          yr[ia] = store<T>(xa * c[ia] + xb * sv[ib]);
          yr[ib] = store<T>(xb * c[ib] - xa * sv[ia]);
        } else {
          yr[ia] = store<T>(xa * c[ia] - xb * sv[ia]);
          yr[ib] = store<T>(xb * c[ib] + xa * sv[ib]);
        }
      }
    }
    for (int64_t e = rot; e < D; ++e) yr[e] = xr[e];
  }
}

template <bool Inverse>
Tensor rope(const Tensor& t_in, const Tensor& freqs, bool interleaved, double mscale,
            const char* op) {
  [[maybe_unused]] const bool on_gpu = on_cuda({t_in, freqs}, op);
  MCORE_CHECK(t_in.dim() == 4) << op << ": expected t [S, B, H, D], got "
                               << shape_str(t_in.shape());
  MCORE_CHECK(is_floating(freqs.dtype())) << op << ": freqs must be a float tensor of angles, got "
                                          << freqs.dtype() << " " << shape_str(freqs.shape());
  const int64_t S = t_in.size(0), B = t_in.size(1), D = t_in.size(3);
  MCORE_CHECK(freqs.dim() == 4 && freqs.size(0) == S &&
              (freqs.size(1) == 1 || freqs.size(1) == B) && freqs.size(2) == 1)
      << op << ": freqs " << shape_str(freqs.shape()) << " must be [S, 1, 1, rot_dim] (or [S, B, "
      << "1, rot_dim]) for t " << shape_str(t_in.shape());
  const int64_t rot = freqs.size(3);
  MCORE_CHECK(rot % 2 == 0 && rot <= D)
      << op << ": rot_dim " << rot << " of freqs " << shape_str(freqs.shape())
      << " must be even and at most the head dim of t " << shape_str(t_in.shape());
#ifdef MCORE_WITH_CUDA
  if (on_gpu) {
    return Inverse ? cuda::apply_rotary_pos_emb_backward(t_in, freqs, interleaved, mscale)
                   : cuda::apply_rotary_pos_emb(t_in, freqs, interleaved, mscale);
  }
#endif
  const Tensor t = t_in.stride(3) == 1 || D <= 1 ? t_in : t_in.contiguous();
  Tensor out = empty(t.shape(), {t.dtype(), t.device()});
  if (out.numel() == 0) return out;
  MCORE_DISPATCH_FLOAT_TYPES(
      t.dtype(), op, [&] { rope_kernel<scalar_t, Inverse>(t, out, freqs, interleaved, mscale); });
  return out;
}

}  // namespace

Tensor rotary_embedding_freqs(int64_t kv_channels, int64_t max_seq_len,
                              const RotaryEmbeddingOptions& o) {
  int64_t dim = kv_channels;
  if (o.rotary_percent < 1.0)
    dim = static_cast<int64_t>(static_cast<double>(dim) * o.rotary_percent);
  MCORE_CHECK(dim > 0 && dim % 2 == 0 && max_seq_len >= 0)
      << "rotary_embedding_freqs: rotary dim int(kv_channels " << kv_channels
      << " * rotary_percent " << o.rotary_percent << ") = " << dim
      << " must be positive and even, and max_seq_len (" << max_seq_len << ") non-negative";
  // float32 throughout, step by step as Megatron's torch code rounds.
  const int64_t half = dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(o.rotary_base), e);
  }
  const float interp = o.seq_len_interpolation_factor != 0.0
                           ? static_cast<float>(1.0 / o.seq_len_interpolation_factor)
                           : 1.0f;
  Tensor emb = empty({max_seq_len, 1, 1, dim}, DType::F32);
  float* ep = emb.data<float>();
  for (int64_t s = 0; s < max_seq_len; ++s) {
    float pos = static_cast<float>(s) + static_cast<float>(o.offset);
    if (o.seq_len_interpolation_factor != 0.0) pos *= interp;
    float* row = ep + s * dim;
    for (int64_t i = 0; i < half; ++i) {
      const float f = pos * inv[i];
      if (o.rotary_interleaved) {
        row[2 * i] = row[2 * i + 1] = f;
      } else {
        row[i] = row[i + half] = f;
      }
    }
  }
  return emb;
}

Tensor apply_rotary_pos_emb(const Tensor& t, const Tensor& freqs, bool rotary_interleaved,
                            double mscale) {
  return rope<false>(t, freqs, rotary_interleaved, mscale, "apply_rotary_pos_emb");
}

Tensor apply_rotary_pos_emb_backward(const Tensor& grad_out, const Tensor& freqs,
                                     bool rotary_interleaved, double mscale) {
  return rope<true>(grad_out, freqs, rotary_interleaved, mscale, "apply_rotary_pos_emb_backward");
}

}  // namespace mcore::ops
