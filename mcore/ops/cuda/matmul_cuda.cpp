// cuBLASLt GEMMs for mcore's row-major tensors. cuBLAS is column-major, so C = op(a) @ op(b)
// runs as C^T = op(b)^T @ op(a)^T: cuBLASLt's A is our b, its B our a, m = N, n = M, and the
// row-major C [.., M, N] is exactly its column-major D (N x M, ld N). An operand stored row-major
// with leading dimension ld is, column-major, its own transpose with that ld; one stored
// column-major (a transposed view) is read as it is. So every view whose last two dims have a
// unit stride is used in place, and the cuBLAS transpose flag is (logical transpose) XOR
// (column-major storage).
#include <cublasLt.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "mcore/ops/activation.h"
#include "mcore/ops/cuda/matmul_cuda.h"
#include "mcore/ops/elementwise.h"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/factory.h"

#define MCORE_CUBLASLT_CHECK(expr)                                             \
  do {                                                                         \
    cublasStatus_t mcore_lt_st_ = (expr);                                      \
    MCORE_CHECK(mcore_lt_st_ == CUBLAS_STATUS_SUCCESS)                         \
        << #expr << " failed: " << cublasLtGetStatusName(mcore_lt_st_) << ": " \
        << cublasLtGetStatusString(mcore_lt_st_);                              \
  } while (0)

namespace mcore::ops::cuda {

namespace {

using mcore::cuda::current_stream;
using mcore::cuda::DeviceGuard;

// Hopper's recommended cuBLASLt workspace; taken from the caching allocator per call (a cache
// hit after the first GEMM on a stream).
constexpr int64_t kWorkspaceBytes = int64_t{32} << 20;

cublasLtHandle_t lt_handle(int device) {
  static std::mutex mu;
  static std::vector<cublasLtHandle_t>* handles = new std::vector<cublasLtHandle_t>;  // never freed
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<size_t>(device) >= handles->size()) handles->resize(device + 1, nullptr);
  if (!(*handles)[device]) {
    DeviceGuard guard(device);
    MCORE_CUBLASLT_CHECK(cublasLtCreate(&(*handles)[device]));
  }
  return (*handles)[device];
}

int compute_capability(int device) {
  int major = 0, minor = 0;
  MCORE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  MCORE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

cudaDataType_t cuda_type(DType d) {
  switch (d) {
    case DType::F64:
      return CUDA_R_64F;
    case DType::F32:
      return CUDA_R_32F;
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
    case DType::F8E4M3:
      return CUDA_R_8F_E4M3;
    case DType::F8E5M2:
      return CUDA_R_8F_E5M2;
    default:
      break;
  }
  MCORE_FAIL() << "CUDA matmul: unsupported dtype " << d;
  throw 0;  // unreachable
}

// Largest power of two (<= 256) dividing the address: cuBLASLt picks kernels by alignment.
int64_t alignment(uintptr_t address) {
  int64_t a = 256;
  while (a > 1 && address % a) a /= 2;
  return a;
}

// One operand in cuBLAS terms: the stored column-major matrix (rows x cols, ld), the op to
// apply, and the element stride between batch entries (0: one matrix shared by the batch).
struct Operand {
  Tensor t;  // keeps a staged copy alive
  const void* ptr = nullptr;
  bool trans = false;
  int64_t rows = 0, cols = 0, ld = 0, batch_stride = 0;
};

// How the last two dims of t read as a BLAS matrix: row-major (unit stride on the last dim) or
// column-major (unit stride on the one before), with its leading dimension.
bool matrix_layout(const Tensor& t, bool* col_major, int64_t* ld) {
  const int64_t d = t.dim();
  const int64_t r = t.size(d - 2), c = t.size(d - 1);
  const int64_t sr = t.stride(d - 2), sc = t.stride(d - 1);
  if (sc == 1 || c == 1) {
    *ld = r > 1 ? sr : std::max<int64_t>(c, 1);
    *col_major = false;
    if (*ld >= std::max<int64_t>(c, 1)) return true;
  }
  if (sr == 1 || r == 1) {
    *ld = c > 1 ? sc : std::max<int64_t>(r, 1);
    *col_major = true;
    if (*ld >= std::max<int64_t>(r, 1)) return true;
  }
  return false;
}

// The batch dims as one stride (they must step evenly through memory).
bool batch_layout(const Tensor& t, int64_t* stride) {
  *stride = 0;
  int64_t expect = -1;
  for (int64_t d = t.dim() - 3; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (expect < 0) {
      *stride = t.stride(d);
    } else if (t.stride(d) != expect) {
      return false;
    }
    expect = t.stride(d) * t.size(d);
  }
  return true;
}

Operand make_operand(const Tensor& t, bool logical_trans) {
  Operand op;
  op.t = t;
  bool cm = false;
  if (!matrix_layout(op.t, &cm, &op.ld) || !batch_layout(op.t, &op.batch_stride)) {
    op.t = t.clone();  // contiguous, unit strides
    matrix_layout(op.t, &cm, &op.ld);
    batch_layout(op.t, &op.batch_stride);
  }
  const int64_t d = op.t.dim();
  const int64_t r = op.t.size(d - 2), c = op.t.size(d - 1);
  op.rows = cm ? r : c;
  op.cols = cm ? c : r;
  op.trans = logical_trans != cm;
  op.ptr = op.t.data_ptr();
  return op;
}

// The same values stored in the other order (flips Operand::trans): FP8 GEMMs accept one
// layout only.
Operand flip_layout(const Tensor& t, bool logical_trans) {
  NoGradGuard no_grad;
  // A column-major view (e.g. w.t()) is already "transpose-contiguous": the transpose trick
  // below would return it unchanged, so make it row-major instead.
  bool cm = false;
  int64_t ld = 0;
  const bool in_place = matrix_layout(t, &cm, &ld);
  Tensor flipped =
      in_place && cm ? t.contiguous() : t.transpose(-1, -2).contiguous().transpose(-1, -2);
  return make_operand(flipped, logical_trans);
}

template <class T, void (*Destroy)(T)>
struct LtDeleter {
  void operator()(T p) const {
    if (p) Destroy(p);
  }
};
void destroy_desc(cublasLtMatmulDesc_t d) {
  (void)cublasLtMatmulDescDestroy(d);
}
void destroy_layout(cublasLtMatrixLayout_t l) {
  (void)cublasLtMatrixLayoutDestroy(l);
}
void destroy_pref(cublasLtMatmulPreference_t p) {
  (void)cublasLtMatmulPreferenceDestroy(p);
}
using DescPtr = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulDesc_t>,
                                LtDeleter<cublasLtMatmulDesc_t, destroy_desc>>;
using LayoutPtr = std::unique_ptr<std::remove_pointer_t<cublasLtMatrixLayout_t>,
                                  LtDeleter<cublasLtMatrixLayout_t, destroy_layout>>;
using PrefPtr = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                                LtDeleter<cublasLtMatmulPreference_t, destroy_pref>>;

LayoutPtr make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                      int64_t batch_stride) {
  cublasLtMatrixLayout_t l = nullptr;
  MCORE_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
  LayoutPtr out(l);
  if (batch > 1) {
    int32_t count = static_cast<int32_t>(batch);
    MCORE_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                          &count, sizeof(count)));
    MCORE_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
        l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof(batch_stride)));
  }
  return out;
}

// Everything one cublasLtMatmul needs; the key of the algorithm cache is derived from it.
struct Problem {
  int device = 0;
  Operand a, b;  // cuBLASLt's A (our b) and B (our a)
  DType a_type = DType::F32, b_type = DType::F32, c_type = DType::F32;
  void* c = nullptr;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  double alpha = 1.0, beta = 0.0;
};

std::vector<int64_t> cache_key(const Problem& p, const int64_t align[4]) {
  std::vector<int64_t> key = {p.device,
                              static_cast<int64_t>(p.a_type),
                              static_cast<int64_t>(p.b_type),
                              static_cast<int64_t>(p.c_type),
                              static_cast<int64_t>(p.compute),
                              static_cast<int64_t>(p.epilogue),
                              p.m,
                              p.n,
                              p.k,
                              p.batch,
                              p.a.trans,
                              p.a.ld,
                              p.a.batch_stride,
                              p.b.trans,
                              p.b.ld,
                              p.b.batch_stride,
                              p.beta != 0.0,
                              p.bias ? alignment(reinterpret_cast<uintptr_t>(p.bias)) : 0};
  key.insert(key.end(), align, align + 4);
  return key;
}

// Runs the GEMM; returns false (nothing launched) when cuBLASLt has no algorithm for it and
// `may_fail` (the caller then falls back to an unfused form).
bool run(const Problem& p, bool may_fail) {
  DeviceGuard guard(p.device);
  cublasLtHandle_t handle = lt_handle(p.device);
  const bool f64 = p.compute == CUBLAS_COMPUTE_64F;
  const cudaDataType_t scale_type = f64 ? CUDA_R_64F : CUDA_R_32F;
  cublasLtMatmulDesc_t raw_desc = nullptr;
  MCORE_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&raw_desc, p.compute, scale_type));
  DescPtr desc(raw_desc);
  const cublasOperation_t ta = p.a.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = p.b.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  MCORE_CUBLASLT_CHECK(
      cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  MCORE_CUBLASLT_CHECK(
      cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (p.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    MCORE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                        &p.epilogue, sizeof(p.epilogue)));
  }
  if (p.bias) {
    MCORE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &p.bias, sizeof(p.bias)));
  }
  const cudaDataType_t ct = cuda_type(p.c_type);
  LayoutPtr la =
      make_layout(cuda_type(p.a_type), p.a.rows, p.a.cols, p.a.ld, p.batch, p.a.batch_stride);
  LayoutPtr lb =
      make_layout(cuda_type(p.b_type), p.b.rows, p.b.cols, p.b.ld, p.batch, p.b.batch_stride);
  LayoutPtr lc = make_layout(ct, p.m, p.n, p.m, p.batch, p.m * p.n);

  const int64_t c_size = static_cast<int64_t>(dtype_size(p.c_type));
  auto operand_align = [&](const Operand& o, DType type) {
    int64_t al = alignment(reinterpret_cast<uintptr_t>(o.ptr));
    const int64_t esize = static_cast<int64_t>(dtype_size(type));
    if (p.batch > 1 && o.batch_stride)
      al = std::min(al, alignment(static_cast<uintptr_t>(o.batch_stride * esize)));
    return al;
  };
  int64_t align[4] = {operand_align(p.a, p.a_type), operand_align(p.b, p.b_type),
                      alignment(reinterpret_cast<uintptr_t>(p.c)), 0};
  if (p.batch > 1) align[2] = std::min(align[2], alignment(p.m * p.n * c_size));
  align[3] = align[2];

  Tensor workspace = empty({kWorkspaceBytes}, {DType::U8, Device::cuda(p.device)});
  cublasLtMatmulAlgo_t algo;
  const std::vector<int64_t> key = cache_key(p, align);
  static std::mutex cache_mu;
  static auto* cache = new std::map<std::vector<int64_t>, cublasLtMatmulAlgo_t>;  // never freed
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache->find(key);
    if (it != cache->end()) {
      algo = it->second;
      cached = true;
    }
  }
  if (!cached) {
    cublasLtMatmulPreference_t raw_pref = nullptr;
    MCORE_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
    PrefPtr pref(raw_pref);
    const uint64_t ws = static_cast<uint64_t>(kWorkspaceBytes);
    MCORE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
        raw_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; ++i) {
      const uint32_t v = static_cast<uint32_t>(align[i]);
      MCORE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, attrs[i], &v, sizeof(v)));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        handle, raw_desc, la.get(), lb.get(), lc.get(), lc.get(), raw_pref, 1, &result, &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      if (may_fail) return false;
      MCORE_FAIL() << "CUDA matmul: cuBLASLt has no algorithm for " << p.b_type << " x " << p.a_type
                   << " GEMM (M=" << p.n << ", N=" << p.m << ", K=" << p.k << ", batch=" << p.batch
                   << ", out " << p.c_type << ", alignments " << align[1] << "/" << align[0] << "/"
                   << align[2] << " bytes): " << cublasLtGetStatusString(st)
                   << (p.a_type == DType::F8E4M3 || p.a_type == DType::F8E5M2
                           ? "; FP8 GEMMs need every dimension and leading dimension a multiple "
                             "of 16 and 16-byte aligned operands"
                           : "");
    }
    algo = result.algo;
    std::lock_guard<std::mutex> lock(cache_mu);
    (*cache)[key] = algo;
  }
  const float alpha_f = static_cast<float>(p.alpha), beta_f = static_cast<float>(p.beta);
  const void* alpha = f64 ? static_cast<const void*>(&p.alpha) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&p.beta) : &beta_f;
  MCORE_CUBLASLT_CHECK(cublasLtMatmul(handle, raw_desc, alpha, p.a.ptr, la.get(), p.b.ptr, lb.get(),
                                      beta, p.c, lc.get(), p.c, lc.get(), &algo,
                                      workspace.data_ptr(), static_cast<size_t>(kWorkspaceBytes),
                                      current_stream(p.device)));
  return true;
}

// m, n, k and the batch of c = op(a) @ op(b) (shapes already validated by matmul.cpp).
// `fp8`: cuBLASLt's FP8 kernels take A transposed and B not ("TN"), so operands stored the
// other way are restaged.
Problem make_problem(Tensor& c, const Tensor& a, const Tensor& b, bool ta, bool tb,
                     bool fp8 = false) {
  Problem p;
  p.device = c.device().index;
  const int64_t ad = a.dim();
  const int64_t m = ta ? a.size(ad - 1) : a.size(ad - 2);
  const int64_t k = ta ? a.size(ad - 2) : a.size(ad - 1);
  const int64_t n = c.size(-1);
  p.m = n;  // cuBLAS's m, n: the column-major view of c
  p.n = m;
  p.k = k;
  p.batch = m > 0 && n > 0 ? c.numel() / (m * n) : 0;
  p.a = make_operand(b, tb);
  p.b = make_operand(a, ta);
  if (fp8 && !p.a.trans) p.a = flip_layout(b, tb);
  if (fp8 && p.b.trans) p.b = flip_layout(a, ta);
  if (b.dim() == 2) p.a.batch_stride = 0;
  // A 2-D b shared by a batch whose rows of op(a) step evenly: one GEMM with n' = batch * M.
  if (p.batch > 1 && b.dim() == 2 && !p.b.trans && p.b.batch_stride == p.b.cols * p.b.ld) {
    p.b.cols *= p.batch;
    p.n *= p.batch;
    p.batch = 1;
  }
  p.c = c.data_ptr();
  p.a_type = b.dtype();
  p.b_type = a.dtype();
  p.c_type = c.dtype();
  switch (a.dtype()) {
    case DType::F64:
      p.compute = CUBLAS_COMPUTE_64F;
      break;
    case DType::F32:
      p.compute = mcore::cuda::allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    default:
      p.compute = CUBLAS_COMPUTE_32F;
      break;  // bf16/fp16/fp8: fp32 accumulation
  }
  return p;
}

// Degenerate sizes cuBLASLt should not see. Returns true when c is already final.
bool trivial(Tensor& c, int64_t k, double beta) {
  if (c.numel() == 0) return true;
  if (k > 0) return false;
  if (beta == 0.0) {
    c.zero_();
  } else {
    scale_(c, beta);
  }
  return true;
}

}  // namespace

void matmul_out(Tensor& c, const Tensor& a, const Tensor& b, bool ta, bool tb, double alpha,
                double beta) {
  DeviceGuard guard(c.device().index);
  Problem p = make_problem(c, a, b, ta, tb);
  if (trivial(c, p.k, beta)) return;
  p.alpha = alpha;
  p.beta = beta;
  run(p, false);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Shape shape(a.shape().begin(), a.shape().end() - 2);
  shape.push_back(ta ? a.size(-1) : a.size(-2));
  shape.push_back(tb ? b.size(-2) : b.size(-1));
  Tensor c = empty(shape, {a.dtype(), a.device()});
  matmul_out(c, a, b, ta, tb, 1.0, 0.0);
  return c;
}

Tensor matmul_fp8(const Tensor& a, double a_scale_inv, const Tensor& b, double b_scale_inv, bool ta,
                  bool tb, DType out_dtype) {
  const int device = a.device().index;
  const int cc = compute_capability(device);
  MCORE_CHECK(cc >= 89) << "matmul_fp8: FP8 GEMMs need compute capability 8.9 or newer (Ada, "
                           "Hopper); cuda:"
                        << device << " is sm_" << cc
                        << " (dequantize to bf16 and use matmul() instead)";
  const DType c_type = out_dtype == DType::BF16 || out_dtype == DType::F16 ? out_dtype : DType::F32;
  Shape shape(a.shape().begin(), a.shape().end() - 2);
  shape.push_back(ta ? a.size(-1) : a.size(-2));
  shape.push_back(tb ? b.size(-2) : b.size(-1));
  Tensor c = empty(shape, {c_type, a.device()});
  DeviceGuard guard(device);
  Problem p = make_problem(c, a, b, ta, tb, /*fp8=*/true);
  if (trivial(c, p.k, 0.0)) return c.to(out_dtype);
  p.alpha = a_scale_inv * b_scale_inv;  // dequantization folded into alpha (exact for fp32 out)
  run(p, false);
  return c.to(out_dtype);
}

Tensor matmul_bias_act(const Tensor& a, const Tensor& b, const Tensor& bias, MatmulActivation act,
                       bool ta, bool tb) {
  Tensor c = empty(
      [&] {
        Shape s(a.shape().begin(), a.shape().end() - 2);
        s.push_back(ta ? a.size(-1) : a.size(-2));
        s.push_back(tb ? b.size(-2) : b.size(-1));
        return s;
      }(),
      {a.dtype(), a.device()});
  DeviceGuard guard(c.device().index);
  Problem p = make_problem(c, a, b, ta, tb);
  const bool gelu = act == MatmulActivation::kGeluTanh;
  if (!trivial(c, p.k, 0.0)) {
    Tensor bias_c = bias.defined() ? bias.contiguous() : Tensor();
    if (a.dtype() != DType::F64) {
      p.bias = bias_c.defined() ? bias_c.data_ptr() : nullptr;
      p.epilogue = gelu ? (p.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                        : (p.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
      if (run(p, /*may_fail=*/true)) return c;
    }
    // No fused kernel: GEMM, then the epilogue as separate ops.
    p.bias = nullptr;
    p.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    run(p, false);
  }
  if (bias.defined()) add_(c, bias);
  if (gelu) c = gelu_forward(c, GeluApproximate::kTanh);
  return c;
}

}  // namespace mcore::ops::cuda
