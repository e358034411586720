// Multi-tensor passes on CUDA (see multi_tensor_cuda.h): a chunk table in device memory, one
// block per chunk, and for reductions a second single-block kernel that combines the per-chunk
// partials in chunk order. Every thread visits a fixed set of elements and the in-block trees
// have a fixed shape, so the float64 sums are reproducible; no float atomics anywhere.
#include <math_constants.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "mcore/ops/cuda/launch_util.cuh"
#include "mcore/ops/cuda/multi_tensor_cuda.h"
#include "mcore/ops/cuda/scalar_cast.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per block: 256 KiB of float32
constexpr int kThreads = 512;

enum ElemCode : int { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3 };

struct Chunk {
  void* p;
  int64_t n;
  int dtype;
  int pad;
};

int elem_code(DType d) {
  switch (d) {
    case DType::F32:
      return kF32;
    case DType::F64:
      return kF64;
    case DType::BF16:
      return kBF16;
    default:
      return kF16;
  }
}

// The list's chunk table, uploaded to the device. `keep` holds contiguous copies alive.
struct Table {
  std::vector<Chunk> host;
  Tensor device_table;
  std::vector<Tensor> keep;
  Device device;
  int64_t size() const { return static_cast<int64_t>(host.size()); }
};

// Validates the list (one CUDA device, dtypes in `allowed`, contiguity unless copies are
// allowed) and builds its table.
Table make_table(const std::vector<Tensor>& ts, std::initializer_list<DType> allowed,
                 bool copy_noncontiguous, const char* op) {
  Table t;
  t.device = ts.front().device();
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& x = ts[i];
    MCORE_CHECK(x.defined() && x.device() == t.device)
        << op << ": tensor " << i << " is on "
        << (x.defined() ? x.device().str() : std::string("nothing (undefined)"))
        << " but tensor 0 on " << t.device << "; all tensors of the list must be on one device";
    bool ok = false;
    for (DType d : allowed) ok = ok || x.dtype() == d;
    MCORE_CHECK(ok) << op << ": tensor " << i << " of shape " << shape_str(x.shape())
                    << " has unsupported dtype " << x.dtype();
    MCORE_CHECK(copy_noncontiguous || x.is_contiguous())
        << op << ": tensor " << i << " of shape " << shape_str(x.shape()) << " is not contiguous";
    const Tensor c = x.is_contiguous() ? x : x.contiguous();
    if (!x.is_contiguous()) t.keep.push_back(c);
    char* base = static_cast<char*>(c.data_ptr());
    for (int64_t s = 0; s < c.numel(); s += kChunk) {
      t.host.push_back({base + s * static_cast<int64_t>(c.element_size()),
                        std::min(kChunk, c.numel() - s), elem_code(c.dtype()), 0});
    }
  }
  if (!t.host.empty()) {
    const int64_t bytes = t.size() * static_cast<int64_t>(sizeof(Chunk));
    t.device_table = empty({bytes / 8}, {DType::I64, t.device});
    // Pageable source: the runtime stages it before returning, so `host` may die afterwards.
    MCORE_CUDA_CHECK(cudaMemcpyAsync(t.device_table.data_ptr(), t.host.data(),
                                     static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                                     mcore::cuda::current_stream()));
  }
  return t;
}

const Chunk* chunks_of(const Table& t) {
  return static_cast<const Chunk*>(t.device_table.data_ptr());
}

// ---- in-place passes -------------------------------------------------------------------------

template <class T>
__device__ bool unscale_span(T* g, int64_t n, float inv_scale, bool scale) {
  const T s = static_cast<T>(inv_scale);
  bool found = false;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const T v = g[i];
    found = found || !isfinite(v);
    if (scale) g[i] = v * s;
  }
  return found;
}

__global__ void unscale_kernel(const Chunk* chunks, float inv_scale, bool scale, int* found) {
  const Chunk c = chunks[blockIdx.x];
  const bool f = c.dtype == kF64 ? unscale_span(static_cast<double*>(c.p), c.n, inv_scale, scale)
                                 : unscale_span(static_cast<float*>(c.p), c.n, inv_scale, scale);
  // Every writer stores the same 1: the result does not depend on which block wins.
  if (__syncthreads_or(f) && threadIdx.x == 0) *found = 1;
}

template <class T>
__device__ void scale_span(T* g, int64_t n, float scale) {
  const T s = static_cast<T>(scale);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) g[i] = g[i] * s;
}

__global__ void scale_kernel(const Chunk* chunks, float scale) {
  const Chunk c = chunks[blockIdx.x];
  if (c.dtype == kF64) {
    scale_span(static_cast<double*>(c.p), c.n, scale);
  } else {
    scale_span(static_cast<float*>(c.p), c.n, scale);
  }
}

// ---- reductions ------------------------------------------------------------------------------

struct SumSquares {
  using Acc = double;
  static __device__ Acc init() { return 0.0; }
  static __device__ Acc elem(double x) { return x * x; }
  static __device__ Acc combine(Acc a, Acc b) { return a + b; }
};
// NaN wins over everything (in any order), so "any NaN" survives to the result.
struct MaxAbs {
  using Acc = double;
  static __device__ Acc init() { return 0.0; }
  static __device__ Acc elem(double x) { return fabs(x); }
  static __device__ Acc combine(Acc a, Acc b) {
    return (isnan(a) || isnan(b)) ? CUDART_NAN : (a > b ? a : b);
  }
};
struct CountZeros {
  using Acc = unsigned long long;
  static __device__ Acc init() { return 0; }
  static __device__ Acc elem(double x) { return x == 0.0 ? 1 : 0; }
  static __device__ Acc combine(Acc a, Acc b) { return a + b; }
};

template <class Op>
__device__ typename Op::Acc block_reduce(typename Op::Acc v) {
  using Acc = typename Op::Acc;
  __shared__ Acc warp_acc[kThreads / 32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = Op::combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) warp_acc[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? warp_acc[lane] : Op::init();
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = Op::combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;  // valid in thread 0
}

template <class Op, class T>
__device__ typename Op::Acc span_reduce(const T* p, int64_t n) {
  typename Op::Acc acc = Op::init();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    acc = Op::combine(acc, Op::elem(static_cast<double>(to_float(p[i]))));
  }
  return acc;
}
template <class Op>
__device__ typename Op::Acc span_reduce(const double* p, int64_t n) {
  typename Op::Acc acc = Op::init();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = Op::combine(acc, Op::elem(p[i]));
  return acc;
}

template <class Op>
__global__ void chunk_reduce_kernel(const Chunk* chunks, typename Op::Acc* partial) {
  const Chunk c = chunks[blockIdx.x];
  typename Op::Acc acc;
  switch (c.dtype) {
    case kF32:
      acc = span_reduce<Op>(static_cast<const float*>(c.p), c.n);
      break;
    case kF64:
      acc = span_reduce<Op>(static_cast<const double*>(c.p), c.n);
      break;
    case kBF16:
      acc = span_reduce<Op>(static_cast<const __nv_bfloat16*>(c.p), c.n);
      break;
    default:
      acc = span_reduce<Op>(static_cast<const __half*>(c.p), c.n);
      break;
  }
  acc = block_reduce<Op>(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: partials combined in a fixed order.
template <class Op>
__global__ void final_reduce_kernel(const typename Op::Acc* partial, int64_t n,
                                    typename Op::Acc* out) {
  typename Op::Acc acc = Op::init();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = Op::combine(acc, partial[i]);
  acc = block_reduce<Op>(acc);
  if (threadIdx.x == 0) *out = acc;
}

// Runs the two-stage reduction over the table and copies the result to the host.
template <class Op>
typename Op::Acc reduce(const Table& t) {
  using Acc = typename Op::Acc;
  if (t.host.empty()) return Acc{};  // 0 for every op
  cudaStream_t stream = mcore::cuda::current_stream();
  static_assert(sizeof(Acc) == 8, "partials are stored as 8-byte words");
  Tensor partial = empty({t.size() + 1}, {DType::I64, t.device});
  Acc* part = static_cast<Acc*>(partial.data_ptr());
  chunk_reduce_kernel<Op>
      <<<static_cast<unsigned>(t.size()), kThreads, 0, stream>>>(chunks_of(t), part);
  MCORE_CUDA_CHECK_LAUNCH("chunk_reduce_kernel");
  final_reduce_kernel<Op><<<1, kThreads, 0, stream>>>(part, t.size(), part + t.size());
  MCORE_CUDA_CHECK_LAUNCH("final_reduce_kernel");
  Acc result{};
  MCORE_CUDA_CHECK(
      cudaMemcpyAsync(&result, part + t.size(), sizeof(Acc), cudaMemcpyDeviceToHost, stream));
  MCORE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

}  // namespace

bool non_finite_check_and_unscale_(std::vector<Tensor>& grads, float inv_scale) {
  if (grads.empty()) return false;
  const char* op = "non_finite_check_and_unscale_";
  DeviceGuard guard(grads.front().device());
  const Table t = make_table(grads, {DType::F32, DType::F64}, false, op);
  if (t.host.empty()) return false;
  cudaStream_t stream = mcore::cuda::current_stream();
  Tensor flag = empty({1}, {DType::I32, t.device});
  MCORE_CUDA_CHECK(cudaMemsetAsync(flag.data_ptr(), 0, sizeof(int), stream));
  unscale_kernel<<<static_cast<unsigned>(t.size()), kThreads, 0, stream>>>(
      chunks_of(t), inv_scale, inv_scale != 1.0f, static_cast<int*>(flag.data_ptr()));
  MCORE_CUDA_CHECK_LAUNCH("unscale_kernel");
  int found = 0;
  MCORE_CUDA_CHECK(
      cudaMemcpyAsync(&found, flag.data_ptr(), sizeof(int), cudaMemcpyDeviceToHost, stream));
  MCORE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return found != 0;
}

void multi_tensor_scale_(std::vector<Tensor>& tensors, double scale) {
  if (tensors.empty()) return;
  DeviceGuard guard(tensors.front().device());
  const Table t = make_table(tensors, {DType::F32, DType::F64}, false, "multi_tensor_scale_");
  if (t.host.empty()) return;
  scale_kernel<<<static_cast<unsigned>(t.size()), kThreads, 0, mcore::cuda::current_stream()>>>(
      chunks_of(t), static_cast<float>(scale));
  MCORE_CUDA_CHECK_LAUNCH("scale_kernel");
}

double multi_tensor_max_abs(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return 0.0;
  DeviceGuard guard(tensors.front().device());
  return reduce<MaxAbs>(
      make_table(tensors, {DType::F32, DType::F64}, false, "multi_tensor_max_abs"));
}

int64_t multi_tensor_count_zeros(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return 0;
  DeviceGuard guard(tensors.front().device());
  return static_cast<int64_t>(reduce<CountZeros>(
      make_table(tensors, {DType::F32, DType::F64}, false, "multi_tensor_count_zeros")));
}

double multi_tensor_l2norm_squared(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return 0.0;
  DeviceGuard guard(tensors.front().device());
  return reduce<SumSquares>(make_table(tensors, {DType::F32, DType::F64, DType::BF16, DType::F16},
                                       true, "multi_tensor_l2norm_squared"));
}

}  // namespace mcore::ops::cuda
