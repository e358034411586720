// Fused attention (mcore/ops/attention.h): float64 gradient checks on odd shapes, forward and
// backward against an explicit softmax(q k^T * scale + mask) v computed by PyTorch in float64
// (tests/reference/gen_attention.py), a 1024-token sequence against a naive O(S^2) reference,
// and input validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <limits>
#include <vector>

#include "mcore/nn/functional/attention.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/tensor/factory.h"
#include "tests/attention/attention_util.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using testing::expect_error_naming;
using testing::gradcheck;
using testing::leaf;
using testing::load_ref;
using testing::random_tensor;

constexpr const char* kGroup = "attention";

// Naive attention in double over sbhd vectors, with its gradients: the O(S^2)-memory baseline.
struct Naive {
  std::vector<double> out, dq, dk, dv;
};
Naive naive_attention(const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v, const std::vector<double>& dout, int64_t sq,
                      int64_t sk, int64_t b, int64_t hq, int64_t hkv, int64_t d, bool causal) {
  Naive r;
  r.out.assign(sq * b * hq * d, 0);
  r.dq.assign(sq * b * hq * d, 0);
  r.dk.assign(sk * b * hkv * d, 0);
  r.dv.assign(sk * b * hkv * d, 0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const int64_t group = hq / hkv;
  std::vector<double> p(sq * sk), dp(sq * sk);
  auto qi = [&](int64_t i, int64_t bb, int64_t h) { return ((i * b + bb) * hq + h) * d; };
  auto ki = [&](int64_t j, int64_t bb, int64_t h) { return ((j * b + bb) * hkv + h) * d; };
  for (int64_t bb = 0; bb < b; ++bb) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < sq; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < sk; ++j) {
          double s = 0;
          for (int64_t e = 0; e < d; ++e) s += q[qi(i, bb, h) + e] * k[ki(j, bb, hk) + e];
          s *= scale;
          if (causal && j > i + sk - sq) s = -INFINITY;
          p[i * sk + j] = s;
          mx = std::max(mx, s);
        }
        double sum = 0;
        for (int64_t j = 0; j < sk; ++j) sum += p[i * sk + j] = std::exp(p[i * sk + j] - mx);
        for (int64_t j = 0; j < sk; ++j) p[i * sk + j] /= sum;
        for (int64_t j = 0; j < sk; ++j)
          for (int64_t e = 0; e < d; ++e)
            r.out[qi(i, bb, h) + e] += p[i * sk + j] * v[ki(j, bb, hk) + e];
      }
      for (int64_t i = 0; i < sq; ++i) {
        double delta = 0;
        for (int64_t j = 0; j < sk; ++j) {
          double g = 0;
          for (int64_t e = 0; e < d; ++e) g += dout[qi(i, bb, h) + e] * v[ki(j, bb, hk) + e];
          dp[i * sk + j] = g;
          delta += p[i * sk + j] * g;
        }
        for (int64_t j = 0; j < sk; ++j) {
          const double ds = p[i * sk + j] * (dp[i * sk + j] - delta) * scale;
          for (int64_t e = 0; e < d; ++e) {
            r.dq[qi(i, bb, h) + e] += ds * k[ki(j, bb, hk) + e];
            r.dk[ki(j, bb, hk) + e] += ds * q[qi(i, bb, h) + e];
            r.dv[ki(j, bb, hk) + e] += p[i * sk + j] * dout[qi(i, bb, h) + e];
          }
        }
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Gradient checks (float64, central differences; default gradcheck tolerances rtol 1e-5,
// atol 1e-7: the kernel is exact up to float64 rounding). Sq=5, Sk=7, B=2, Hq=4, Hkv=2, D=3.

struct GradcheckCase {
  int64_t sq, sk, b, hq, hkv, d, dv;
  bool causal;
  int mask;  // 0 none, 1 [B, Sk] padding, 2 dense [B, 1, Sq, Sk]
};

void run_gradcheck(const GradcheckCase& c, uint64_t seed) {
  Tensor q = leaf(random_tensor({c.sq, c.b, c.hq, c.d}, seed));
  Tensor k = leaf(random_tensor({c.sk, c.b, c.hkv, c.d}, seed + 1));
  Tensor v = leaf(random_tensor({c.sk, c.b, c.hkv, c.dv}, seed + 2));
  ops::AttentionOptions opts;
  opts.causal = c.causal;
  if (c.mask == 1) {
    std::vector<bool> m(c.b * c.sk, false);
    for (int64_t j = c.sk - 2; j < c.sk; ++j) m[1 * c.sk + j] = true;  // sample 1: 2 pad keys
    Tensor mt = empty({c.b, c.sk}, DType::BOOL);
    for (size_t i = 0; i < m.size(); ++i) mt.data<bool>()[i] = m[i];
    opts.attention_mask = mt;
  } else if (c.mask == 2) {
    Tensor r = random_tensor({c.b, 1, c.sq, c.sk}, seed + 3);
    Tensor mt = empty({c.b, 1, c.sq, c.sk}, DType::BOOL);
    for (int64_t i = 0; i < mt.numel(); ++i) {
      // Mask ~30% but never key 0, so no row is fully masked by the dense mask alone.
      mt.data<bool>()[i] = (i % c.sk) != 0 && r.data<double>()[i] > 0.4;
    }
    opts.attention_mask = mt;
  }
  auto fn = [opts](const std::vector<Tensor>& in) {
    return F::attention(in[0], in[1], in[2], opts);
  };
  EXPECT_TRUE(gradcheck(fn, {q, k, v}));
}

TEST(Attention, GradcheckGqaNonCausal) {
  run_gradcheck({5, 7, 2, 4, 2, 3, 3, false, 0}, 11);
}
TEST(Attention, GradcheckGqaCausal) {
  run_gradcheck({5, 7, 2, 4, 2, 3, 3, true, 0}, 12);
}
TEST(Attention, GradcheckPaddingMask) {
  run_gradcheck({5, 7, 2, 4, 2, 3, 3, false, 1}, 13);
}
TEST(Attention, GradcheckCausalPaddingMask) {
  run_gradcheck({5, 7, 2, 4, 2, 3, 3, true, 1}, 14);
}
TEST(Attention, GradcheckDenseMaskMqaDvDiffers) {
  run_gradcheck({5, 7, 2, 3, 1, 3, 4, true, 2}, 15);
}
// Sq > Sk, causal: the first two queries see no key (output 0, gradient 0) and the rest a
// bottom-right aligned diagonal.
TEST(Attention, GradcheckCausalMoreQueriesThanKeys) {
  run_gradcheck({7, 5, 1, 2, 2, 3, 3, true, 0}, 16);
}
// Spans several 64-query and 128-key blocks, so the online-softmax rescaling across key blocks
// and the block skipping of the causal mask are differentiated too.
TEST(Attention, GradcheckAcrossBlocks) {
  run_gradcheck({70, 131, 1, 2, 1, 2, 2, true, 0}, 17);
}

TEST(Attention, FullyMaskedRowsAreZero) {
  Tensor q = random_tensor({4, 1, 1, 3}, 1), k = random_tensor({2, 1, 1, 3}, 2);
  Tensor v = random_tensor({2, 1, 1, 3}, 3);
  ops::AttentionOptions opts;
  opts.causal = true;  // Sq 4 > Sk 2: queries 0 and 1 see nothing
  auto r = ops::attention_forward(q, k, v, opts);
  std::vector<double> out = to_vector<double>(r.out), lse = to_vector<double>(r.softmax_lse);
  for (int e = 0; e < 6; ++e) EXPECT_EQ(out[e], 0.0);
  EXPECT_EQ(lse[0], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isfinite(lse[2]));
  // Query 3 sees both keys: its output is a convex combination of v's rows.
  EXPECT_NE(out[9], 0.0);
}

// ---------------------------------------------------------------------------------------------
// Against PyTorch (explicit softmax attention, float64 from the same float32 inputs).

struct RefCase {
  const char* name;
  bool causal;
  double scale;  // 0: default
  bool has_mask;
};

void run_reference(const RefCase& c, DType dtype, double rtol, double atol) {
  const std::string n = c.name;
  Tensor q = leaf(load_ref(kGroup, n + "_q").to(dtype));
  Tensor k = leaf(load_ref(kGroup, n + "_k").to(dtype));
  Tensor v = leaf(load_ref(kGroup, n + "_v").to(dtype));
  Tensor dout = load_ref(kGroup, n + "_dout").to(dtype);
  ops::AttentionOptions opts;
  opts.causal = c.causal;
  opts.softmax_scale = c.scale;
  if (c.has_mask) opts.attention_mask = load_ref(kGroup, n + "_mask");
  Tensor out = F::attention(q, k, v, opts);
  out.backward(dout);
  EXPECT_EQ(out.dtype(), dtype);
  EXPECT_TENSOR_CLOSE(out, load_ref(kGroup, n + "_out"), rtol, atol);
  EXPECT_TENSOR_CLOSE(q.grad(), load_ref(kGroup, n + "_dq"), rtol, atol);
  EXPECT_TENSOR_CLOSE(k.grad(), load_ref(kGroup, n + "_dk"), rtol, atol);
  EXPECT_TENSOR_CLOSE(v.grad(), load_ref(kGroup, n + "_dv"), rtol, atol);
}

// float32: each output is a softmax-weighted sum over <= 150 keys of O(1) values, accumulated
// in float32 through BLAS; the observed worst error is 1e-6 absolute on gradient entries of a few
// units (a few float32 ulp), so rtol 1e-5 with atol 1e-6 (for entries that cancel to near zero).
TEST(Attention, ReferenceGqaCausalF32) {
  run_reference({"attn_gqa_causal", true, 0.0, false}, DType::F32, 1e-5, 1e-6);
}
TEST(Attention, ReferenceMqaPaddingF32) {
  run_reference({"attn_mqa_padding", false, 0.0, true}, DType::F32, 1e-5, 1e-6);
}
TEST(Attention, ReferenceCausalDenseMaskF32) {
  run_reference({"attn_causal_dense", true, 0.3, true}, DType::F32, 1e-5, 1e-6);
}
// bf16: inputs are exact bf16 values; we compute in float32 and round each output once
// (half an ulp = 2^-9 relative). The gradients also use the bf16-rounded forward output in
// delta = rowsum(dO * O), as FlashAttention does, which perturbs dS by ~1e-2 of its scale.
// Observed worst errors: 4e-3 (out), 1.3e-2 absolute on dv entries of ~4; rtol 2e-2 plus
// atol 2e-2 (gradient entries are O(1) and may cancel) covers that.
TEST(Attention, ReferenceBf16) {
  run_reference({"attn_bf16", true, 0.0, false}, DType::BF16, 2e-2, 2e-2);
}

// Strided views (slices of a fused QKV projection, as SelfAttention produces) are read in place
// and give the same values as contiguous copies.
TEST(Attention, StridedInputsMatchContiguous) {
  const int64_t s = 9, b = 2, h = 2, d = 4;
  Tensor qkv = random_tensor({s, b, h, 3 * d}, 21, DType::F32);
  Tensor q = qkv.narrow(3, 0, d), k = qkv.narrow(3, d, d), v = qkv.narrow(3, 2 * d, d);
  ASSERT_FALSE(q.is_contiguous());
  ops::AttentionOptions opts;
  opts.causal = true;
  auto a = ops::attention_forward(q, k, v, opts);
  auto c = ops::attention_forward(q.contiguous(), k.contiguous(), v.contiguous(), opts);
  EXPECT_TENSOR_CLOSE(a.out, c.out, 0, 0);
  Tensor dout = random_tensor({s, b, h, d}, 22, DType::F32);
  auto ga = ops::attention_backward(dout, q, k, v, a.out, a.softmax_lse, opts);
  auto gc = ops::attention_backward(dout, q.contiguous(), k.contiguous(), v.contiguous(), c.out,
                                    c.softmax_lse, opts);
  EXPECT_TENSOR_CLOSE(ga.dq, gc.dq, 0, 0);
  EXPECT_TENSOR_CLOSE(ga.dk, gc.dk, 0, 0);
  EXPECT_TENSOR_CLOSE(ga.dv, gc.dv, 0, 0);
}

// The GQA reduction of dk/dv has one owner per key block: repeated runs are bitwise equal.
TEST(Attention, BackwardIsDeterministic) {
  Tensor q = random_tensor({150, 1, 4, 8}, 31, DType::F32);
  Tensor k = random_tensor({150, 1, 1, 8}, 32, DType::F32);
  Tensor v = random_tensor({150, 1, 1, 8}, 33, DType::F32);
  Tensor dout = random_tensor({150, 1, 4, 8}, 34, DType::F32);
  auto f = ops::attention_forward(q, k, v);
  auto g1 = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse);
  auto g2 = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse);
  EXPECT_TENSOR_CLOSE(g1.dk, g2.dk, 0, 0);
  EXPECT_TENSOR_CLOSE(g1.dq, g2.dq, 0, 0);
}

// The one-pass backward (dQ accumulated per (batch, kv head) task) against the two-pass one,
// forced both ways with MCORE_ATTENTION_BACKWARD: GQA, several key and query blocks, causal with
// more keys than queries, a padding mask, float32 and bf16. Same tile products summed in the
// same order for dK/dV (bitwise equal); dQ sums its key blocks in the same order too, so all
// three are expected equal up to float32 rounding of identical operations (rtol 1e-6).
TEST(Attention, FusedBackwardMatchesTwoPass) {
  struct Case {
    int64_t sq, sk, b, hq, hkv, d;
    bool causal, pad;
    DType dtype;
  };
  const Case cases[] = {{200, 300, 2, 6, 2, 16, true, false, DType::F32},
                        {130, 130, 3, 4, 4, 8, false, true, DType::F32},
                        {70, 150, 1, 4, 1, 8, true, true, DType::BF16}};
  uint64_t seed = 60;
  for (const Case& c : cases) {
    Tensor q = random_tensor({c.sq, c.b, c.hq, c.d}, seed++, DType::F32).to(c.dtype);
    Tensor k = random_tensor({c.sk, c.b, c.hkv, c.d}, seed++, DType::F32).to(c.dtype);
    Tensor v = random_tensor({c.sk, c.b, c.hkv, c.d}, seed++, DType::F32).to(c.dtype);
    Tensor dout = random_tensor({c.sq, c.b, c.hq, c.d}, seed++, DType::F32).to(c.dtype);
    ops::AttentionOptions opts;
    opts.causal = c.causal;
    if (c.pad) {
      Tensor m = zeros({c.b, c.sk}, DType::BOOL);
      for (int64_t j = c.sk - 5; j < c.sk; ++j) m.data<bool>()[(c.b - 1) * c.sk + j] = true;
      opts.attention_mask = m;
    }
    auto f = ops::attention_forward(q, k, v, opts);
    setenv("MCORE_ATTENTION_BACKWARD", "fused", 1);
    auto g1 = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, opts);
    setenv("MCORE_ATTENTION_BACKWARD", "two_pass", 1);
    auto g2 = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, opts);
    unsetenv("MCORE_ATTENTION_BACKWARD");
    EXPECT_TENSOR_CLOSE(g1.dq, g2.dq, 1e-6, 1e-7);
    EXPECT_TENSOR_CLOSE(g1.dk, g2.dk, 1e-6, 1e-7);
    EXPECT_TENSOR_CLOSE(g1.dv, g2.dv, 1e-6, 1e-7);
  }
}

// ---------------------------------------------------------------------------------------------
// Long sequence: S = 1024, B = 1, Hq = 2, Hkv = 1, D = 8, causal, float32, against the naive
// float64 computation above (which holds the 1024 x 1024 probability matrix per head).
//
// Memory: the kernel keeps no S x S state. Per thread it holds a 64 x 128 score tile and a
// 64 x 128 dP tile plus Q/K/V/dO/accumulator tiles of <= 128 x D rows (~100 KiB in float32 at
// D = 8), and across threads only the [B, Hq, S] logsumexp (8 KiB here) besides the outputs;
// the naive path needs S x S x Hq x 4 bytes = 8 MiB of scores (and as much again for the
// backward's dP). Tolerance: float32 accumulation over up to 1024 keys, rtol 1e-4 / atol 1e-5.
TEST(Attention, LongSequenceMatchesNaive) {
  const int64_t s = 1024, b = 1, hq = 2, hkv = 1, d = 8;
  Tensor q = random_tensor({s, b, hq, d}, 41, DType::F32);
  Tensor k = random_tensor({s, b, hkv, d}, 42, DType::F32);
  Tensor v = random_tensor({s, b, hkv, d}, 43, DType::F32);
  Tensor dout = random_tensor({s, b, hq, d}, 44, DType::F32);
  ops::AttentionOptions opts;
  opts.causal = true;
  auto f = ops::attention_forward(q, k, v, opts);
  EXPECT_EQ(f.softmax_lse.shape(), (Shape{b, hq, s}));
  auto g = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, opts);
  Naive ref = naive_attention(to_vector<double>(q), to_vector<double>(k), to_vector<double>(v),
                              to_vector<double>(dout), s, s, b, hq, hkv, d, true);
  EXPECT_TENSOR_CLOSE(f.out, from_vector<double>(ref.out, {s, b, hq, d}), 1e-4, 1e-5);
  EXPECT_TENSOR_CLOSE(g.dq, from_vector<double>(ref.dq, {s, b, hq, d}), 1e-4, 1e-5);
  EXPECT_TENSOR_CLOSE(g.dk, from_vector<double>(ref.dk, {s, b, hkv, d}), 1e-4, 1e-5);
  EXPECT_TENSOR_CLOSE(g.dv, from_vector<double>(ref.dv, {s, b, hkv, d}), 1e-4, 1e-5);
}

// Head dims over the 64-column panel width (d = 80: a full panel and a partial one), more keys
// than queries with the causal diagonal crossing tiles at odd offsets, GQA, against the float64
// naive computation: the one-pass and two-pass backwards, each with the AVX-512 tile products
// and with the BLAS route (MCORE_GEMM=openblas's backend). Tolerance as above.
TEST(Attention, WideHeadsMatchNaiveAllRoutes) {
  const int64_t sq = 150, sk = 170, b = 2, hq = 4, hkv = 2, d = 80;
  Tensor q = random_tensor({sq, b, hq, d}, 51, DType::F32);
  Tensor k = random_tensor({sk, b, hkv, d}, 52, DType::F32);
  Tensor v = random_tensor({sk, b, hkv, d}, 53, DType::F32);
  Tensor dout = random_tensor({sq, b, hq, d}, 54, DType::F32);
  Naive ref = naive_attention(to_vector<double>(q), to_vector<double>(k), to_vector<double>(v),
                              to_vector<double>(dout), sq, sk, b, hq, hkv, d, true);
  ops::AttentionOptions opts;
  opts.causal = true;
  for (auto backend : {ops::cpu::SgemmBackend::kAuto, ops::cpu::SgemmBackend::kOpenBlas}) {
    ops::cpu::set_sgemm_backend(backend);
    for (const char* mode : {"fused", "two_pass"}) {
      SCOPED_TRACE(std::string(mode) +
                   (backend == ops::cpu::SgemmBackend::kOpenBlas ? " openblas" : " auto"));
      setenv("MCORE_ATTENTION_BACKWARD", mode, 1);
      auto f = ops::attention_forward(q, k, v, opts);
      auto g = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, opts);
      unsetenv("MCORE_ATTENTION_BACKWARD");
      EXPECT_TENSOR_CLOSE(f.out, from_vector<double>(ref.out, {sq, b, hq, d}), 1e-4, 1e-5);
      EXPECT_TENSOR_CLOSE(g.dq, from_vector<double>(ref.dq, {sq, b, hq, d}), 1e-4, 1e-5);
      EXPECT_TENSOR_CLOSE(g.dk, from_vector<double>(ref.dk, {sk, b, hkv, d}), 1e-4, 1e-5);
      EXPECT_TENSOR_CLOSE(g.dv, from_vector<double>(ref.dv, {sk, b, hkv, d}), 1e-4, 1e-5);
    }
  }
  ops::cpu::set_sgemm_backend(ops::cpu::SgemmBackend::kAuto);
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: errors name the shapes involved.

TEST(Attention, BadInputsNameShapes) {
  Tensor q = zeros({5, 2, 4, 3}), k = zeros({7, 2, 2, 3}), v = zeros({7, 2, 2, 3});
  expect_error_naming(
      [&] {
        ops::attention_forward(q, zeros({7, 2, 2, 4}), v);
      },
      {"[5, 2, 4, 3]", "[7, 2, 2, 4]"});
  expect_error_naming(
      [&] {
        ops::attention_forward(zeros({5, 2, 3, 3}), k, v);
      },
      {"[5, 2, 3, 3]", "[7, 2, 2, 3]", "multiple"});
  expect_error_naming(
      [&] {
        ops::attention_forward(q, k, zeros({6, 2, 2, 3}));
      },
      {"[7, 2, 2, 3]", "[6, 2, 2, 3]"});
  expect_error_naming([&] { ops::attention_forward(zeros({5, 8, 3}), k, v); }, {"[5, 8, 3]"});
  expect_error_naming([&] { ops::attention_forward(q, k.to(DType::F64), v); },
                      {"float32", "float64"});
  ops::AttentionOptions opts;
  opts.attention_mask = zeros({2, 6}, DType::BOOL);
  expect_error_naming([&] { ops::attention_forward(q, k, v, opts); }, {"[2, 6]", "[2, 4, 5, 7]"});
  opts.attention_mask = zeros({2, 7});
  expect_error_naming([&] { ops::attention_forward(q, k, v, opts); }, {"bool", "float32"});
  auto f = ops::attention_forward(q, k, v);
  expect_error_naming(
      [&] {
        ops::attention_backward(zeros({5, 2, 4, 2}), q, k, v, f.out, f.softmax_lse);
      },
      {"[5, 2, 4, 2]", "[5, 2, 4, 3]"});
  expect_error_naming(
      [&] {
        ops::attention_backward(f.out, q, k, v, f.out, zeros({2, 4, 4}));
      },
      {"[2, 4, 4]", "[2, 4, 5]"});
}

}  // namespace
}  // namespace mcore
