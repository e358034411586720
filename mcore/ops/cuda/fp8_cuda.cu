// FP8 quantize (with amax) and dequantize on CUDA. The conversions are ports of
// mcore/base/float_types.cpp (float_to_fp8_bits with saturation, fp8_bits_to_float) rather than
// CUDA's __nv_cvt_float_to_fp8, whose NaN encodings differ from the CPU's canonical ones.
// amax: each block reduces its elements, then one atomicMax on the float's bit pattern (exact for
// non-negative floats, so the result is deterministic; no float atomics).
#include <math_constants.h>

#include <cstdint>

#include "mcore/ops/cuda/fp8_cuda.h"
#include "mcore/ops/cuda/launch_util.cuh"
#include "mcore/ops/cuda/optim_pack.cuh"
#include "mcore/ops/cuda/scalar_cast.cuh"
#include "mcore/tensor/cuda/convert.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

constexpr int kThreads = 256;

// The conversions are the copy kernels' (bit-identical to float_types.cpp).
template <bool kE4M3>
__device__ __forceinline__ uint8_t to_fp8_sat(float f) {
  return mcore::cuda::dev::float_to_fp8<kE4M3>(f, /*saturate=*/true);
}
template <bool kE4M3>
__device__ __forceinline__ float from_fp8(uint8_t b) {
  return mcore::cuda::dev::fp8_to_float<kE4M3>(b);
}

// x * scale with x86's NaN propagation (the first NaN operand, sign kept), so that the NaN code's
// sign bit matches the CPU's.
__device__ __forceinline__ float scaled(float x, float scale) {
  return isnan(x) ? x : (isnan(scale) ? scale : x * scale);
}

__device__ __forceinline__ float max_ignore_nan(float m, float a) {
  return a > m ? a : m;  // a NaN never wins (fmaxf semantics, as the CPU)
}

template <class T, bool kE4M3>
__global__ void quantize_kernel(const T* __restrict__ x, uint8_t* __restrict__ q, int64_t n,
                                const float* __restrict__ scale_ptr, float scale_value, bool vec,
                                unsigned* __restrict__ amax_bits) {
  const float scale = scale_ptr ? *scale_ptr : scale_value;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  float m = 0.f;
  int64_t start = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      const Pack4<T> xx = reinterpret_cast<const Pack4<T>*>(x)[i];
      uchar4 out;
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        v[e] = to_float(xx.v[e]);
        m = max_ignore_nan(m, fabsf(v[e]));
      }
      out.x = to_fp8_sat<kE4M3>(scaled(v[0], scale));
      out.y = to_fp8_sat<kE4M3>(scaled(v[1], scale));
      out.z = to_fp8_sat<kE4M3>(scaled(v[2], scale));
      out.w = to_fp8_sat<kE4M3>(scaled(v[3], scale));
      reinterpret_cast<uchar4*>(q)[i] = out;
    }
    start = n4 * 4;
  }
  for (int64_t i = start + tid; i < n; i += stride) {
    const float v = to_float(x[i]);
    m = max_ignore_nan(m, fabsf(v));
    q[i] = to_fp8_sat<kE4M3>(scaled(v, scale));
  }
  // Block max, then one integer atomicMax: non-negative floats order like their bit patterns.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = max_ignore_nan(m, __shfl_xor_sync(0xffffffffu, m, o));
  __shared__ float warp_max[kThreads / 32];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float bm = 0.f;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w)
      bm = max_ignore_nan(bm, warp_max[w]);
    atomicMax(amax_bits, __float_as_uint(bm));
  }
}

template <class T, bool kE4M3>
__global__ void dequantize_kernel(const uint8_t* __restrict__ q, T* __restrict__ out, int64_t n,
                                  const float* __restrict__ scale_ptr, float scale_value) {
  const float scale_inv = scale_ptr ? *scale_ptr : scale_value;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = tid; i < n; i += stride) {
    // x86 returns a NaN operand unchanged where the GPU would write its canonical 0x7fffffff: keep
    // the CPU's bits.
    const float v = from_fp8<kE4M3>(q[i]);
    out[i] = from_float<T>(isnan(v) ? v : v * scale_inv);
  }
}

// A one-element float32 scale: its device pointer when on `dev`, else its host value.
const float* scale_source(const Tensor& s, const Device& dev, float* host_value, Tensor& holder,
                          const char* op, const char* what) {
  MCORE_CHECK(s.defined() && s.numel() == 1 && s.dtype() == DType::F32)
      << op << ": " << what << " must be a one-element float32 tensor, got "
      << (s.defined() ? dtype_name(s.dtype()) : "undefined") << " "
      << (s.defined() ? shape_str(s.shape()) : std::string());
  if (s.device().is_cpu()) {
    *host_value = s.contiguous().data<float>()[0];
    return nullptr;
  }
  MCORE_CHECK(s.device() == dev) << op << ": " << what << " on " << s.device()
                                 << " but the data on " << dev;
  holder = s.contiguous();
  return static_cast<const float*>(holder.data_ptr());
}

template <class T>
void launch_quantize(const Tensor& x, Tensor& q, const float* sp, float sv, Fp8Format format,
                     unsigned* amax) {
  const int64_t n = x.numel();
  const T* xp = dev_ptr<const T>(x);
  uint8_t* qp = static_cast<uint8_t*>(q.data_ptr());
  const bool vec = aligned4(xp) && reinterpret_cast<uintptr_t>(qp) % 4 == 0;
  const unsigned grid = grid_for(ceil_div(n, 4), kThreads, 4096);
  cudaStream_t stream = mcore::cuda::current_stream();
  if (format == Fp8Format::kE4M3) {
    quantize_kernel<T, true><<<grid, kThreads, 0, stream>>>(xp, qp, n, sp, sv, vec, amax);
  } else {
    quantize_kernel<T, false><<<grid, kThreads, 0, stream>>>(xp, qp, n, sp, sv, vec, amax);
  }
  MCORE_CUDA_CHECK_LAUNCH("quantize_kernel");
}

template <class T>
void launch_dequantize(const Tensor& data, Tensor& out, const float* sp, float sv) {
  const int64_t n = data.numel();
  const uint8_t* qp = static_cast<const uint8_t*>(data.data_ptr());
  T* op = dev_ptr<T>(out);
  const unsigned grid = grid_for(n, kThreads);
  cudaStream_t stream = mcore::cuda::current_stream();
  if (data.dtype() == DType::F8E4M3) {
    dequantize_kernel<T, true><<<grid, kThreads, 0, stream>>>(qp, op, n, sp, sv);
  } else {
    dequantize_kernel<T, false><<<grid, kThreads, 0, stream>>>(qp, op, n, sp, sv);
  }
  MCORE_CUDA_CHECK_LAUNCH("dequantize_kernel");
}

Fp8Quantized quantize(const Tensor& x_in, const float* sp, float sv, Fp8Format format) {
  MCORE_CHECK(x_in.dtype() == DType::F32 || x_in.dtype() == DType::BF16 ||
              x_in.dtype() == DType::F16)
      << "fp8_quantize: input of dtype " << x_in.dtype() << " (shape " << shape_str(x_in.shape())
      << "); expected float32, bfloat16 or float16";
  const Tensor x = x_in.contiguous();
  Fp8Quantized r{
      empty(x.shape(), {format == Fp8Format::kE4M3 ? DType::F8E4M3 : DType::F8E5M2, x.device()}),
      empty({}, {DType::F32, x.device()})};
  cudaStream_t stream = mcore::cuda::current_stream();
  unsigned* amax = static_cast<unsigned*>(r.amax.data_ptr());
  MCORE_CUDA_CHECK(cudaMemsetAsync(amax, 0, sizeof(float), stream));  // bits of +0.0f
  if (x.numel() == 0) return r;
  switch (x.dtype()) {
    case DType::BF16:
      launch_quantize<__nv_bfloat16>(x, r.data, sp, sv, format, amax);
      break;
    case DType::F16:
      launch_quantize<__half>(x, r.data, sp, sv, format, amax);
      break;
    default:
      launch_quantize<float>(x, r.data, sp, sv, format, amax);
      break;
  }
  return r;
}

Tensor dequantize(const Tensor& data_in, const float* sp, float sv, DType out_dtype) {
  MCORE_CHECK(data_in.dtype() == DType::F8E4M3 || data_in.dtype() == DType::F8E5M2)
      << "fp8_dequantize: data of dtype " << data_in.dtype() << " (shape "
      << shape_str(data_in.shape()) << "); expected float8_e4m3fn or float8_e5m2";
  MCORE_CHECK(out_dtype == DType::F32 || out_dtype == DType::BF16 || out_dtype == DType::F16)
      << "fp8_dequantize: output dtype " << out_dtype << " for data of shape "
      << shape_str(data_in.shape()) << "; expected float32, bfloat16 or float16";
  const Tensor data = data_in.contiguous();
  Tensor out = empty(data.shape(), {out_dtype, data.device()});
  if (data.numel() == 0) return out;
  switch (out_dtype) {
    case DType::BF16:
      launch_dequantize<__nv_bfloat16>(data, out, sp, sv);
      break;
    case DType::F16:
      launch_dequantize<__half>(data, out, sp, sv);
      break;
    default:
      launch_dequantize<float>(data, out, sp, sv);
      break;
  }
  return out;
}

}  // namespace

Fp8Quantized fp8_quantize(const Tensor& x, float scale, Fp8Format format) {
  DeviceGuard guard(x.device());
  return quantize(x, nullptr, scale, format);
}

Fp8Quantized fp8_quantize(const Tensor& x, const Tensor& scale, Fp8Format format) {
  DeviceGuard guard(x.device());
  float host = 0.f;
  Tensor holder;
  const float* sp = scale_source(scale, x.device(), &host, holder, "fp8_quantize", "scale");
  return quantize(x, sp, host, format);
}

Tensor fp8_dequantize(const Tensor& data, float scale_inv, DType out_dtype) {
  DeviceGuard guard(data.device());
  return dequantize(data, nullptr, scale_inv, out_dtype);
}

Tensor fp8_dequantize(const Tensor& data, const Tensor& scale_inv, DType out_dtype) {
  DeviceGuard guard(data.device());
  float host = 0.f;
  Tensor holder;
  const float* sp =
      scale_source(scale_inv, data.device(), &host, holder, "fp8_dequantize", "scale_inv");
  return dequantize(data, sp, host, out_dtype);
}

}  // namespace mcore::ops::cuda
