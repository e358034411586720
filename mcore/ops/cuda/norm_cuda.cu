#include "mcore/ops/cuda/norm_cuda.h"

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

// Forward over rows of h elements, N elements per pack (1: scalar path). The same corrected
// two-pass statistics as the CPU kernel: mean, then the deviations' sum and square sum (the
// deviations' own mean corrects the first mean's rounding). The passes after the first re-read
// the row from L1/L2.
template <class T, int N, bool kLayerNorm>
__global__ void norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                    const T* __restrict__ b, T* __restrict__ y,
                                    float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                    int64_t rows, int64_t h, float eps) {
  __shared__ float scratch[33];
  const int64_t packs = h / N;
  const float inv_h = 1.0f / static_cast<float>(h);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const T* xr = x + r * h;
    float mu = 0.0f;
    if constexpr (kLayerNorm) {
      float s = 0.0f;
      for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
        float f[N];
        load_pack<T, N>(xr + p * N, f);
#pragma unroll
        for (int i = 0; i < N; ++i) s += f[i];
      }
      mu = row_sum(s, scratch) * inv_h;
    }
    float sd = 0.0f, ss = 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float f[N];
      load_pack<T, N>(xr + p * N, f);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float d = f[i] - mu;
        sd += d;
        ss += d * d;
      }
    }
    ss = row_sum(ss, scratch);
    float var = ss * inv_h;
    if constexpr (kLayerNorm) {
      const float c = row_sum(sd, scratch) * inv_h;
      mu += c;
      var = fmaxf(var - c * c, 0.0f);
    }
    const float rs = 1.0f / sqrtf(var + eps);
    if (threadIdx.x == 0) {
      if constexpr (kLayerNorm) mean_out[r] = mu;
      rstd_out[r] = rs;
    }
    T* yr = y + r * h;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float f[N], wf[N], o[N];
      load_pack<T, N>(xr + p * N, f);
      load_pack<T, N>(w + p * N, wf);
      if (kLayerNorm && b) {
        float bf[N];
        load_pack<T, N>(b + p * N, bf);
#pragma unroll
        for (int i = 0; i < N; ++i) o[i] = (f[i] - mu) * rs * wf[i] + bf[i];
      } else {
#pragma unroll
        for (int i = 0; i < N; ++i) o[i] = (f[i] - mu) * rs * wf[i];
      }
      store_pack<T, N>(yr + p * N, o);
    }
  }
}

// dx per row. With xhat = (x - mean) * rstd and g = dy * w (RMSNorm: mean = 0):
//   dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))   (RMSNorm drops the mean_j(g) term).
template <class T, int N, bool kLayerNorm>
__global__ void norm_backward_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                        const float* __restrict__ mean,
                                        const float* __restrict__ rstd, const T* __restrict__ w,
                                        T* __restrict__ dx, int64_t rows, int64_t h) {
  __shared__ float scratch[33];
  const int64_t packs = h / N;
  const float inv_h = 1.0f / static_cast<float>(h);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const T* dyr = dy + r * h;
    const T* xr = x + r * h;
    const float mu = kLayerNorm ? mean[r] : 0.0f, rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float d[N], xf[N], wf[N];
      load_pack<T, N>(dyr + p * N, d);
      load_pack<T, N>(xr + p * N, xf);
      load_pack<T, N>(w + p * N, wf);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float g = d[i] * wf[i];
        sg += g;
        sgx += g * (xf[i] - mu) * rs;
      }
    }
    const float mgx = row_sum(sgx, scratch) * inv_h;
    const float mg = kLayerNorm ? row_sum(sg, scratch) * inv_h : 0.0f;
    T* dxr = dx + r * h;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float d[N], xf[N], wf[N], o[N];
      load_pack<T, N>(dyr + p * N, d);
      load_pack<T, N>(xr + p * N, xf);
      load_pack<T, N>(w + p * N, wf);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float xh = (xf[i] - mu) * rs;
        o[i] = rs * (d[i] * wf[i] - mg - xh * mgx);
      }
      store_pack<T, N>(dxr + p * N, o);
    }
  }
}

constexpr int kColTile = 32, kRowThreads = 8;

// Column sums dweight = sum_rows(dy * xhat), dbias = sum_rows(dy) for a 32-column tile over
// one slice of rows (blockIdx.y of gridDim.y slices), into part[slice][0|1][h].
template <class T, bool kLayerNorm>
__global__ void norm_backward_wb_partial_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                const float* __restrict__ mean,
                                                const float* __restrict__ rstd,
                                                float* __restrict__ part, int64_t rows, int64_t h) {
  __shared__ float sw[kRowThreads][kColTile + 1], sb[kRowThreads][kColTile + 1];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t chunk = (rows + gridDim.y - 1) / gridDim.y;
  const int64_t r0 = blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
  float aw = 0.0f, ab = 0.0f;
  if (col < h) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowThreads) {
      const float d = to_float(dy[r * h + col]);
      const float mu = kLayerNorm ? mean[r] : 0.0f;
      aw += d * (to_float(x[r * h + col]) - mu) * rstd[r];
      ab += d;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && col < h) {
    float tw = 0.0f, tb = 0.0f;
#pragma unroll
    for (int k = 0; k < kRowThreads; ++k) {
      tw += sw[k][threadIdx.x];
      tb += sb[k][threadIdx.x];
    }
    float* p = part + static_cast<int64_t>(blockIdx.y) * 2 * h;
    p[col] = tw;
    p[h + col] = tb;
  }
}

// Adds the slices in slice order and rounds once.
template <class T>
__global__ void norm_backward_wb_final_kernel(const float* __restrict__ part, int slices,
                                              T* __restrict__ dw, T* __restrict__ db, int64_t h) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < h;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float tw = 0.0f, tb = 0.0f;
    for (int s = 0; s < slices; ++s) {
      tw += part[static_cast<int64_t>(s) * 2 * h + j];
      tb += part[static_cast<int64_t>(s) * 2 * h + h + j];
    }
    if (dw) dw[j] = from_float<T>(tw);
    if (db) db[j] = from_float<T>(tb);
  }
}

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

bool all_vectorizable(std::initializer_list<Tensor> ts, int64_t h) {
  for (const Tensor& t : ts) {
    if (t.defined() && !rows_vectorizable(t.data_ptr(), h, t.element_size())) return false;
  }
  return true;
}

template <bool kLayerNorm>
void forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Tensor& mean,
             Tensor& rstd, double eps, const char* op) {
  const int64_t h = x.size(-1), rows = h == 0 ? 0 : x.numel() / h;
  if (rows == 0) return;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(x.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const bool vec = all_vectorizable({x, w, b, y}, h);
    const RowPlan plan = plan_rows(rows, vec ? h / V : h);
    auto launch = [&](auto kern) {
      kern<<<plan.grid, plan.block, 0, stream>>>(ptr<T>(x), ptr<T>(w), ptr<T>(b), ptr<T>(y),
                                                 ptr<float>(mean), ptr<float>(rstd), rows, h,
                                                 static_cast<float>(eps));
    };
    if (vec) {
      launch(norm_forward_kernel<T, V, kLayerNorm>);
    } else {
      launch(norm_forward_kernel<T, 1, kLayerNorm>);
    }
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
}

template <bool kLayerNorm>
NormGrads backward(const Tensor& dy_in, const Tensor& x_in, const Tensor& mean_in,
                   const Tensor& rstd_in, const Tensor& w_in, bool has_bias, bool need_dx,
                   bool need_dweight, const char* op) {
  check_cuda_float(x_in.dtype(), op);
  const Tensor dy = dy_in.contiguous(), x = x_in.contiguous(), w = w_in.contiguous();
  const Tensor rstd = rstd_in.contiguous(), mean = kLayerNorm ? mean_in.contiguous() : Tensor();
  NormGrads out;
  const TensorOptions opts{x.dtype(), x.device()};
  if (need_dx) out.dx = empty(x.shape(), opts);
  if (need_dweight) out.dweight = empty(w.shape(), opts);
  if (has_bias) out.dbias = empty(w.shape(), opts);
  const int64_t h = x.size(-1), rows = h == 0 ? 0 : x.numel() / h;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(x.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    if (need_dx && rows > 0) {
      const bool vec = all_vectorizable({dy, x, w, out.dx}, h);
      const RowPlan plan = plan_rows(rows, vec ? h / V : h);
      auto launch = [&](auto kern) {
        kern<<<plan.grid, plan.block, 0, stream>>>(ptr<T>(dy), ptr<T>(x), ptr<float>(mean),
                                                   ptr<float>(rstd), ptr<T>(w), ptr<T>(out.dx),
                                                   rows, h);
      };
      if (vec) {
        launch(norm_backward_dx_kernel<T, V, kLayerNorm>);
      } else {
        launch(norm_backward_dx_kernel<T, 1, kLayerNorm>);
      }
      MCORE_CUDA_CHECK_LAUNCH(op);
    }
    if ((need_dweight || has_bias) && h > 0) {
      // Slices depend only on the shape, so the summation order (and result) is fixed.
      const int64_t tiles = (h + kColTile - 1) / kColTile;
      const int64_t slices =
          std::clamp<int64_t>(1024 / tiles, 1, std::max<int64_t>(1, (rows + 63) / 64));
      Tensor part = empty({slices, 2, h}, {DType::F32, x.device()});
      if (rows > 0) {
        norm_backward_wb_partial_kernel<T, kLayerNorm>
            <<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(slices)),
               dim3(kColTile, kRowThreads), 0, stream>>>(ptr<T>(dy), ptr<T>(x), ptr<float>(mean),
                                                         ptr<float>(rstd), ptr<float>(part), rows,
                                                         h);
        MCORE_CUDA_CHECK_LAUNCH(op);
      } else {
        MCORE_CUDA_CHECK(cudaMemsetAsync(part.data_ptr(), 0, part.nbytes(), stream));
      }
      norm_backward_wb_final_kernel<T><<<flat_blocks(h, 256), 256, 0, stream>>>(
          ptr<float>(part), static_cast<int>(slices), ptr<T>(out.dweight), ptr<T>(out.dbias), h);
      MCORE_CUDA_CHECK_LAUNCH(op);
    }
  });
  return out;
}

Shape rows_shape(const Tensor& x) {
  return Shape(x.shape().begin(), x.shape().end() - 1);
}

}  // namespace

LayerNormOutput layer_norm_forward(const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                                   double eps) {
  check_cuda_float(x_in.dtype(), "layer_norm");
  const Tensor x = x_in.contiguous();
  LayerNormOutput out;
  out.y = empty(x.shape(), {x.dtype(), x.device()});
  out.mean = empty(rows_shape(x), {DType::F32, x.device()});
  out.rstd = empty(rows_shape(x), {DType::F32, x.device()});
  forward<true>(x, weight.contiguous(), bias.defined() ? bias.contiguous() : Tensor(), out.y,
                out.mean, out.rstd, eps, "layer_norm");
  return out;
}

NormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor& weight, bool has_bias, bool need_dx,
                              bool need_dweight) {
  return backward<true>(dy, x, mean, rstd, weight, has_bias, need_dx, need_dweight,
                        "layer_norm_backward");
}

RMSNormOutput rms_norm_forward(const Tensor& x_in, const Tensor& weight, double eps) {
  check_cuda_float(x_in.dtype(), "rms_norm");
  const Tensor x = x_in.contiguous();
  RMSNormOutput out;
  out.y = empty(x.shape(), {x.dtype(), x.device()});
  out.rstd = empty(rows_shape(x), {DType::F32, x.device()});
  Tensor no_mean;
  forward<false>(x, weight.contiguous(), Tensor(), out.y, no_mean, out.rstd, eps, "rms_norm");
  return out;
}

NormGrads rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& rstd,
                            const Tensor& weight, bool need_dx, bool need_dweight) {
  return backward<false>(dy, x, Tensor(), rstd, weight, false, need_dx, need_dweight,
                         "rms_norm_backward");
}

}  // namespace mcore::ops::cuda
