// Internals shared by the CPU attention kernels (attention.cpp: forward and argument checks;
// attention_backward.cpp: the backward passes). Not a public interface: the types describe one
// call's problem, its operands as rows, the per-thread scratch and the packed K/V layouts the
// tile products (cpu::tile_gemm) read.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "mcore/ops/attention.h"
#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/cpu/tile_gemm.h"

namespace mcore::ops::attention_impl {

// A 64 x 128 score tile is 32 KiB in float32: it, the Q tile and the packed K/V of a head fit in
// L2. Score tiles are laid out with row stride kTileK; the forward walks keys in blocks of
// kTileK, the backward in blocks of half that. Before the causal band (TileBand) skipped the
// masked half of diagonal tiles, 64-key backward blocks beat 128 (S=256 GPT-2 layer 3.63 -> 3.09
// ms); with the band, 128/64 and 256/128 measure within noise of each other. Key blocks start at
// multiples of 64, the panel width of the packed K^T / V^T (cpu::TileB).
constexpr int64_t kBlockQ = 64;
constexpr int64_t kTileK = 128;
constexpr int64_t kBlockKBackward = 64;
constexpr int64_t kPanel = 64;

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
  // For the tile of queries i0.. and nk keys j0..: key j0 + c is causally visible to query
  // i0 + r iff c <= r + diag. False (and no band) when every key of the tile is visible.
  bool cut(int64_t i0, int64_t j0, int64_t nk, int64_t* diag) const {
    *diag = i0 + causal_offset - j0;
    return causal && nk - 1 > *diag;
  }
};

// The causal bands of a tile with diagonal offset diag (Problem::cut): scores and dP need
// columns c <= r + diag; P and dS rows are zero past that (P V, dS K); their transposes are zero
// before row c - diag (P^T dO, dS^T Q).
inline cpu::TileBand scores_band(bool cut, int64_t diag) {
  cpu::TileBand b;
  if (cut) b.n_end = diag + 1;
  return b;
}
inline cpu::TileBand rows_band(bool cut, int64_t diag) {
  cpu::TileBand b;
  if (cut) b.k_end = diag + 1;
  return b;
}
inline cpu::TileBand transposed_band(bool cut, int64_t diag) {
  cpu::TileBand b;
  if (cut) b.k_begin = -diag;
  return b;
}

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

// Rows [0, n) of head (b, h) copied contiguously (row stride width) into buf: a B operand for
// the tile products that every tile of the head reuses, without the set conflicts that rows a
// power-of-two-ish stride apart cause in L1.
template <class T, class A>
void pack_rows(const Rows<T>& src, int64_t n, int64_t b, int64_t h, int64_t width, A* buf) {
  for (int64_t j = 0; j < n; ++j) {
    const T* x = src.row(j, b, h);
    A* y = buf + j * width;
    for (int64_t e = 0; e < width; ++e) y[e] = static_cast<A>(x[e]);
  }
}

// Rows [0, n) of head (b, h), transposed into 64-column panels: element (e, j) at
// buf[(j / 64) * 64 * width + e * 64 + j % 64]. The B operand of Q K^T and dO V^T.
template <class T, class A>
void pack_transposed_panels(const Rows<T>& src, int64_t n, int64_t b, int64_t h, int64_t width,
                            A* buf) {
  if constexpr (std::is_same_v<T, A>) {
    for (int64_t j = 0; j < n; j += 16) {  // 16 keys at a time, never across a panel
      cpu::transpose_block(src.row(j, b, h), src.ss, std::min<int64_t>(16, n - j), width,
                           buf + (j / kPanel) * kPanel * width + j % kPanel, kPanel);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const T* x = src.row(j, b, h);
      A* y = buf + (j / kPanel) * kPanel * width + j % kPanel;
      for (int64_t e = 0; e < width; ++e) y[e * kPanel] = static_cast<A>(x[e]);
    }
  }
}
template <class A>
cpu::TileB<A> panels_at(const A* buf, int64_t width, int64_t j0) {
  return {buf + (j0 / kPanel) * kPanel * width, kPanel, kPanel * width};
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

inline int64_t round_up_panels(int64_t n) {
  return (n + kPanel - 1) / kPanel * kPanel;
}

// Per-thread scratch: tiles, accumulators, and the packed operands of one kv head. Kept per
// thread across calls (thread_local in the kernels; OpenMP reuses its threads) and only grown:
// allocating it per call made glibc trim and re-fault its heap every call (page faults and TLB
// shootdowns, ~6% of a small attention call).
template <class A>
struct Workspace {
  std::vector<A> q, dout, s, dp, acc0, acc1, m, l, kt, krows, vrows, q_all, do_all, gq_all;
  // Sizes the tile buffers for p; the packed-operand buffers are sized by grow() as used.
  void fit(const Problem& p) {
    grow(q, kBlockQ * p.d);
    grow(dout, kBlockQ * p.dv);
    grow(s, kBlockQ * kTileK);
    grow(dp, kBlockQ * kTileK);
    grow(acc0, std::max(kBlockQ, kTileK) * std::max(p.d, p.dv));
    grow(acc1, kTileK * p.dv);
    grow(m, kBlockQ);
    grow(l, kBlockQ);
  }
  static A* grow(std::vector<A>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
  }
};

// Argument checks and setup shared by attention_forward and attention_backward (attention.cpp).
Problem make_problem(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o,
                     const char* op, bool on_cpu = true);
void bind_mask(Problem& p, const AttentionOptions& o, Tensor& holder, const char* op);
Tensor rows_compatible(const Tensor& t);
DType acc_dtype(DType d);

}  // namespace mcore::ops::attention_impl
