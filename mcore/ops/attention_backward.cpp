// The backward of the fused CPU attention (attention.h), FlashAttention-2 style: delta = rowsum(dO
// * O), then per tile P = exp(S - lse) and dS = P * (dP - delta) are recomputed and feed
// dV += P^T dO, dK += scale dS^T Q and dQ += scale dS K.
#include "mcore/ops/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "mcore/ops/attention_kernels.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/cpu/vec_math.h"
#include "mcore/ops/device_check.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/attention_cuda.h"
#endif

namespace mcore::ops {

namespace attention_impl {

namespace {

// Recomputes P = exp(scale * Q K^T - lse) for one tile (masked entries 0) and, from
// dP = dO V^T, dS = P * (dP - delta) in ws.dp (0 where masked). P stays in ws.s. kt and vt are
// the kv head's packed K^T and V^T at key j0.
template <class A>
void tile_grads(const Problem& p, Workspace<A>& ws, const A* qp, int64_t ldq,
                const cpu::TileB<A>& kt, const cpu::TileB<A>& vt, const A* dop, int64_t lddo,
                const A* lse, const A* delta, int64_t nq, int64_t nk, int64_t i0, int64_t j0,
                int64_t b, int64_t h) {
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  A *s = ws.s.data(), *dp = ws.dp.data();
  int64_t diag;
  const bool cut = p.cut(i0, j0, nk, &diag);
  cpu::tile_gemm(nq, nk, p.d, static_cast<A>(p.scale), qp, ldq, 1, kt, A(0), s, kTileK,
                 scores_band(cut, diag));
  apply_masks(s, nq, nk, i0, j0, b, h, p);
  // dP past the causal cut is not computed (tile_gemm leaves it unwritten): zeroed below.
  cpu::tile_gemm(nq, nk, p.dv, A(1), dop, lddo, 1, vt, A(0), dp, kTileK, scores_band(cut, diag));
  for (int64_t r = 0; r < nq; ++r) {
    A* sr = s + r * kTileK;
    A* dr = dp + r * kTileK;
    const A lr = lse[r], dl = delta[r];
    if (lr == kNegInf) {  // fully masked row: no gradient
      std::fill(sr, sr + nk, A(0));
      std::fill(dr, dr + nk, A(0));
      continue;
    }
    vmath::exp_shift(sr, lr, nk, sr);
    const int64_t vis = cut ? std::clamp<int64_t>(diag + r + 1, 0, nk) : nk;
#pragma omp simd
    for (int64_t c = 0; c < vis; ++c) dr[c] = sr[c] * (dr[c] - dl);
    std::fill(dr + vis, dr + nk, A(0));
  }
}

// delta[b, h, i] = sum_e dO[i, b, h, e] * O[i, b, h, e] (FlashAttention-2's D_i).
template <class T>
void delta_kernel(const Problem& p, const Tensor& dout, const Tensor& out, Tensor& delta) {
  using A = acc_t<T>;
  const Rows<T> dr = rows_of<T>(dout), orr = rows_of<T>(out);
  A* dp = delta.data<A>();
  const int64_t n = p.sq * p.batch * p.hq;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const int64_t h = t % p.hq, b = (t / p.hq) % p.batch, i = t / (p.hq * p.batch);
    const T* x = dr.row(i, b, h);
    const T* y = orr.row(i, b, h);
    A sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t e = 0; e < p.dv; ++e) sum += static_cast<A>(x[e]) * static_cast<A>(y[e]);
    dp[(b * p.hq + h) * p.sq + i] = sum;
  }
}

// The inputs of the backward kernels, as rows.
template <class T>
struct BackwardRows {
  Rows<T> q, k, v, dout;
  const acc_t<T>* lse;
  const acc_t<T>* delta;
};

// A kv head's packed operands for one key block: K^T and V^T panels at the block, and (dQ only)
// its K rows. With q_all / do_all, the group's Q and dO rows packed per head ([group, sq, width]);
// else Q and dO tiles are read in place (or widened) per tile.
template <class A>
struct KeyBlock {
  cpu::TileB<A> kt, vt;
  const A* krows = nullptr;
  int64_t ldk = 0;
  const A* q_all = nullptr;
  const A* do_all = nullptr;
};

// The K^T and V^T panels of every (batch, kv head), packed once up front for both backwards: the
// two-pass dQ tasks (one per query block) would otherwise each pack every key they visit, which
// for one kv head at S = 2048 wrote ~270 MB per backward.
template <class A>
struct PackedHeads {
  Tensor kt, vt;
  int64_t skp = 0;
  cpu::TileB<A> kt_at(const Problem& p, int64_t b, int64_t hk, int64_t j0) const {
    return panels_at(kt.data<A>() + (b * p.hkv + hk) * skp * p.d, p.d, j0);
  }
  cpu::TileB<A> vt_at(const Problem& p, int64_t b, int64_t hk, int64_t j0) const {
    return panels_at(vt.data<A>() + (b * p.hkv + hk) * skp * p.dv, p.dv, j0);
  }
};
template <class T>
PackedHeads<acc_t<T>> pack_heads(const Problem& p, const BackwardRows<T>& r) {
  using A = acc_t<T>;
  PackedHeads<A> h;
  h.skp = round_up_panels(p.sk);
  h.kt = empty({p.batch * p.hkv * h.skp * p.d}, dtype_of<A>);
  h.vt = empty({p.batch * p.hkv * h.skp * p.dv}, dtype_of<A>);
  A* kt = h.kt.template data<A>();
  A* vt = h.vt.template data<A>();
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < p.batch * p.hkv; ++bh) {
    const int64_t b = bh / p.hkv, hk = bh % p.hkv;
    pack_transposed_panels(r.k, p.sk, b, hk, p.d, kt + bh * h.skp * p.d);
    pack_transposed_panels(r.v, p.sk, b, hk, p.dv, vt + bh * h.skp * p.dv);
  }
  return h;
}

// One key block [j0, j0 + nk) of kv head hk: its dK and dV rows, summed over every query head
// of the group and every query tile that can see the keys, written to dk/dv. With gq (the
// group's dQ accumulators, [group, sq, d]) each tile also adds its dQ part there, so P and dS
// serve all three gradients.
template <class T>
void key_block_grads(const Problem& p, Workspace<acc_t<T>>& ws, const BackwardRows<T>& r, int64_t b,
                     int64_t hk, int64_t j0, int64_t nk, const KeyBlock<acc_t<T>>& kb, T* dkp,
                     T* dvp, acc_t<T>* gq) {
  using A = acc_t<T>;
  A* gk = ws.acc0.data();
  A* gv = ws.acc1.data();
  std::fill(gk, gk + nk * p.d, A(0));
  std::fill(gv, gv + nk * p.dv, A(0));
  const int64_t qstart = p.query_begin(j0) / kBlockQ * kBlockQ;
  for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
    const int64_t gh = h - hk * p.group;
    for (int64_t i0 = qstart; i0 < p.sq; i0 += kBlockQ) {
      const int64_t nq = std::min(kBlockQ, p.sq - i0);
      int64_t ldq = p.d, lddo = p.dv;
      const A* qp = kb.q_all ? kb.q_all + (gh * p.sq + i0) * p.d
                             : load_rows(r.q, i0, nq, b, h, p.d, ws.q.data(), &ldq);
      const A* dop = kb.do_all ? kb.do_all + (gh * p.sq + i0) * p.dv
                               : load_rows(r.dout, i0, nq, b, h, p.dv, ws.dout.data(), &lddo);
      const int64_t row = (b * p.hq + h) * p.sq + i0;
      tile_grads(p, ws, qp, ldq, kb.kt, kb.vt, dop, lddo, r.lse + row, r.delta + row, nq, nk, i0,
                 j0, b, h);
      int64_t diag;
      const bool cut = p.cut(i0, j0, nk, &diag);
      // dV += P^T dO;  dK += scale * dS^T Q;  (dQ += scale * dS K).
      cpu::tile_gemm(nk, p.dv, nq, A(1), ws.s.data(), 1, kTileK, cpu::TileB<A>{dop, lddo}, A(1), gv,
                     p.dv, transposed_band(cut, diag));
      cpu::tile_gemm(nk, p.d, nq, static_cast<A>(p.scale), ws.dp.data(), 1, kTileK,
                     cpu::TileB<A>{qp, ldq}, A(1), gk, p.d, transposed_band(cut, diag));
      if (gq) {
        A* gqh = gq + gh * p.sq * p.d;
        cpu::tile_gemm(nq, p.d, nk, static_cast<A>(p.scale), ws.dp.data(), kTileK, 1,
                       cpu::TileB<A>{kb.krows, kb.ldk}, A(1), gqh + i0 * p.d, p.d,
                       rows_band(cut, diag));
      }
    }
  }
  for (int64_t c = 0; c < nk; ++c) {
    const int64_t j = j0 + c;
    T* dst = dkp + ((j * p.batch + b) * p.hkv + hk) * p.d;
    for (int64_t e = 0; e < p.d; ++e) dst[e] = store<T>(gk[c * p.d + e]);
    T* dsv = dvp + ((j * p.batch + b) * p.hkv + hk) * p.dv;
    for (int64_t e = 0; e < p.dv; ++e) dsv[e] = store<T>(gv[c * p.dv + e]);
  }
}

// dK and dV: one task per (batch, kv head, key block), looping over every query head of the
// group and every query block that can see the keys. Each task owns its rows of dK/dV, so the
// GQA reduction needs no atomics and the result is deterministic.
template <class T>
void backward_dkdv_kernel(const Problem& p, const BackwardRows<T>& r,
                          const PackedHeads<acc_t<T>>& heads, Tensor& dk, Tensor& dv) {
  using A = acc_t<T>;
  T* dkp = dk.data<T>();
  T* dvp = dv.data<T>();
  const int64_t nkb = (p.sk + kBlockKBackward - 1) / kBlockKBackward;
  const int64_t tasks = p.batch * p.hkv * nkb;
#pragma omp parallel
  {
    thread_local Workspace<A> ws;
    ws.fit(p);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t kbi = t % nkb, hk = (t / nkb) % p.hkv, b = t / (nkb * p.hkv);
      const int64_t j0 = kbi * kBlockKBackward, nk = std::min(kBlockKBackward, p.sk - j0);
      KeyBlock<A> kb;
      kb.kt = heads.kt_at(p, b, hk, j0);
      kb.vt = heads.vt_at(p, b, hk, j0);
      key_block_grads<T>(p, ws, r, b, hk, j0, nk, kb, dkp, dvp, nullptr);
    }
  }
}

// dK, dV and dQ in one pass: one task per (batch, kv head) packs the head's K rows
// and its group's Q and dO rows once, then walks every key block and, for each, every visible
// query tile of the group's heads, so dQ (of the group's heads, which no other task touches)
// accumulates in the task's own buffer. Each tile's P and dS are computed once (5 products per
// tile, where the two passes take 7), at the price of coarser tasks: used when there are enough
// (batch, kv head) tasks to balance the threads and the per-thread buffers stay small.
enum class BackwardMode { kAuto, kFused, kTwoPass };
BackwardMode backward_mode() {
  const char* env = std::getenv("MCORE_ATTENTION_BACKWARD");
  if (!env) return BackwardMode::kAuto;
  if (std::strcmp(env, "fused") == 0) return BackwardMode::kFused;
  if (std::strcmp(env, "two_pass") == 0) return BackwardMode::kTwoPass;
  return BackwardMode::kAuto;
}

template <class T>
void backward_fused_kernel(const Problem& p, const BackwardRows<T>& r,
                           const PackedHeads<acc_t<T>>& heads, Tensor& dq, Tensor& dk, Tensor& dv) {
  using A = acc_t<T>;
  T* dqp = dq.data<T>();
  T* dkp = dk.data<T>();
  T* dvp = dv.data<T>();
  const int64_t tasks = p.batch * p.hkv;
#pragma omp parallel
  {
    thread_local Workspace<A> ws;
    ws.fit(p);
    ws.grow(ws.krows, p.sk * p.d);
    A* gq_all = ws.grow(ws.gq_all, p.group * p.sq * p.d);
    A* q_all = ws.grow(ws.q_all, p.group * p.sq * p.d);
    A* do_all = ws.grow(ws.do_all, p.group * p.sq * p.dv);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t hk = t % p.hkv, b = t / p.hkv;
      pack_rows(r.k, p.sk, b, hk, p.d, ws.krows.data());
      for (int64_t g = 0; g < p.group; ++g) {
        pack_rows(r.q, p.sq, b, hk * p.group + g, p.d, q_all + g * p.sq * p.d);
        pack_rows(r.dout, p.sq, b, hk * p.group + g, p.dv, do_all + g * p.sq * p.dv);
      }
      std::fill(gq_all, gq_all + p.group * p.sq * p.d, A(0));
      for (int64_t j0 = 0; j0 < p.sk; j0 += kBlockKBackward) {
        KeyBlock<A> kb;
        kb.kt = heads.kt_at(p, b, hk, j0);
        kb.vt = heads.vt_at(p, b, hk, j0);
        kb.krows = ws.krows.data() + j0 * p.d;
        kb.ldk = p.d;
        kb.q_all = q_all;
        kb.do_all = do_all;
        key_block_grads<T>(p, ws, r, b, hk, j0, std::min(kBlockKBackward, p.sk - j0), kb, dkp, dvp,
                           gq_all);
      }
      for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
        const A* gq = gq_all + (h - hk * p.group) * p.sq * p.d;
        for (int64_t i = 0; i < p.sq; ++i) {
          T* dst = dqp + ((i * p.batch + b) * p.hq + h) * p.d;
          for (int64_t e = 0; e < p.d; ++e) dst[e] = store<T>(gq[i * p.d + e]);
        }
      }
    }
  }
}

// dQ: one task per (batch, query head, query block), looping over the visible key blocks. The
// tile's P and dS are recomputed rather than shared with the dK/dV pass: that costs two extra
// products but keeps both passes free of write conflicts. K rows are read in place.
template <class T>
void backward_dq_kernel(const Problem& p, const BackwardRows<T>& r,
                        const PackedHeads<acc_t<T>>& heads, Tensor& dq) {
  using A = acc_t<T>;
  T* dqp = dq.data<T>();
  const int64_t nqb = (p.sq + kBlockQ - 1) / kBlockQ;
  const int64_t tasks = p.batch * p.hq * nqb;
#pragma omp parallel
  {
    thread_local Workspace<A> ws;
    ws.fit(p);
    ws.grow(ws.krows, kBlockKBackward * p.d);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      // The last query blocks see the most keys: hand them out first.
      const int64_t qb = nqb - 1 - t % nqb, h = (t / nqb) % p.hq, b = t / (nqb * p.hq);
      const int64_t hk = h / p.group;
      const int64_t i0 = qb * kBlockQ, nq = std::min(kBlockQ, p.sq - i0);
      int64_t ldq, lddo, ldk;
      const A* qp = load_rows(r.q, i0, nq, b, h, p.d, ws.q.data(), &ldq);
      const A* dop = load_rows(r.dout, i0, nq, b, h, p.dv, ws.dout.data(), &lddo);
      const int64_t row = (b * p.hq + h) * p.sq + i0;
      const int64_t kend = p.key_end(i0 + nq - 1);
      A* gq = ws.acc0.data();
      std::fill(gq, gq + nq * p.d, A(0));
      for (int64_t j0 = 0; j0 < kend; j0 += kBlockKBackward) {
        const int64_t nk = std::min(kBlockKBackward, kend - j0);
        const A* kp = load_rows(r.k, j0, nk, b, hk, p.d, ws.krows.data(), &ldk);
        tile_grads(p, ws, qp, ldq, heads.kt_at(p, b, hk, j0), heads.vt_at(p, b, hk, j0), dop, lddo,
                   r.lse + row, r.delta + row, nq, nk, i0, j0, b, h);
        int64_t diag;
        const bool cut = p.cut(i0, j0, nk, &diag);
        // dQ += scale * dS K.
        cpu::tile_gemm(nq, p.d, nk, static_cast<A>(p.scale), ws.dp.data(), kTileK, 1,
                       cpu::TileB<A>{kp, ldk}, A(1), gq, p.d, rows_band(cut, diag));
      }
      for (int64_t i = 0; i < nq; ++i) {
        T* dst = dqp + (((i0 + i) * p.batch + b) * p.hq + h) * p.d;
        for (int64_t e = 0; e < p.d; ++e) dst[e] = store<T>(gq[i * p.d + e]);
      }
    }
  }
}

}  // namespace

}  // namespace attention_impl

using namespace attention_impl;

AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q_in, const Tensor& k_in,
                                  const Tensor& v_in, const Tensor& out_in,
                                  const Tensor& softmax_lse, const AttentionOptions& options) {
  const bool on_cpu = !(q_in.defined() && q_in.device().is_cuda());
  Problem p = make_problem(q_in, k_in, v_in, options, "attention_backward", on_cpu);
  MCORE_CHECK(grad_out.defined() && out_in.defined() && softmax_lse.defined())
      << "attention_backward: undefined grad_out, out or softmax_lse";
  const Shape out_shape = {p.sq, p.batch, p.hq, p.dv};
  MCORE_CHECK(grad_out.shape() == out_shape && out_in.shape() == out_shape)
      << "attention_backward: grad_out " << shape_str(grad_out.shape()) << " and out "
      << shape_str(out_in.shape()) << " must have the output shape " << shape_str(out_shape);
  MCORE_CHECK(grad_out.dtype() == q_in.dtype() && out_in.dtype() == q_in.dtype())
      << "attention_backward: grad_out (" << grad_out.dtype() << ") and out (" << out_in.dtype()
      << ") must have q's dtype " << q_in.dtype();
  const Shape lse_shape = {p.batch, p.hq, p.sq};
  MCORE_CHECK(softmax_lse.shape() == lse_shape)
      << "attention_backward: softmax_lse " << shape_str(softmax_lse.shape())
      << " must be [B, Hq, Sq] = " << shape_str(lse_shape);
#ifdef MCORE_WITH_CUDA
  if (!on_cpu)
    return cuda::attention_backward(grad_out, q_in, k_in, v_in, out_in, softmax_lse, options);
#endif
  check_cpu({grad_out, out_in, softmax_lse}, "attention_backward");
  Tensor mask_holder;
  bind_mask(p, options, mask_holder, "attention_backward");
  const Tensor q = rows_compatible(q_in), k = rows_compatible(k_in), v = rows_compatible(v_in);
  const Tensor dout = rows_compatible(grad_out), out = rows_compatible(out_in);
  const DType adt = acc_dtype(q.dtype());
  const Tensor lse = softmax_lse.to(adt).contiguous();
  AttentionGrads g;
  g.dq = empty(q.shape(), {q.dtype(), q.device()});
  g.dk = empty(k.shape(), {k.dtype(), k.device()});
  g.dv = empty(v.shape(), {v.dtype(), v.device()});
  if (p.batch == 0 || p.hq == 0) return g;
  Tensor delta = empty(lse_shape, {adt, q.device()});
  (void)cpu::blas_info();
  // The one-pass kernel when every thread gets several (batch, kv head) tasks and each thread's
  // buffers (dQ, Q and dO of the group's heads, K rows: whole sequences) and a kv head's packed
  // K^T and V^T stay small; else the two finer-grained passes.
  const int64_t fused_bytes =
      (p.group * p.sq * (2 * p.d + p.dv) + round_up_panels(p.sk) * (2 * p.d + p.dv)) *
      static_cast<int64_t>(dtype_size(adt));
  const BackwardMode mode = backward_mode();
  const bool fused = mode != BackwardMode::kTwoPass && fused_bytes <= (int64_t(16) << 20) &&
                     (mode == BackwardMode::kFused ||
                      p.batch * p.hkv >= 4 * static_cast<int64_t>(omp_get_max_threads()));
  MCORE_DISPATCH_FLOAT_TYPES(q.dtype(), "attention_backward", [&] {
    delta_kernel<scalar_t>(p, dout, out, delta);
    const BackwardRows<scalar_t> r{rows_of<scalar_t>(q),        rows_of<scalar_t>(k),
                                   rows_of<scalar_t>(v),        rows_of<scalar_t>(dout),
                                   lse.data<acc_t<scalar_t>>(), delta.data<acc_t<scalar_t>>()};
    const PackedHeads<acc_t<scalar_t>> heads = pack_heads(p, r);
    if (fused) {
      backward_fused_kernel<scalar_t>(p, r, heads, g.dq, g.dk, g.dv);
    } else {
      backward_dkdv_kernel<scalar_t>(p, r, heads, g.dk, g.dv);
      backward_dq_kernel<scalar_t>(p, r, heads, g.dq);
    }
  });
  return g;
}

}  // namespace mcore::ops
