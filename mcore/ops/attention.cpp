#include "mcore/ops/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/cpu/vec_math.h"
#include "mcore/ops/device_check.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/attention_cuda.h"
#endif

namespace mcore::ops {

namespace {

// A 64 x 128 score tile is 32 KiB in float32: it, the Q tile and a K/V tile fit in L2 while the
// block GEMMs are still large enough for BLAS to run near peak. Score tiles are laid out with row
// stride kTileK; the forward walks keys in blocks of kTileK, the backward in blocks of half that:
// on causal rows the tiles that cross the diagonal are half masked, and the backward's five
// GEMMs per tile pay for that waste more than its smaller GEMMs lose (measured per layer, 2
// threads: S=256 3.63 -> 3.09 ms (GPT-2 shape), 2.32 -> 1.97 ms (GQA 8/4), S=1024 20.3 -> 19.1,
// S=2048 d=128 94.9 -> 90.2; the forward gained nothing at 64 and lost 3% at S >= 1024).
constexpr int64_t kBlockQ = 64;
constexpr int64_t kTileK = 128;
constexpr int64_t kBlockKBackward = 64;

// One [S, B, H, width] operand with a contiguous last dimension; other strides are arbitrary, so
// slices of a fused QKV tensor are read in place.
template <class T>
struct Rows {
  const T* p;
  int64_t ss, sb, sh;
  const T* row(int64_t s, int64_t b, int64_t h) const { return p + s * ss + b * sb + h * sh; }
};
template <class T>
Rows<T> rows_of(const Tensor& t) {
  return {static_cast<const T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2)};
}

// Sizes, scale and masks shared by the forward and backward kernels.
struct Problem {
  int64_t sq = 0, sk = 0, batch = 0, hq = 0, hkv = 0, group = 1, d = 0, dv = 0;
  double scale = 1.0;
  bool causal = false;
  int64_t causal_offset = 0;   // sk - sq: bottom-right aligned diagonal
  const bool* mask = nullptr;  // element (b, h, i, j) at b*mask_sb + h*mask_sh + i*mask_si + j
  int64_t mask_sb = 0, mask_sh = 0, mask_si = 0;

  // Keys [0, key_end(i)) may be visible to query i.
  int64_t key_end(int64_t i) const {
    return causal ? std::clamp<int64_t>(i + causal_offset + 1, 0, sk) : sk;
  }
  // Queries [query_begin(j), sq) may see key j.
  int64_t query_begin(int64_t j) const {
    return causal ? std::clamp<int64_t>(j - causal_offset, 0, sq) : 0;
  }
};

// Rows [s0, s0 + n) of head (b, h) as an A matrix with leading dimension *ld: the tensor's own
// memory when no conversion is needed (float32/float64), else widened into `buf`.
template <class T, class A>
const A* load_rows(const Rows<T>& src, int64_t s0, int64_t n, int64_t b, int64_t h, int64_t width,
                   A* buf, int64_t* ld) {
  if constexpr (std::is_same_v<T, A>) {
    *ld = n > 1 ? src.ss : width;  // a single row's stride may be anything (size-1 dim)
    return src.row(s0, b, h);
  } else {
    for (int64_t r = 0; r < n; ++r) {
      const T* x = src.row(s0 + r, b, h);
      A* y = buf + r * width;
      for (int64_t e = 0; e < width; ++e) y[e] = static_cast<A>(x[e]);
    }
    *ld = width;
    return buf;
  }
}

// Sets masked scores of the tile (queries i0.., keys j0..) to -inf.
template <class A>
void apply_masks(A* s, int64_t nq, int64_t nk, int64_t i0, int64_t j0, int64_t b, int64_t h,
                 const Problem& p) {
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  if (p.causal && j0 + nk - 1 > i0 + p.causal_offset) {  // the tile crosses the diagonal
    for (int64_t r = 0; r < nq; ++r) {
      int64_t first = std::max<int64_t>(0, i0 + r + p.causal_offset + 1 - j0);
      A* sr = s + r * kTileK;
      for (int64_t c = first; c < nk; ++c) sr[c] = kNegInf;
    }
  }
  if (p.mask) {
    for (int64_t r = 0; r < nq; ++r) {
      const bool* mr = p.mask + b * p.mask_sb + h * p.mask_sh + (i0 + r) * p.mask_si + j0;
      A* sr = s + r * kTileK;
      for (int64_t c = 0; c < nk; ++c)
        if (mr[c]) sr[c] = kNegInf;
    }
  }
}

// Per-thread scratch, allocated once per parallel region.
template <class A>
struct Workspace {
  std::vector<A> q, k, v, dout, s, dp, acc0, acc1, m, l;
  explicit Workspace(const Problem& p)
      : q(kBlockQ * p.d),
        k(kTileK * p.d),
        v(kTileK * p.dv),
        dout(kBlockQ * p.dv),
        s(kBlockQ * kTileK),
        dp(kBlockQ * kTileK),
        acc0(std::max(kBlockQ, kTileK) * std::max(p.d, p.dv)),
        acc1(kTileK * p.dv),
        m(kBlockQ),
        l(kBlockQ) {}
};

template <class T>
void forward_kernel(const Problem& p, const Tensor& q, const Tensor& k, const Tensor& v,
                    Tensor& out, Tensor& lse) {
  using A = acc_t<T>;
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  const Rows<T> qr = rows_of<T>(q), kr = rows_of<T>(k), vr = rows_of<T>(v);
  T* op = out.data<T>();
  A* lp = lse.data<A>();
  const int64_t nqb = (p.sq + kBlockQ - 1) / kBlockQ;
  const int64_t tasks = p.batch * p.hq * nqb;
#pragma omp parallel
  {
    Workspace<A> ws(p);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = t % nqb, h = (t / nqb) % p.hq, b = t / (nqb * p.hq);
      const int64_t hk = h / p.group;
      const int64_t i0 = qb * kBlockQ, nq = std::min(kBlockQ, p.sq - i0);
      int64_t ldq, ldk, ldv;
      const A* qp = load_rows(qr, i0, nq, b, h, p.d, ws.q.data(), &ldq);
      A* o = ws.acc0.data();
      A *m = ws.m.data(), *l = ws.l.data(), *s = ws.s.data();
      std::fill(o, o + nq * p.dv, A(0));
      std::fill(m, m + nq, kNegInf);
      std::fill(l, l + nq, A(0));
      const int64_t kend = p.key_end(i0 + nq - 1);
      for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
        const int64_t nk = std::min(kTileK, kend - j0);
        const A* kp = load_rows(kr, j0, nk, b, hk, p.d, ws.k.data(), &ldk);
        const A* vp = load_rows(vr, j0, nk, b, hk, p.dv, ws.v.data(), &ldv);
        cpu::gemm(false, true, nq, nk, p.d, static_cast<A>(p.scale), qp, ldq, kp, ldk, A(0), s,
                  kTileK);
        apply_masks(s, nq, nk, i0, j0, b, h, p);
        // Online softmax: rescale the running sum and output by exp(m_old - m_new), then add
        // this tile's exp(s - m_new) (left in s as the probabilities P for the PV product).
        for (int64_t r = 0; r < nq; ++r) {
          A* sr = s + r * kTileK;
          A mx = m[r];
#pragma omp simd reduction(max : mx)
          for (int64_t c = 0; c < nk; ++c) mx = sr[c] > mx ? sr[c] : mx;
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
        cpu::gemm(false, false, nq, p.dv, nk, A(1), s, kTileK, vp, ldv, A(1), o, p.dv);
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

// Recomputes P = exp(scale * Q K^T - lse) for one tile (masked entries 0) and, from
// dP = dO V^T, dS = P * (dP - delta) in ws.dp. P stays in ws.s.
template <class A>
void tile_grads(const Problem& p, Workspace<A>& ws, const A* qp, int64_t ldq, const A* kp,
                int64_t ldk, const A* vp, int64_t ldv, const A* dop, int64_t lddo, const A* lse,
                const A* delta, int64_t nq, int64_t nk, int64_t i0, int64_t j0, int64_t b,
                int64_t h) {
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  A *s = ws.s.data(), *dp = ws.dp.data();
  cpu::gemm(false, true, nq, nk, p.d, static_cast<A>(p.scale), qp, ldq, kp, ldk, A(0), s, kTileK);
  apply_masks(s, nq, nk, i0, j0, b, h, p);
  cpu::gemm(false, true, nq, nk, p.dv, A(1), dop, lddo, vp, ldv, A(0), dp, kTileK);
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
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) dr[c] = sr[c] * (dr[c] - dl);
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

// One key block [j0, j0 + nk) of kv head hk: its dK and dV rows, summed over every query head
// of the group and every query tile that can see the keys, written to dk/dv. With gq (the
// group's dQ accumulators, [group, sq, d]) each tile also adds its dQ part there, so P and dS
// serve all three gradients.
template <class T>
void key_block_grads(const Problem& p, Workspace<acc_t<T>>& ws, const BackwardRows<T>& r, int64_t b,
                     int64_t hk, int64_t j0, int64_t nk, T* dkp, T* dvp, acc_t<T>* gq) {
  using A = acc_t<T>;
  int64_t ldk, ldv, ldq, lddo;
  const A* kp = load_rows(r.k, j0, nk, b, hk, p.d, ws.k.data(), &ldk);
  const A* vp = load_rows(r.v, j0, nk, b, hk, p.dv, ws.v.data(), &ldv);
  A* gk = ws.acc0.data();
  A* gv = ws.acc1.data();
  std::fill(gk, gk + nk * p.d, A(0));
  std::fill(gv, gv + nk * p.dv, A(0));
  const int64_t qstart = p.query_begin(j0) / kBlockQ * kBlockQ;
  for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
    for (int64_t i0 = qstart; i0 < p.sq; i0 += kBlockQ) {
      const int64_t nq = std::min(kBlockQ, p.sq - i0);
      const A* qp = load_rows(r.q, i0, nq, b, h, p.d, ws.q.data(), &ldq);
      const A* dop = load_rows(r.dout, i0, nq, b, h, p.dv, ws.dout.data(), &lddo);
      const int64_t row = (b * p.hq + h) * p.sq + i0;
      tile_grads(p, ws, qp, ldq, kp, ldk, vp, ldv, dop, lddo, r.lse + row, r.delta + row, nq, nk,
                 i0, j0, b, h);
      // dV += P^T dO;  dK += scale * dS^T Q;  (dQ += scale * dS K).
      cpu::gemm(true, false, nk, p.dv, nq, A(1), ws.s.data(), kTileK, dop, lddo, A(1), gv, p.dv);
      cpu::gemm(true, false, nk, p.d, nq, static_cast<A>(p.scale), ws.dp.data(), kTileK, qp, ldq,
                A(1), gk, p.d);
      if (gq) {
        A* gqh = gq + (h - hk * p.group) * p.sq * p.d;
        cpu::gemm(false, false, nq, p.d, nk, static_cast<A>(p.scale), ws.dp.data(), kTileK, kp, ldk,
                  A(1), gqh + i0 * p.d, p.d);
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

template <class T>
BackwardRows<T> backward_rows(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& lse, const Tensor& delta) {
  return {rows_of<T>(q),    rows_of<T>(k),        rows_of<T>(v),
          rows_of<T>(dout), lse.data<acc_t<T>>(), delta.data<acc_t<T>>()};
}

// dK and dV: one task per (batch, kv head, key block), looping over every query head of the
// group and every query block that can see the keys. Each task owns its rows of dK/dV, so the
// GQA reduction needs no atomics and the result is deterministic.
template <class T>
void backward_dkdv_kernel(const Problem& p, const Tensor& dout, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& lse, const Tensor& delta, Tensor& dk,
                          Tensor& dv) {
  const BackwardRows<T> r = backward_rows<T>(dout, q, k, v, lse, delta);
  T* dkp = dk.data<T>();
  T* dvp = dv.data<T>();
  const int64_t nkb = (p.sk + kBlockKBackward - 1) / kBlockKBackward;
  const int64_t tasks = p.batch * p.hkv * nkb;
#pragma omp parallel
  {
    Workspace<acc_t<T>> ws(p);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t kb = t % nkb, hk = (t / nkb) % p.hkv, b = t / (nkb * p.hkv);
      const int64_t j0 = kb * kBlockKBackward;
      key_block_grads<T>(p, ws, r, b, hk, j0, std::min(kBlockKBackward, p.sk - j0), dkp, dvp,
                         nullptr);
    }
  }
}

// dK, dV and dQ in one pass: one task per (batch, kv head) walks every key block and, for each,
// every visible query tile of the group's heads, so dQ (of the group's heads, which no other
// task touches) accumulates in the task's own buffer. Each tile's P and dS are computed once
// (5 block GEMMs per tile, where the two passes take 7), at the price of coarser tasks: used
// when there are enough (batch, kv head) tasks to balance the threads and dQ's buffer is small.
// MCORE_ATTENTION_BACKWARD=fused forces the one-pass backward whenever its dQ buffer fits (tests
// use it to cover that kernel at small shapes), =two_pass forbids it; unset, the shape decides.
enum class BackwardMode { kAuto, kFused, kTwoPass };
BackwardMode backward_mode() {
  const char* env = std::getenv("MCORE_ATTENTION_BACKWARD");
  if (!env) return BackwardMode::kAuto;
  if (std::strcmp(env, "fused") == 0) return BackwardMode::kFused;
  if (std::strcmp(env, "two_pass") == 0) return BackwardMode::kTwoPass;
  return BackwardMode::kAuto;
}

template <class T>
void backward_fused_kernel(const Problem& p, const Tensor& dout, const Tensor& q, const Tensor& k,
                           const Tensor& v, const Tensor& lse, const Tensor& delta, Tensor& dq,
                           Tensor& dk, Tensor& dv) {
  using A = acc_t<T>;
  const BackwardRows<T> r = backward_rows<T>(dout, q, k, v, lse, delta);
  T* dqp = dq.data<T>();
  T* dkp = dk.data<T>();
  T* dvp = dv.data<T>();
  const int64_t tasks = p.batch * p.hkv;
#pragma omp parallel
  {
    Workspace<A> ws(p);
    std::vector<A> gq_all(static_cast<size_t>(p.group * p.sq * p.d));
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t hk = t % p.hkv, b = t / p.hkv;
      std::fill(gq_all.begin(), gq_all.end(), A(0));
      for (int64_t j0 = 0; j0 < p.sk; j0 += kBlockKBackward)
        key_block_grads<T>(p, ws, r, b, hk, j0, std::min(kBlockKBackward, p.sk - j0), dkp, dvp,
                           gq_all.data());
      for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
        const A* gq = gq_all.data() + (h - hk * p.group) * p.sq * p.d;
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
// block GEMMs but keeps both passes free of write conflicts.
template <class T>
void backward_dq_kernel(const Problem& p, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& lse, const Tensor& delta, Tensor& dq) {
  using A = acc_t<T>;
  const Rows<T> qr = rows_of<T>(q), kr = rows_of<T>(k), vr = rows_of<T>(v), dor = rows_of<T>(dout);
  const A* lp = lse.data<A>();
  const A* dlp = delta.data<A>();
  T* dqp = dq.data<T>();
  const int64_t nqb = (p.sq + kBlockQ - 1) / kBlockQ;
  const int64_t tasks = p.batch * p.hq * nqb;
#pragma omp parallel
  {
    Workspace<A> ws(p);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = t % nqb, h = (t / nqb) % p.hq, b = t / (nqb * p.hq);
      const int64_t hk = h / p.group;
      const int64_t i0 = qb * kBlockQ, nq = std::min(kBlockQ, p.sq - i0);
      int64_t ldq, lddo, ldk, ldv;
      const A* qp = load_rows(qr, i0, nq, b, h, p.d, ws.q.data(), &ldq);
      const A* dop = load_rows(dor, i0, nq, b, h, p.dv, ws.dout.data(), &lddo);
      const int64_t row = (b * p.hq + h) * p.sq + i0;
      A* gq = ws.acc0.data();
      std::fill(gq, gq + nq * p.d, A(0));
      const int64_t kend = p.key_end(i0 + nq - 1);
      for (int64_t j0 = 0; j0 < kend; j0 += kBlockKBackward) {
        const int64_t nk = std::min(kBlockKBackward, kend - j0);
        const A* kp = load_rows(kr, j0, nk, b, hk, p.d, ws.k.data(), &ldk);
        const A* vp = load_rows(vr, j0, nk, b, hk, p.dv, ws.v.data(), &ldv);
        tile_grads(p, ws, qp, ldq, kp, ldk, vp, ldv, dop, lddo, lp + row, dlp + row, nq, nk, i0, j0,
                   b, h);
        // dQ += scale * dS K.
        cpu::gemm(false, false, nq, p.d, nk, static_cast<A>(p.scale), ws.dp.data(), kTileK, kp, ldk,
                  A(1), gq, p.d);
      }
      for (int64_t r = 0; r < nq; ++r) {
        T* dst = dqp + (((i0 + r) * p.batch + b) * p.hq + h) * p.d;
        for (int64_t e = 0; e < p.d; ++e) dst[e] = store<T>(gq[r * p.d + e]);
      }
    }
  }
}

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
                     const char* op, bool on_cpu = true) {
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

}  // namespace

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
  // dQ buffer (the group's heads, whole sequence) stays small; else the two finer-grained passes.
  const int64_t dq_buffer_bytes = p.group * p.sq * p.d * static_cast<int64_t>(dtype_size(adt));
  const BackwardMode mode = backward_mode();
  const bool fused = mode != BackwardMode::kTwoPass && dq_buffer_bytes <= (int64_t(4) << 20) &&
                     (mode == BackwardMode::kFused ||
                      p.batch * p.hkv >= 4 * static_cast<int64_t>(omp_get_max_threads()));
  MCORE_DISPATCH_FLOAT_TYPES(q.dtype(), "attention_backward", [&] {
    delta_kernel<scalar_t>(p, dout, out, delta);
    if (fused) {
      backward_fused_kernel<scalar_t>(p, dout, q, k, v, lse, delta, g.dq, g.dk, g.dv);
    } else {
      backward_dkdv_kernel<scalar_t>(p, dout, q, k, v, lse, delta, g.dk, g.dv);
      backward_dq_kernel<scalar_t>(p, dout, q, k, v, lse, delta, g.dq);
    }
  });
  return g;
}

}  // namespace mcore::ops
