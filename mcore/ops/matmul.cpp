#include "mcore/ops/matmul.h"

#include <algorithm>

#include <atomic>

#include "mcore/ops/activation.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/device_check.h"
#include "mcore/ops/device_route.h"
#include "mcore/ops/elementwise.h"
#include "mcore/tensor/factory.h"
#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/matmul_cuda.h"
#endif

namespace mcore::ops {

namespace {

// A 2-D operand as BLAS sees it: base pointer, leading dimension, and whether it must be read
// transposed relative to its logical (row-major) shape.
struct BlasOperand {
  const void* ptr;
  int64_t ld;
  bool trans;
};

// Makes the last two dims BLAS-compatible (unit stride on one of them); copies only if needed.
Tensor blas_compatible(const Tensor& t) {
  int64_t d = t.dim();
  if (t.stride(d - 1) == 1 && t.stride(d - 2) >= std::max<int64_t>(1, t.size(d - 1))) return t;
  if (t.stride(d - 2) == 1 && t.stride(d - 1) >= std::max<int64_t>(1, t.size(d - 2))) return t;
  return t.contiguous();
}

BlasOperand operand(const Tensor& t, int64_t batch_offset, bool logical_trans) {
  int64_t d = t.dim();
  const char* base = static_cast<const char*>(t.data_ptr()) + batch_offset * t.element_size();
  if (t.stride(d - 1) == 1 && t.stride(d - 2) >= std::max<int64_t>(1, t.size(d - 1)))
    return {base, t.stride(d - 2), logical_trans};
  return {base, t.stride(d - 1), !logical_trans};  // column-major storage: flip the transpose
}

template <class T>
void run_gemm(Tensor& c, const Tensor& a, const Tensor& b, bool ta, bool tb, double alpha,
              double beta) {
  const int64_t ad = a.dim(), bd = b.dim();
  const int64_t m = ta ? a.size(ad - 1) : a.size(ad - 2);
  const int64_t k = ta ? a.size(ad - 2) : a.size(ad - 1);
  const int64_t n = tb ? b.size(bd - 2) : b.size(bd - 1);
  const int64_t batch = c.numel() / std::max<int64_t>(1, m * n);
  T* cp = c.data<T>();
  if (k == 0) {
    // An empty sum: C = beta C, and with beta 0 C is not read (it may be uninitialized).
    if (beta == 0.0) {
      std::fill(cp, cp + c.numel(), T(0));
    } else {
      scale_(c, beta);
    }
    return;
  }
  // A 2-D b shared by a contiguous batch of a: one big GEMM with M' = batch * M.
  if (bd == 2 && ad > 2 && !ta && a.is_contiguous()) {
    BlasOperand ob = operand(b, 0, tb);
    cpu::gemm(false, ob.trans, batch * m, n, k, static_cast<T>(alpha), a.data<T>(), k,
              static_cast<const T*>(ob.ptr), ob.ld, static_cast<T>(beta), cp, n);
    return;
  }
  for (int64_t i = 0; i < batch; ++i) {
    // Offsets of batch i in each operand (batch dims may be strided views).
    auto batch_offset = [&](const Tensor& t) {
      if (t.dim() == 2) return t.offset() * 0;
      int64_t off = 0, rem = i;
      for (int64_t d = t.dim() - 3; d >= 0; --d) {
        off += (rem % t.size(d)) * t.stride(d);
        rem /= t.size(d);
      }
      return off;
    };
    BlasOperand oa = operand(a, batch_offset(a), ta);
    BlasOperand ob = operand(b, batch_offset(b), tb);
    cpu::gemm(oa.trans, ob.trans, m, n, k, static_cast<T>(alpha), static_cast<const T*>(oa.ptr),
              oa.ld, static_cast<const T*>(ob.ptr), ob.ld, static_cast<T>(beta), cp + i * m * n, n);
  }
}

Shape output_shape(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  MCORE_CHECK(a.dim() >= 2 && b.dim() >= 2)
      << "matmul: operands must be at least 2-d, got " << shape_str(a.shape()) << " and "
      << shape_str(b.shape());
  const int64_t ad = a.dim(), bd = b.dim();
  const int64_t m = ta ? a.size(ad - 1) : a.size(ad - 2);
  const int64_t ka = ta ? a.size(ad - 2) : a.size(ad - 1);
  const int64_t kb = tb ? b.size(bd - 1) : b.size(bd - 2);
  const int64_t n = tb ? b.size(bd - 2) : b.size(bd - 1);
  MCORE_CHECK(ka == kb) << "matmul: inner dimensions differ: " << shape_str(a.shape())
                        << (ta ? "^T" : "") << " @ " << shape_str(b.shape()) << (tb ? "^T" : "")
                        << " (" << ka << " vs " << kb << ")";
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  MCORE_CHECK(bd == 2 || batch_a == batch_b)
      << "matmul: batch dimensions differ: " << shape_str(a.shape()) << " @ "
      << shape_str(b.shape());
  Shape out = batch_a;
  out.push_back(m);
  out.push_back(n);
  return out;
}

}  // namespace

void matmul_out(Tensor& c, const Tensor& a, const Tensor& b, bool ta, bool tb, double alpha,
                double beta) {
  const bool gpu = on_cuda({c, a, b}, "matmul_out");
  MCORE_CHECK(a.dtype() == b.dtype() && a.dtype() == c.dtype())
      << "matmul_out: dtypes differ: " << a.dtype() << " " << shape_str(a.shape()) << ", "
      << b.dtype() << " " << shape_str(b.shape()) << ", out " << c.dtype();
  Shape expect = output_shape(a, b, ta, tb);
  MCORE_CHECK(c.shape() == expect && c.is_contiguous())
      << "matmul_out: output must be contiguous with shape " << shape_str(expect) << ", got "
      << shape_str(c.shape());
#ifdef MCORE_WITH_CUDA
  if (gpu) return cuda::matmul_out(c, a, b, ta, tb, alpha, beta);
#endif
  (void)gpu;
  Tensor ac = blas_compatible(a), bc = blas_compatible(b);
  if (c.dtype() == DType::F32) {
    run_gemm<float>(c, ac, bc, ta, tb, alpha, beta);
  } else if (c.dtype() == DType::F64) {
    run_gemm<double>(c, ac, bc, ta, tb, alpha, beta);
  } else {
    MCORE_FAIL() << "matmul_out: unsupported dtype " << c.dtype()
                 << " (float32/float64; narrow types go through matmul())";
  }
}

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const bool gpu = on_cuda({a, b}, "matmul");
  MCORE_CHECK(a.dtype() == b.dtype())
      << "matmul: dtype mismatch, " << a.dtype() << " " << shape_str(a.shape()) << " vs "
      << b.dtype() << " " << shape_str(b.shape());
  Shape shape = output_shape(a, b, ta, tb);
  DType dt = a.dtype();
#ifdef MCORE_WITH_CUDA
  if (gpu) {
    MCORE_CHECK(dt == DType::F32 || dt == DType::F64 || dt == DType::BF16 || dt == DType::F16)
        << "matmul: unsupported dtype " << dt << " (fp8 inputs go through matmul_fp8)";
    return cuda::matmul(a, b, ta, tb);
  }
#endif
  (void)gpu;
  if (dt == DType::F32 || dt == DType::F64) {
    Tensor c = empty(shape, dt);
    matmul_out(c, a, b, ta, tb);
    return c;
  }
  MCORE_CHECK(dt == DType::BF16 || dt == DType::F16)
      << "matmul: unsupported dtype " << dt << " (fp8 inputs go through matmul_fp8)";
  // fp32 accumulation, one rounding of the result.
  Tensor c = empty(shape, DType::F32);
  matmul_out(c, a.to(DType::F32), b.to(DType::F32), ta, tb);
  return c.to(dt);
}

Tensor matmul_fp8(const Tensor& a, double a_scale_inv, const Tensor& b, double b_scale_inv, bool ta,
                  bool tb, DType out_dtype) {
  auto is_fp8 = [](DType d) { return d == DType::F8E4M3 || d == DType::F8E5M2; };
  MCORE_CHECK(is_fp8(a.dtype()) && is_fp8(b.dtype()))
      << "matmul_fp8: operands must be float8_e4m3fn or float8_e5m2, got " << a.dtype() << " and "
      << b.dtype();
  MCORE_CHECK(!(a.dtype() == DType::F8E5M2 && b.dtype() == DType::F8E5M2))
      << "matmul_fp8: e5m2 x e5m2 is not a valid FP8 GEMM (one operand must be e4m3, as on "
         "Hopper)";
  Shape shape = output_shape(a, b, ta, tb);
  if (on_cuda({a, b}, "matmul_fp8")) {
#ifdef MCORE_WITH_CUDA
    return cuda::matmul_fp8(a, a_scale_inv, b, b_scale_inv, ta, tb, out_dtype);
#endif
  }
  Tensor c = empty(shape, DType::F32);
  matmul_out(c, a.to(DType::F32), b.to(DType::F32), ta, tb, a_scale_inv * b_scale_inv, 0.0);
  return c.to(out_dtype);
}

Tensor matmul_bias_act(const Tensor& a, const Tensor& b, const Tensor& bias, MatmulActivation act,
                       bool ta, bool tb) {
  const bool gpu = on_cuda({a, b}, "matmul_bias_act", {bias});
  Shape shape = output_shape(a, b, ta, tb);
  if (bias.defined()) {
    MCORE_CHECK(bias.dim() == 1 && bias.size(0) == shape.back() && bias.dtype() == a.dtype())
        << "matmul_bias_act: bias must be [" << shape.back() << "] of dtype " << a.dtype()
        << " for output " << shape_str(shape) << ", got " << bias.dtype() << " "
        << shape_str(bias.shape());
  }
#ifdef MCORE_WITH_CUDA
  if (gpu) return cuda::matmul_bias_act(a, b, bias, act, ta, tb);
#endif
  (void)gpu;
  if (bias.defined() && a.dtype() == DType::F32 && a.dim() == 2 && b.dim() == 2) {
    // The bias goes into the GEMM's store of C: one pass over the output instead of two.
    Tensor c = empty(shape, DType::F32);
    const Tensor ac = blas_compatible(a), bc = blas_compatible(b);
    const BlasOperand oa = operand(ac, 0, ta), ob = operand(bc, 0, tb);
    const Tensor bias_c = bias.contiguous();
    const int64_t k = ta ? a.size(0) : a.size(1);
    if (k == 0) {
      // No product: every row is the bias.
      c.copy_(bias_c.view({1, shape[1]}).expand(shape));
    } else {
      cpu::gemm_bias(oa.trans, ob.trans, shape[0], shape[1], k, 1.0f,
                     static_cast<const float*>(oa.ptr), oa.ld, static_cast<const float*>(ob.ptr),
                     ob.ld, bias_c.data<float>(), c.data<float>(), shape[1]);
    }
    if (act == MatmulActivation::kGeluTanh) c = gelu_forward(c, GeluApproximate::kTanh);
    return c;
  }
  Tensor c = matmul(a, b, ta, tb);
  if (bias.defined()) add_(c, bias);
  if (act == MatmulActivation::kGeluTanh) c = gelu_forward(c, GeluApproximate::kTanh);
  return c;
}

}  // namespace mcore::ops

namespace mcore::cuda {

namespace {
std::atomic<bool> g_allow_tf32{false};
}  // namespace

void set_allow_tf32(bool allow) {
  g_allow_tf32.store(allow, std::memory_order_relaxed);
}
bool allow_tf32() {
  return g_allow_tf32.load(std::memory_order_relaxed);
}

}  // namespace mcore::cuda
