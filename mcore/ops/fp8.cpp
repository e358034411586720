#include "mcore/ops/fp8.h"

#include <cmath>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_check.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/fp8_cuda.h"
#endif

namespace mcore::ops {

namespace {

float scalar_of(const Tensor& s, const char* op, const char* what) {
  check_cpu({s}, op);
  MCORE_CHECK(s.numel() == 1 && s.dtype() == DType::F32)
      << op << ": " << what << " must be a one-element float32 tensor, got " << s.dtype() << " "
      << shape_str(s.shape());
  return s.contiguous().data<float>()[0];
}

// Chunks of a fixed size, each with its own amax, combined in order: deterministic.
constexpr int64_t kChunk = 1 << 14;

template <class T>
float quantize_kernel(const T* x, uint8_t* q, int64_t n, float scale, Fp8Format format) {
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<float> amax(static_cast<size_t>(nchunks), 0.0f);
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    float m = 0.0f;
    for (int64_t i = c * kChunk; i < end; ++i) {
      const float v = static_cast<float>(x[i]);
      const float a = std::fabs(v);
      m = a > m ? a : m;  // a NaN never wins (fmaxf semantics)
      q[i] = float_to_fp8_bits(v * scale, format, /*saturate=*/true);
    }
    amax[c] = m;
  }
  float m = 0.0f;
  for (float a : amax) m = a > m ? a : m;
  return m;
}

template <class T>
void dequantize_kernel(const uint8_t* q, T* out, int64_t n, float scale_inv, Fp8Format format) {
  float lut[256];  // every fp8 value times scale_inv: one table lookup per element
  for (int b = 0; b < 256; ++b)
    lut[b] = fp8_bits_to_float(static_cast<uint8_t>(b), format) * scale_inv;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = store<T>(lut[q[i]]);
}

}  // namespace

Fp8Quantized fp8_quantize(const Tensor& x, float scale, Fp8Format format) {
#ifdef MCORE_WITH_CUDA
  if (x.defined() && x.device().is_cuda()) return cuda::fp8_quantize(x, scale, format);
#endif
  check_cpu({x}, "fp8_quantize");
  MCORE_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16 || x.dtype() == DType::F16)
      << "fp8_quantize: input of dtype " << x.dtype() << " (shape " << shape_str(x.shape())
      << "); expected float32, bfloat16 or float16";
  Tensor c = x.contiguous();
  Fp8Quantized r{empty(x.shape(), format == Fp8Format::kE4M3 ? DType::F8E4M3 : DType::F8E5M2),
                 empty({}, DType::F32)};
  uint8_t* q = static_cast<uint8_t*>(r.data.data_ptr());
  float amax = 0.0f;
  switch (x.dtype()) {
    case DType::BF16:
      amax = quantize_kernel(c.data<BFloat16>(), q, c.numel(), scale, format);
      break;
    case DType::F16:
      amax = quantize_kernel(c.data<Half>(), q, c.numel(), scale, format);
      break;
    default:
      amax = quantize_kernel(c.data<float>(), q, c.numel(), scale, format);
      break;
  }
  r.amax.data<float>()[0] = amax;
  return r;
}

Fp8Quantized fp8_quantize(const Tensor& x, const Tensor& scale, Fp8Format format) {
#ifdef MCORE_WITH_CUDA
  if (x.defined() && x.device().is_cuda()) return cuda::fp8_quantize(x, scale, format);
#endif
  return fp8_quantize(x, scalar_of(scale, "fp8_quantize", "scale"), format);
}

Tensor fp8_dequantize(const Tensor& data, float scale_inv, DType out_dtype) {
#ifdef MCORE_WITH_CUDA
  if (data.defined() && data.device().is_cuda())
    return cuda::fp8_dequantize(data, scale_inv, out_dtype);
#endif
  check_cpu({data}, "fp8_dequantize");
  MCORE_CHECK(data.dtype() == DType::F8E4M3 || data.dtype() == DType::F8E5M2)
      << "fp8_dequantize: data of dtype " << data.dtype() << " (shape " << shape_str(data.shape())
      << "); expected float8_e4m3fn or float8_e5m2";
  const Fp8Format format = data.dtype() == DType::F8E4M3 ? Fp8Format::kE4M3 : Fp8Format::kE5M2;
  Tensor c = data.contiguous();
  Tensor out = empty(data.shape(), out_dtype);
  const uint8_t* q = static_cast<const uint8_t*>(c.data_ptr());
  switch (out_dtype) {
    case DType::F32:
      dequantize_kernel(q, out.data<float>(), c.numel(), scale_inv, format);
      break;
    case DType::BF16:
      dequantize_kernel(q, out.data<BFloat16>(), c.numel(), scale_inv, format);
      break;
    case DType::F16:
      dequantize_kernel(q, out.data<Half>(), c.numel(), scale_inv, format);
      break;
    default:
      MCORE_FAIL() << "fp8_dequantize: output dtype " << out_dtype << " for data of shape "
                   << shape_str(data.shape()) << "; expected float32, bfloat16 or float16";
  }
  return out;
}

Tensor fp8_dequantize(const Tensor& data, const Tensor& scale_inv, DType out_dtype) {
#ifdef MCORE_WITH_CUDA
  if (data.defined() && data.device().is_cuda())
    return cuda::fp8_dequantize(data, scale_inv, out_dtype);
#endif
  return fp8_dequantize(data, scalar_of(scale_inv, "fp8_dequantize", "scale_inv"), out_dtype);
}

}  // namespace mcore::ops
