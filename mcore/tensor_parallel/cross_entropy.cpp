#include "mcore/tensor_parallel/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "mcore/autograd/engine.h"
#include "mcore/autograd/function.h"
#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/cpu/vec_math.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/utils.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/cross_entropy_cuda.h"
#endif

namespace mcore::tensor_parallel {

using autograd::AutogradContext;
using autograd::Function;
using ops::acc_t;
using ops::store;

namespace {

constexpr const char* kOp = "vocab_parallel_cross_entropy";

DType loss_dtype(DType logits) {
  return logits == DType::F64 ? DType::F64 : DType::F32;
}

// Shard geometry, fixed per call.
struct Shard {
  int64_t rows = 0;      // tokens
  int64_t vl = 0;        // local vocabulary
  int64_t start = 0;     // first global id of this shard
  int64_t vocab = 0;     // global vocabulary
  double smoothing = 0;  // Megatron's label_smoothing * V / (V - 1)
};

// Pass 1: per-row local max.
template <class T>
void row_max_kernel(const T* x, const Shard& s, acc_t<T>* mx) {
  using A = acc_t<T>;
#pragma omp parallel for schedule(static) if (s.rows * s.vl > 32768)
  for (int64_t n = 0; n < s.rows; ++n) {
    const T* r = x + n * s.vl;
    A m = -std::numeric_limits<A>::infinity();
    // An OpenMP max reduction lets the compiler vectorize (a plain std::max loop stays scalar
    // without -ffast-math, and was the slowest of the three passes over the logits).
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < s.vl; ++j) {
      const A v = static_cast<A>(r[j]);
      m = v > m ? v : m;
    }
    mx[n] = m;
  }
}

// Pass 2 (after the max all-reduce): per row [sum exp(x - max), target logit or 0,
// sum of logits (label smoothing only)], to be summed across shards.
template <class T>
void row_stats_kernel(const T* x, const int64_t* tgt, const acc_t<T>* mx, const Shard& s,
                      int64_t width, acc_t<T>* stats) {
  using A = acc_t<T>;
#pragma omp parallel for schedule(static) if (s.rows * s.vl > 32768)
  for (int64_t n = 0; n < s.rows; ++n) {
    const T* r = x + n * s.vl;
    const A m = mx[n];
    const A sum = ops::vmath::exp_shift(r, m, s.vl);
    A* st = stats + n * width;
    st[0] = sum;
    const int64_t t = tgt[n] - s.start;
    st[1] = (t >= 0 && t < s.vl) ? static_cast<A>(r[t]) : A(0);
    if (width > 2) {
      A tot = 0;
#pragma omp simd reduction(+ : tot)
      for (int64_t j = 0; j < s.vl; ++j) tot += static_cast<A>(r[j]);
      st[2] = tot;
    }
  }
}

// Passes 1 and 2 in one read of the logits when there is one shard (no max all-reduce between
// them): each row is walked in L1-sized chunks, taking the chunk's max and then its exps from
// L1, with the running sum rescaled when the max grows (online softmax).
template <class T>
void fused_row_stats_kernel(const T* x, const int64_t* tgt, const Shard& s, int64_t width,
                            acc_t<T>* mx, acc_t<T>* stats) {
  using A = acc_t<T>;
  constexpr int64_t kChunk = 2048;
#pragma omp parallel for schedule(static) if (s.rows * s.vl > 32768)
  for (int64_t n = 0; n < s.rows; ++n) {
    const T* r = x + n * s.vl;
    A m = -std::numeric_limits<A>::infinity(), sum = 0, tot = 0;
    for (int64_t c0 = 0; c0 < s.vl; c0 += kChunk) {
      const int64_t c1 = std::min(s.vl, c0 + kChunk);
      A cm = -std::numeric_limits<A>::infinity();
#pragma omp simd reduction(max : cm)
      for (int64_t j = c0; j < c1; ++j) {
        const A v = static_cast<A>(r[j]);
        cm = v > cm ? v : cm;
      }
      if (cm > m) {
        if (sum != A(0)) sum *= std::exp(m - cm);
        m = cm;
      }
      sum += ops::vmath::exp_shift(r + c0, m, c1 - c0);
      if (width > 2) {
        A ct = 0;
#pragma omp simd reduction(+ : ct)
        for (int64_t j = c0; j < c1; ++j) ct += static_cast<A>(r[j]);
        tot += ct;
      }
    }
    mx[n] = m;
    A* st = stats + n * width;
    st[0] = sum;
    const int64_t t = tgt[n] - s.start;
    st[1] = (t >= 0 && t < s.vl) ? static_cast<A>(r[t]) : A(0);
    if (width > 2) st[2] = tot;
  }
}

// d logits = g * mask * (softmax - (1 - smoothing) onehot - smoothing / V), local shard only.
template <class T>
void backward_kernel(const T* x, const int64_t* tgt, const acc_t<T>* lse, const acc_t<T>* g,
                     const acc_t<T>* mask, const Shard& s, T* dx) {
  using A = acc_t<T>;
  const A hit = A(1) - static_cast<A>(s.smoothing);
  const A spread = static_cast<A>(s.smoothing) / static_cast<A>(s.vocab);
#pragma omp parallel for schedule(static) if (s.rows * s.vl > 32768)
  for (int64_t n = 0; n < s.rows; ++n) {
    const T* r = x + n * s.vl;
    T* d = dx + n * s.vl;
    const A gn = g[n] * (mask ? mask[n] : A(1));
    const A l = lse[n];
    const int64_t t = tgt[n] - s.start;
    const bool hit_here = t >= 0 && t < s.vl;
    const A xt = hit_here ? static_cast<A>(r[t]) : A(0);  // read before dx may overwrite x
    ops::vmath::exp_shift(r, l, s.vl, d, gn, -gn * spread);
    if (hit_here) d[t] = store<T>(gn * (ops::vmath::exp(xt - l) - spread - hit));
  }
}

#ifdef MCORE_WITH_CUDA
// The same passes with the CUDA kernels (float32 statistics; the kernels check the targets on the
// device, without a host sync). Saves what the CPU path saves.
Tensor forward_cuda(AutogradContext* ctx, const Tensor& logits, const Tensor& target,
                    const Tensor& loss_mask, const Shard& s, const ProcessGroupPtr& group) {
  const Tensor tgt = target.contiguous();
  const bool with_sum = s.smoothing > 0;
  Tensor mx, stats;
  if (group->size() == 1) {
    std::tie(mx, stats) =
        ops::cuda::vocab_parallel_fused_row_stats(logits, tgt, s.start, s.vocab, with_sum);
  } else {
    mx = ops::cuda::vocab_parallel_row_max(logits);
    group->all_reduce(mx, comm::ReduceOp::kMax);
    stats = ops::cuda::vocab_parallel_row_stats(logits, tgt, mx, s.start, s.vocab, with_sum);
    group->all_reduce(stats);
  }
  const Tensor mask = loss_mask.defined() ? loss_mask.to(DType::F32).contiguous() : Tensor();
  ops::CrossEntropyForwardResult r =
      ops::cuda::vocab_parallel_finish(mx, stats, mask, s.vocab, s.smoothing);
  ctx->save_for_backward({logits, tgt, r.logsumexp, mask});
  ctx->save("shard", s);
  return r.loss.view(target.shape());
}
#endif

struct VocabParallelCrossEntropyFn : Function<VocabParallelCrossEntropyFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& logits_in, const Tensor& target,
                        const Tensor& loss_mask, double label_smoothing,
                        const ProcessGroupPtr& group) {
    const Tensor logits = logits_in.contiguous();
    const DType ldt = loss_dtype(logits.dtype());
    const int tp = group->size();
    Shard s;
    s.vl = logits.size(-1);
    s.rows = target.numel();
    s.vocab = s.vl * tp;
    s.start = s.vl * group->rank();
    if (label_smoothing > 0) s.smoothing = label_smoothing * s.vocab / (s.vocab - 1);
#ifdef MCORE_WITH_CUDA
    if (logits.device().is_cuda()) return forward_cuda(ctx, logits, target, loss_mask, s, group);
#endif
    // Targets as int64, checked against the global vocabulary (serially: kernels cannot throw).
    Tensor tgt = target.to(DType::I64).contiguous();
    const int64_t* tp64 = tgt.data<int64_t>();
    for (int64_t n = 0; n < s.rows; ++n) {
      MCORE_CHECK(tp64[n] >= 0 && tp64[n] < s.vocab)
          << kOp << ": target " << tp64[n] << " at flat index " << n
          << " is outside the vocabulary [0, " << s.vocab << ") of logits "
          << shape_str(logits.shape()) << " x " << tp << " tensor-parallel shards";
    }
    const int64_t width = s.smoothing > 0 ? 3 : 2;
    Tensor mx = empty(target.shape(), ldt);
    Tensor stats = empty({s.rows, width}, ldt);
    if (tp == 1) {
      MCORE_DISPATCH_FLOAT_TYPES(logits.dtype(), kOp, [&] {
        using A = acc_t<scalar_t>;
        fused_row_stats_kernel<scalar_t>(logits.data<scalar_t>(), tp64, s, width, mx.data<A>(),
                                         stats.data<A>());
      });
    } else {
      MCORE_DISPATCH_FLOAT_TYPES(logits.dtype(), kOp, [&] {
        using A = acc_t<scalar_t>;
        row_max_kernel<scalar_t>(logits.data<scalar_t>(), s, mx.data<A>());
      });
      group->all_reduce(mx, comm::ReduceOp::kMax);
      MCORE_DISPATCH_FLOAT_TYPES(logits.dtype(), kOp, [&] {
        using A = acc_t<scalar_t>;
        row_stats_kernel<scalar_t>(logits.data<scalar_t>(), tp64, mx.data<A>(), s, width,
                                   stats.data<A>());
      });
    }
    // One all-reduce for the sum of exps, the target logit and (smoothing) the logit sum.
    if (tp > 1) group->all_reduce(stats);
    Tensor loss = empty(target.shape(), ldt);
    Tensor lse = empty(target.shape(), ldt);
    const Tensor mask = loss_mask.defined() ? loss_mask.to(ldt).contiguous() : Tensor();
    auto finish = [&](auto zero) {
      using A = decltype(zero);
      const A* m = mx.data<A>();
      const A* st = stats.data<A>();
      const A* mk = mask.defined() ? mask.data<A>() : nullptr;
      A* lp = loss.data<A>();
      A* sp = lse.data<A>();
      const A sm = static_cast<A>(s.smoothing);
      for (int64_t n = 0; n < s.rows; ++n) {
        const A* r = st + n * width;
        const A l = m[n] + std::log(r[0]);
        sp[n] = l;
        A v = l - r[1];
        // Megatron's smoothing: (1 - sm) * nll - sm * mean(log_probs), the mean taken over the
        // global vocabulary (Megatron takes it over the local shard, which is not
        // layout-invariant; the two agree at tp = 1).
        if (width > 2) v = (A(1) - sm) * v + sm * (l - r[2] / static_cast<A>(s.vocab));
        if (mk) v *= mk[n];
        lp[n] = v;
      }
    };
    if (ldt == DType::F64) {
      finish(double(0));
    } else {
      finish(float(0));
    }
    ctx->save_for_backward({logits, tgt, lse, mask});
    ctx->save("shard", s);
    return loss;
  }

  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& sv = ctx->saved_tensors();
    const Tensor &logits = sv[0], &tgt = sv[1], &lse = sv[2], &mask = sv[3];
    const Shard s = ctx->get<Shard>("shard");
#ifdef MCORE_WITH_CUDA
    if (logits.device().is_cuda()) {
      return {ops::cuda::vocab_parallel_backward(g[0], logits, tgt, lse, mask, s.start, s.vocab,
                                                 s.smoothing),
              Tensor(), Tensor()};
    }
#endif
    const DType ldt = loss_dtype(logits.dtype());
    const Tensor grad = g[0].to(ldt).contiguous();
    // When nothing else holds the logits (the usual training step: the output layer's result
    // feeds only this loss), their gradient is written over them, as Megatron's fused
    // cross-entropy does: no second logits-sized buffer (100 MB for GPT-2 at 512 tokens).
    Tensor dx = autograd::saved_tensor_reusable(logits)
                    ? logits
                    : empty(logits.shape(), {logits.dtype(), logits.device()});
    MCORE_DISPATCH_FLOAT_TYPES(logits.dtype(), kOp, [&] {
      using A = acc_t<scalar_t>;
      backward_kernel<scalar_t>(logits.data<scalar_t>(), tgt.data<int64_t>(), lse.data<A>(),
                                grad.data<A>(), mask.defined() ? mask.data<A>() : nullptr, s,
                                dx.data<scalar_t>());
    });
    return {dx, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor vocab_parallel_cross_entropy(const Tensor& vocab_parallel_logits, const Tensor& target,
                                    double label_smoothing, const Tensor& loss_mask,
                                    ProcessGroupPtr group) {
  const Tensor& logits = vocab_parallel_logits;
  MCORE_CHECK(logits.defined() && target.defined()) << kOp << ": undefined logits or target";
  ops::on_cuda({logits, target}, kOp, {loss_mask});  // one device for all (CPU or a GPU)
  MCORE_CHECK(logits.dim() >= 1 && is_floating(logits.dtype()) && logits.size(-1) > 0)
      << kOp << ": logits must be a float tensor [..., V/tp], got " << logits.dtype() << " "
      << shape_str(logits.shape());
  Shape rows(logits.shape().begin(), logits.shape().end() - 1);
  MCORE_CHECK(target.shape() == rows)
      << kOp << ": target " << shape_str(target.shape()) << " must have the shape of logits "
      << shape_str(logits.shape()) << " without its last (vocab) dimension, i.e. "
      << shape_str(rows);
  MCORE_CHECK(target.dtype() == DType::I64 || target.dtype() == DType::I32)
      << kOp << ": target must be int64 or int32, got " << target.dtype();
  if (loss_mask.defined()) {
    MCORE_CHECK(loss_mask.shape() == rows && is_floating(loss_mask.dtype()))
        << kOp << ": loss_mask " << loss_mask.dtype() << " " << shape_str(loss_mask.shape())
        << " must be a float tensor shaped like target " << shape_str(target.shape());
  }
  MCORE_CHECK(label_smoothing >= 0.0 && label_smoothing < 1.0)
      << kOp << ": label_smoothing must be in [0, 1), got " << label_smoothing;
  group = resolve_tp_group(group);
  MCORE_CHECK(label_smoothing == 0.0 || logits.size(-1) * group->size() > 1)
      << kOp << ": label smoothing needs a vocabulary of at least 2";
  return VocabParallelCrossEntropyFn::apply(logits, target, loss_mask, label_smoothing, group);
}

}  // namespace mcore::tensor_parallel
