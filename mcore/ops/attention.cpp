#include "mcore/ops/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
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

// One task per (batch, kv head, chunk of query blocks): it packs the kv head's K^T panels and V
// rows once (as far as its last query can see) and runs every query head of the group over its
// query blocks, so the packing is shared by the group and by the blocks. A kv head is split into
// chunks only when there are too few heads to give every thread four tasks. Causal chunks differ
// in work (later queries see more keys), so the heaviest are handed out first: with one kv head
// and 2 threads, four equal-size chunks in order left one thread 62% of the work (S=2048, MQA:
// forward 45 ms, against 37 ms for per-block tasks).
template <class T>
void forward_kernel(const Problem& p, const Tensor& q, const Tensor& k, const Tensor& v,
                    Tensor& out, Tensor& lse) {
  using A = acc_t<T>;
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  const Rows<T> qr = rows_of<T>(q), kr = rows_of<T>(k), vr = rows_of<T>(v);
  T* op = out.data<T>();
  A* lp = lse.data<A>();
  const int64_t nqb = (p.sq + kBlockQ - 1) / kBlockQ;
  const int64_t heads = p.batch * p.hkv;
  const int64_t threads = omp_get_max_threads();
  const int64_t chunks = std::clamp<int64_t>((4 * threads + heads - 1) / heads, 1, nqb);
  const int64_t tasks = heads * chunks;
#pragma omp parallel
  {
    thread_local Workspace<A> ws;
    ws.fit(p);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t c = chunks - 1 - t % chunks, hk = (t / chunks) % p.hkv,
                    b = t / (chunks * p.hkv);
      const int64_t qb0 = nqb * c / chunks, qb1 = nqb * (c + 1) / chunks;
      if (qb0 >= qb1) continue;
      const int64_t nkeys = p.key_end(std::min(p.sq, qb1 * kBlockQ) - 1);
      ws.grow(ws.kt, round_up_panels(nkeys) * p.d);
      ws.grow(ws.vrows, nkeys * p.dv);
      pack_transposed_panels(kr, nkeys, b, hk, p.d, ws.kt.data());
      pack_rows(vr, nkeys, b, hk, p.dv, ws.vrows.data());
      for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
        for (int64_t qb = qb0; qb < qb1; ++qb) {
          const int64_t i0 = qb * kBlockQ, nq = std::min(kBlockQ, p.sq - i0);
          int64_t ldq;
          const A* qp = load_rows(qr, i0, nq, b, h, p.d, ws.q.data(), &ldq);
          A* o = ws.acc0.data();
          A *m = ws.m.data(), *l = ws.l.data(), *s = ws.s.data();
          std::fill(o, o + nq * p.dv, A(0));
          std::fill(m, m + nq, kNegInf);
          std::fill(l, l + nq, A(0));
          const int64_t kend = p.key_end(i0 + nq - 1);
          for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
            const int64_t nk = std::min(kTileK, kend - j0);
            int64_t diag;
            const bool cut = p.cut(i0, j0, nk, &diag);
            cpu::tile_gemm(nq, nk, p.d, static_cast<A>(p.scale), qp, ldq, 1,
                           panels_at(ws.kt.data(), p.d, j0), A(0), s, kTileK,
                           scores_band(cut, diag));
            apply_masks(s, nq, nk, i0, j0, b, h, p);
            // Online softmax: rescale the running sum and output by exp(m_old - m_new), then add
            // this tile's exp(s - m_new) (left in s as the probabilities P for the PV product).
            for (int64_t r = 0; r < nq; ++r) {
              A* sr = s + r * kTileK;
              A mx = m[r];
#pragma omp simd reduction(max : mx)
              for (int64_t c2 = 0; c2 < nk; ++c2) mx = sr[c2] > mx ? sr[c2] : mx;
              if (mx == kNegInf) {  // nothing visible yet in this row
                std::fill(sr, sr + nk, A(0));
                continue;
              }
              const A alpha = std::exp(m[r] - mx);
              const A sum = vmath::exp_shift(sr, mx, nk, sr);
              l[r] = l[r] * alpha + sum;
              m[r] = mx;
              if (alpha != A(1)) {
                A* orow = o + r * p.dv;
                for (int64_t e = 0; e < p.dv; ++e) orow[e] *= alpha;
              }
            }
            cpu::tile_gemm(nq, p.dv, nk, A(1), s, kTileK, 1,
                           cpu::TileB<A>{ws.vrows.data() + j0 * p.dv, p.dv}, A(1), o, p.dv,
                           rows_band(cut, diag));
          }
          for (int64_t r = 0; r < nq; ++r) {
            const int64_t i = i0 + r;
            T* dst = op + ((i * p.batch + b) * p.hq + h) * p.dv;
            const A* orow = o + r * p.dv;
            if (l[r] > A(0)) {
              const A inv = A(1) / l[r];
              for (int64_t e = 0; e < p.dv; ++e) dst[e] = store<T>(orow[e] * inv);
              lp[(b * p.hq + h) * p.sq + i] = m[r] + std::log(l[r]);
            } else {  // no visible key: output 0, logsumexp -inf
              for (int64_t e = 0; e < p.dv; ++e) dst[e] = store<T>(A(0));
              lp[(b * p.hq + h) * p.sq + i] = kNegInf;
            }
          }
        }
      }
    }
  }
}

}  // namespace

// The kernels need a unit-stride head dimension and row strides BLAS accepts as leading
// dimensions; anything else is copied once.
Tensor rows_compatible(const Tensor& t) {
  const int64_t w = t.size(3);
  bool ok = t.stride(3) == 1 || w <= 1;
  ok = ok && (t.size(0) <= 1 || (t.stride(0) >= w && t.stride(0) < (int64_t{1} << 31)));
  return ok ? t : t.contiguous();
}

// Shape and dtype checks shared by both devices; `on_cpu` also requires CPU tensors.
Problem make_problem(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o,
                     const char* op, bool on_cpu) {
  if (on_cpu) check_cpu({q, k, v}, op);
  MCORE_CHECK(q.defined() && k.defined() && v.defined()) << op << ": undefined q, k or v";
  MCORE_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4)
      << op << ": expected sbhd tensors q [Sq, B, Hq, D], k [Sk, B, Hkv, D], v [Sk, B, Hkv, Dv]; "
      << "got q " << shape_str(q.shape()) << ", k " << shape_str(k.shape()) << ", v "
      << shape_str(v.shape());
  MCORE_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype())
      << op << ": q, k, v must share a dtype; got q " << q.dtype() << " " << shape_str(q.shape())
      << ", k " << k.dtype() << " " << shape_str(k.shape()) << ", v " << v.dtype() << " "
      << shape_str(v.shape());
  MCORE_CHECK(k.size(0) == v.size(0) && k.size(1) == v.size(1) && k.size(2) == v.size(2))
      << op << ": k " << shape_str(k.shape()) << " and v " << shape_str(v.shape())
      << " must agree on [Sk, B, Hkv]";
  MCORE_CHECK(q.size(1) == k.size(1) && q.size(3) == k.size(3))
      << op << ": q " << shape_str(q.shape()) << " and k " << shape_str(k.shape())
      << " must agree on batch (dim 1) and head dim (dim 3)";
  MCORE_CHECK(k.size(2) > 0 && q.size(2) % k.size(2) == 0)
      << op << ": query heads (" << q.size(2) << " in q " << shape_str(q.shape())
      << ") must be a multiple of key/value heads (" << k.size(2) << " in k "
      << shape_str(k.shape()) << ")";
  Problem p;
  p.sq = q.size(0);
  p.sk = k.size(0);
  p.batch = q.size(1);
  p.hq = q.size(2);
  p.hkv = k.size(2);
  p.group = p.hq / p.hkv;
  p.d = q.size(3);
  p.dv = v.size(3);
  p.scale = o.softmax_scale != 0.0 ? o.softmax_scale : 1.0 / std::sqrt(static_cast<double>(p.d));
  p.causal = o.causal;
  p.causal_offset = p.sk - p.sq;
  return p;
}

// Resolves the optional mask into pointer and broadcast strides; `holder` keeps a contiguous
// copy alive if one was needed.
void bind_mask(Problem& p, const AttentionOptions& o, Tensor& holder, const char* op) {
  const Tensor& m = o.attention_mask;
  if (!m.defined()) return;
  check_cpu({m}, op);
  MCORE_CHECK(m.dtype() == DType::BOOL)
      << op << ": attention_mask must be bool (true = masked out), got " << m.dtype() << " "
      << shape_str(m.shape());
  const Shape want = {p.batch, p.hq, p.sq, p.sk};
  Shape s4;
  if (m.dim() == 2) {
    s4 = {m.size(0), 1, 1, m.size(1)};
  } else if (m.dim() == 4) {
    s4 = m.shape();
  }
  bool ok = s4.size() == 4 && s4[3] == p.sk;
  for (size_t i = 0; ok && i < 3; ++i) ok = s4[i] == want[i] || s4[i] == 1;
  MCORE_CHECK(ok) << op << ": attention_mask " << shape_str(m.shape())
                  << " must be [B, Sk] or broadcastable to [B, Hq, Sq, Sk] = " << shape_str(want);
  holder = m.contiguous().view(s4);
  p.mask = holder.data<bool>();
  const Shape st = holder.strides();
  p.mask_sb = s4[0] == 1 ? 0 : st[0];
  p.mask_sh = s4[1] == 1 ? 0 : st[1];
  p.mask_si = s4[2] == 1 ? 0 : st[2];
}

DType acc_dtype(DType d) {
  return d == DType::F64 ? DType::F64 : DType::F32;
}

}  // namespace attention_impl

using namespace attention_impl;

AttentionForwardResult attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                         const AttentionOptions& options) {
#ifdef MCORE_WITH_CUDA
  if (q_in.defined() && q_in.device().is_cuda()) {
    (void)make_problem(q_in, k_in, v_in, options, "attention_forward", /*on_cpu=*/false);
    return cuda::attention_forward(q_in, k_in, v_in, options);
  }
#endif
  Problem p = make_problem(q_in, k_in, v_in, options, "attention_forward");
  Tensor mask_holder;
  bind_mask(p, options, mask_holder, "attention_forward");
  const Tensor q = rows_compatible(q_in), k = rows_compatible(k_in), v = rows_compatible(v_in);
  AttentionForwardResult r;
  r.out = empty({p.sq, p.batch, p.hq, p.dv}, {q.dtype(), q.device()});
  r.softmax_lse = empty({p.batch, p.hq, p.sq}, {acc_dtype(q.dtype()), q.device()});
  if (r.out.numel() == 0 && r.softmax_lse.numel() == 0) return r;
  (void)cpu::blas_info();  // load the BLAS backend outside the parallel region
  MCORE_DISPATCH_FLOAT_TYPES(q.dtype(), "attention_forward",
                             [&] { forward_kernel<scalar_t>(p, q, k, v, r.out, r.softmax_lse); });
  return r;
}

}  // namespace mcore::ops
