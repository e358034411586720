#include "mcore/ops/cuda/cross_entropy_cuda.h"

#include <cstdio>
#include <limits>

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

// What one pass over the logits rows computes. Every pointer but the logits/targets is optional.
struct StatsArgs {
  int64_t rows = 0, vl = 0;  // rows and the (local) vocabulary of the logits
  int64_t start = 0;         // first global id of this shard
  int64_t vocab = 0;         // global vocabulary (targets are checked against it)
  int64_t ignore = std::numeric_limits<int64_t>::min();  // ignore_index (min(): none)
  const float* ext_max = nullptr;  // the row max, given (after an all-reduce), else computed
  bool max_only = false;           // pass 1: only the row max
  float* out_max = nullptr;
  float* stats = nullptr;  // [rows, width]: sum exp(x - max), target logit, (sum x)
  int width = 0;
  float* loss = nullptr;  // fused cross-entropy: loss and logsumexp
  float* lse = nullptr;
  const float* mask = nullptr;
};

// One pass over each row: each thread keeps a running max and a sum of exps relative to it,
// rescaled when a pack raises the max (about one exp per element), merged across the row.
template <class T, class I, int N>
__global__ void ce_stats_kernel(const T* __restrict__ x, const I* __restrict__ tgt, StatsArgs a) {
  __shared__ float scratch[33];
  const int64_t packs = a.vl / N;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; r < a.rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const T* xr = x + r * a.vl;
    float m = a.ext_max ? a.ext_max[r] : -INFINITY, s = 0.0f, tot = 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float f[N];
      load_pack<T, N>(xr + p * N, f);
      if (!a.ext_max) {
        float pm = f[0];
#pragma unroll
        for (int i = 1; i < N; ++i) pm = fmaxf(pm, f[i]);
        if (pm > m) {
          if (s != 0.0f) s *= expf(m - pm);
          m = pm;
        }
      }
      if (!a.max_only && m != -INFINITY) {
#pragma unroll
        for (int i = 0; i < N; ++i) s += expf(f[i] - m);
      }
      if (a.width > 2) {
#pragma unroll
        for (int i = 0; i < N; ++i) tot += f[i];
      }
    }
    float mx = m;
    if (!a.ext_max) {
      mx = row_max(m, scratch);
      if (!a.max_only) s = m == -INFINITY ? 0.0f : s * expf(m - mx);
    }
    if (!a.max_only) s = row_sum(s, scratch);
    if (a.width > 2) tot = row_sum(tot, scratch);
    if (threadIdx.x != 0) continue;
    if (a.out_max) a.out_max[r] = mx;
    if (a.max_only) continue;
    const int64_t t = static_cast<int64_t>(tgt[r]);
    if (t != a.ignore && (t < 0 || t >= a.vocab)) {
      printf(
          "cross_entropy: target %lld at flat index %lld is outside the vocabulary [0, %lld) "
          "(and is not ignore_index %lld)\n",
          static_cast<long long>(t), static_cast<long long>(r), static_cast<long long>(a.vocab),
          static_cast<long long>(a.ignore));
      __trap();
    }
    const int64_t local = t - a.start;
    const float tl = (t != a.ignore && local >= 0 && local < a.vl) ? to_float(xr[local]) : 0.0f;
    if (a.stats) {
      float* st = a.stats + r * a.width;
      st[0] = s;
      st[1] = tl;
      if (a.width > 2) st[2] = tot;
    }
    if (a.lse) {
      const float l = mx + logf(s);
      a.lse[r] = l;
      float v = t == a.ignore ? 0.0f : l - tl;
      if (a.mask) v *= a.mask[r];
      a.loss[r] = v;
    }
  }
}

struct BackwardArgs {
  int64_t rows = 0, vl = 0, start = 0;
  int64_t ignore = std::numeric_limits<int64_t>::min();
  const float* grad = nullptr;
  const float* lse = nullptr;
  const float* mask = nullptr;
  float spread = 0.0f, hit = 1.0f;  // label smoothing: smoothing / V and 1 - smoothing
};

// d = g * (exp(x - lse) - spread - hit * onehot(target)), g = grad * mask (0 when ignored).
template <class T, class I, int N>
__global__ void ce_backward_kernel(const T* __restrict__ x, const I* __restrict__ tgt,
                                   T* __restrict__ dx, BackwardArgs a) {
  const int64_t packs = a.vl / N;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; r < a.rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const T* xr = x + r * a.vl;
    T* dr = dx + r * a.vl;
    const int64_t t = static_cast<int64_t>(tgt[r]);
    const float g = t == a.ignore ? 0.0f : a.grad[r] * (a.mask ? a.mask[r] : 1.0f);
    const int64_t local = t == a.ignore ? -1 : t - a.start;
    const float l = a.lse[r];
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float f[N], o[N];
      if (g == 0.0f) {
#pragma unroll
        for (int i = 0; i < N; ++i) o[i] = 0.0f;
      } else {
        load_pack<T, N>(xr + p * N, f);
#pragma unroll
        for (int i = 0; i < N; ++i) {
          const float oh = p * N + i == local ? a.hit : 0.0f;
          o[i] = g * (expf(f[i] - l) - a.spread - oh);
        }
      }
      store_pack<T, N>(dr + p * N, o);
    }
  }
}

__global__ void finish_kernel(const float* __restrict__ mx, const float* __restrict__ stats,
                              const float* __restrict__ mask, float* __restrict__ loss,
                              float* __restrict__ lse, int64_t rows, int width, float sm,
                              float vocab) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < rows;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* st = stats + n * width;
    const float l = mx[n] + logf(st[0]);
    lse[n] = l;
    float v = l - st[1];
    if (width > 2) v = (1.0f - sm) * v + sm * (l - st[2] / vocab);
    if (mask) v *= mask[n];
    loss[n] = v;
  }
}

const float* fptr(const Tensor& t) {
  return t.defined() ? static_cast<const float*>(t.data_ptr()) : nullptr;
}

Tensor as_f32(const Tensor& t) {
  return t.defined() ? t.to(DType::F32).contiguous() : Tensor();
}

template <class Fn>
void dispatch_targets(DType dt, Fn&& fn) {
  if (dt == DType::I64) {
    fn(int64_t{});
  } else {
    fn(int32_t{});
  }
}

void run_stats(const Tensor& logits, const Tensor& target, StatsArgs a, const char* op) {
  if (a.rows == 0) return;
  MCORE_CHECK(a.vl > 0) << op << ": empty vocabulary in logits " << shape_str(logits.shape());
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(logits.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* xp = static_cast<const T*>(logits.data_ptr());
    const bool vec = rows_vectorizable(xp, a.vl, sizeof(T));
    const RowPlan plan = plan_rows(a.rows, vec ? a.vl / V : a.vl);
    dispatch_targets(target.dtype(), [&](auto tag) {
      using I = decltype(tag);
      const I* tp = static_cast<const I*>(target.data_ptr());
      if (vec) {
        ce_stats_kernel<T, I, V><<<plan.grid, plan.block, 0, stream>>>(xp, tp, a);
      } else {
        ce_stats_kernel<T, I, 1><<<plan.grid, plan.block, 0, stream>>>(xp, tp, a);
      }
    });
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
}

Tensor run_backward(const Tensor& logits, const Tensor& target, BackwardArgs a, const char* op) {
  Tensor dx = empty(logits.shape(), {logits.dtype(), logits.device()});
  if (a.rows == 0 || a.vl == 0) return dx;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(logits.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* xp = static_cast<const T*>(logits.data_ptr());
    T* dp = static_cast<T*>(dx.data_ptr());
    const bool vec =
        rows_vectorizable(xp, a.vl, sizeof(T)) && rows_vectorizable(dp, a.vl, sizeof(T));
    const RowPlan plan = plan_rows(a.rows, vec ? a.vl / V : a.vl);
    dispatch_targets(target.dtype(), [&](auto tag) {
      using I = decltype(tag);
      const I* tp = static_cast<const I*>(target.data_ptr());
      if (vec) {
        ce_backward_kernel<T, I, V><<<plan.grid, plan.block, 0, stream>>>(xp, tp, dp, a);
      } else {
        ce_backward_kernel<T, I, 1><<<plan.grid, plan.block, 0, stream>>>(xp, tp, dp, a);
      }
    });
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
  return dx;
}

Shape rows_shape(const Tensor& logits) {
  return Shape(logits.shape().begin(), logits.shape().end() - 1);
}

}  // namespace

CrossEntropyForwardResult cross_entropy_forward(const Tensor& logits_in, const Tensor& target_in,
                                                const Tensor& loss_mask, int64_t ignore_index) {
  const char* op = "cross_entropy_forward";
  check_cuda_float(logits_in.dtype(), op);
  const Tensor logits = logits_in.contiguous(), target = target_in.contiguous();
  const Tensor mask = as_f32(loss_mask);
  CrossEntropyForwardResult r;
  r.loss = empty(target.shape(), {DType::F32, logits.device()});
  r.logsumexp = empty(target.shape(), {DType::F32, logits.device()});
  StatsArgs a;
  a.rows = target.numel();
  a.vl = a.vocab = logits.size(-1);
  a.ignore = ignore_index;
  a.loss = static_cast<float*>(r.loss.data_ptr());
  a.lse = static_cast<float*>(r.logsumexp.data_ptr());
  a.mask = fptr(mask);
  run_stats(logits, target, a, op);
  return r;
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits_in,
                              const Tensor& target_in, const Tensor& logsumexp,
                              const Tensor& loss_mask, int64_t ignore_index) {
  const char* op = "cross_entropy_backward";
  check_cuda_float(logits_in.dtype(), op);
  const Tensor logits = logits_in.contiguous(), target = target_in.contiguous();
  const Tensor grad = as_f32(grad_loss), lse = as_f32(logsumexp), mask = as_f32(loss_mask);
  BackwardArgs a;
  a.rows = target.numel();
  a.vl = logits.size(-1);
  a.ignore = ignore_index;
  a.grad = fptr(grad);
  a.lse = fptr(lse);
  a.mask = fptr(mask);
  return run_backward(logits, target, a, op);
}

Tensor vocab_parallel_row_max(const Tensor& logits_in) {
  const char* op = "vocab_parallel_cross_entropy";
  check_cuda_float(logits_in.dtype(), op);
  const Tensor logits = logits_in.contiguous();
  Tensor mx = empty(rows_shape(logits), {DType::F32, logits.device()});
  StatsArgs a;
  a.rows = mx.numel();
  a.vl = logits.size(-1);
  a.max_only = true;
  a.out_max = static_cast<float*>(mx.data_ptr());
  // The targets are not read in this pass; any int tensor type satisfies the dispatch.
  run_stats(logits, empty({0}, {DType::I64, logits.device()}), a, op);
  return mx;
}

Tensor vocab_parallel_row_stats(const Tensor& logits_in, const Tensor& target_in,
                                const Tensor& row_max, int64_t vocab_start, int64_t vocab,
                                bool with_logit_sum) {
  const char* op = "vocab_parallel_cross_entropy";
  check_cuda_float(logits_in.dtype(), op);
  const Tensor logits = logits_in.contiguous(), target = target_in.contiguous();
  const Tensor mx = as_f32(row_max);
  const int width = with_logit_sum ? 3 : 2;
  Tensor stats = empty({target.numel(), width}, {DType::F32, logits.device()});
  StatsArgs a;
  a.rows = target.numel();
  a.vl = logits.size(-1);
  a.start = vocab_start;
  a.vocab = vocab;
  a.ext_max = fptr(mx);
  a.stats = static_cast<float*>(stats.data_ptr());
  a.width = width;
  run_stats(logits, target, a, op);
  return stats;
}

std::pair<Tensor, Tensor> vocab_parallel_fused_row_stats(const Tensor& logits_in,
                                                         const Tensor& target_in,
                                                         int64_t vocab_start, int64_t vocab,
                                                         bool with_logit_sum) {
  const char* op = "vocab_parallel_cross_entropy";
  check_cuda_float(logits_in.dtype(), op);
  const Tensor logits = logits_in.contiguous(), target = target_in.contiguous();
  const int width = with_logit_sum ? 3 : 2;
  Tensor mx = empty(target.shape(), {DType::F32, logits.device()});
  Tensor stats = empty({target.numel(), width}, {DType::F32, logits.device()});
  StatsArgs a;
  a.rows = target.numel();
  a.vl = logits.size(-1);
  a.start = vocab_start;
  a.vocab = vocab;
  a.out_max = static_cast<float*>(mx.data_ptr());
  a.stats = static_cast<float*>(stats.data_ptr());
  a.width = width;
  run_stats(logits, target, a, op);
  return {mx, stats};
}

CrossEntropyForwardResult vocab_parallel_finish(const Tensor& row_max, const Tensor& stats_in,
                                                const Tensor& loss_mask, int64_t vocab,
                                                double smoothing) {
  const Tensor mx = as_f32(row_max), stats = as_f32(stats_in), mask = as_f32(loss_mask);
  CrossEntropyForwardResult r;
  r.loss = empty(mx.shape(), {DType::F32, mx.device()});
  r.logsumexp = empty(mx.shape(), {DType::F32, mx.device()});
  const int64_t rows = mx.numel();
  if (rows == 0) return r;
  const int width = static_cast<int>(stats.size(-1));
  finish_kernel<<<flat_blocks(rows, 256), 256, 0, mcore::cuda::current_stream()>>>(
      fptr(mx), fptr(stats), fptr(mask), static_cast<float*>(r.loss.data_ptr()),
      static_cast<float*>(r.logsumexp.data_ptr()), rows, width, static_cast<float>(smoothing),
      static_cast<float>(vocab));
  MCORE_CUDA_CHECK_LAUNCH("vocab_parallel_cross_entropy");
  return r;
}

Tensor vocab_parallel_backward(const Tensor& grad_loss, const Tensor& logits_in,
                               const Tensor& target_in, const Tensor& logsumexp,
                               const Tensor& loss_mask, int64_t vocab_start, int64_t vocab,
                               double smoothing) {
  const char* op = "vocab_parallel_cross_entropy";
  check_cuda_float(logits_in.dtype(), op);
  const Tensor logits = logits_in.contiguous(), target = target_in.contiguous();
  const Tensor grad = as_f32(grad_loss), lse = as_f32(logsumexp), mask = as_f32(loss_mask);
  BackwardArgs a;
  a.rows = target.numel();
  a.vl = logits.size(-1);
  a.start = vocab_start;
  a.grad = fptr(grad);
  a.lse = fptr(lse);
  a.mask = fptr(mask);
  // In float32, as the CPU kernel forms them.
  a.hit = 1.0f - static_cast<float>(smoothing);
  a.spread = static_cast<float>(smoothing) / static_cast<float>(vocab);
  return run_backward(logits, target, a, op);
}

}  // namespace mcore::ops::cuda
