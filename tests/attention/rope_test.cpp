// Rotary position embedding (mcore/ops/rope.h): Megatron's frequency table, forward and backward
// against Megatron's _apply_rotary_pos_emb_bshd run by PyTorch, float64 gradient checks, and
// input validation.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional/rope.h"
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

struct RopeRef {
  const char* name;
  int64_t kv_channels;
  ops::RotaryEmbeddingOptions freqs;
};

const RopeRef kHalfPartial = {"rope_half_partial", 16, {0.5, 10000.0, false, 0.0, 0}};
const RopeRef kInterleaved = {"rope_interleaved", 10, {1.0, 500.0, true, 2.0, 3}};
const RopeRef kBf16 = {"rope_bf16", 12, {1.0, 10000.0, false, 0.0, 0}};

// Both sides evaluate inv_freq = 1 / base^(2i/dim) and the products in float32; libm's powf and
// PyTorch's vectorized pow may differ by an ulp, and positions are < 12 here, so 1e-6.
TEST(Rope, FreqsMatchMegatron) {
  for (const RopeRef& c : {kHalfPartial, kInterleaved, kBf16}) {
    Tensor ref = load_ref(kGroup, std::string(c.name) + "_freqs");
    Tensor f = ops::rotary_embedding_freqs(c.kv_channels, ref.size(0), c.freqs);
    EXPECT_EQ(f.dtype(), DType::F32);
    EXPECT_TENSOR_CLOSE(f, ref, 1e-6, 1e-6) << c.name;
  }
}

void run_reference(const RopeRef& c, DType dtype, double rtol, double atol) {
  const std::string n = c.name;
  Tensor freqs = load_ref(kGroup, n + "_freqs");
  Tensor t = leaf(load_ref(kGroup, n + "_t").to(dtype));
  Tensor y = F::apply_rotary_pos_emb(t, freqs, c.freqs.rotary_interleaved);
  y.backward(load_ref(kGroup, n + "_dy").to(dtype));
  EXPECT_EQ(y.dtype(), dtype);
  EXPECT_TENSOR_CLOSE(y, load_ref(kGroup, n + "_y"), rtol, atol);
  EXPECT_TENSOR_CLOSE(t.grad(), load_ref(kGroup, n + "_dt"), rtol, atol);
}

// float32: each output is a*cos + b*sin, two products and a sum, with cos/sin from libm vs
// PyTorch's (<= 1 ulp apart): a few ulp, so rtol 1e-5 and atol 1e-6 for outputs near zero.
TEST(Rope, ReferenceRotateHalfPartialF32) {
  run_reference(kHalfPartial, DType::F32, 1e-5, 1e-6);
}
TEST(Rope, ReferenceInterleavedF32) {
  run_reference(kInterleaved, DType::F32, 1e-5, 1e-6);
}
// bf16: Megatron rounds cos/sin, each product and the sum to bf16 (up to four roundings, each
// 2^-9 relative); we round once from float32. Inputs are up to ~6, so an ulp is 2^-5: rtol 1e-2
// plus atol 3e-2 for sums that cancel.
TEST(Rope, ReferenceBf16) {
  run_reference(kBf16, DType::BF16, 1e-2, 3e-2);
}

// float64 gradient checks on odd shapes, partial rotation (rot 6 of D 9) and both
// pairings; freqs random angles (any per-channel angle must work, not only Megatron's pattern).
void rope_gradcheck(bool interleaved, int64_t fb, double mscale, uint64_t seed) {
  const int64_t s = 5, b = 2, h = 3, d = 9, rot = 6;
  Tensor t = leaf(random_tensor({s, b, h, d}, seed));
  Tensor freqs = random_tensor({s, fb, 1, rot}, seed + 1, DType::F64, 3.0);
  auto fn = [&](const std::vector<Tensor>& in) {
    return F::apply_rotary_pos_emb(in[0], freqs, interleaved, mscale);
  };
  EXPECT_TRUE(gradcheck(fn, {t}));
}
TEST(Rope, GradcheckRotateHalf) {
  rope_gradcheck(false, 1, 1.0, 1);
}
TEST(Rope, GradcheckInterleaved) {
  rope_gradcheck(true, 1, 1.0, 2);
}
TEST(Rope, GradcheckPerSampleFreqsAndMscale) {
  rope_gradcheck(false, 2, 1.3, 3);
}
TEST(Rope, GradcheckInterleavedMscale) {
  rope_gradcheck(true, 2, 0.7, 4);
}

// With Megatron's tables (equal angles within each pair) the rotation is orthogonal: the
// backward applied to the forward's output restores the input, and the tail is untouched.
TEST(Rope, BackwardInvertsForward) {
  for (bool interleaved : {false, true}) {
    ops::RotaryEmbeddingOptions o;
    o.rotary_interleaved = interleaved;
    o.rotary_percent = 0.5;
    Tensor freqs = ops::rotary_embedding_freqs(12, 7, o);  // rot 6 of 12
    Tensor t = random_tensor({7, 2, 3, 12}, 9, DType::F64);
    Tensor y = ops::apply_rotary_pos_emb(t, freqs.to(DType::F64), interleaved);
    EXPECT_TENSOR_CLOSE(y.narrow(3, 6, 6), t.narrow(3, 6, 6), 0, 0);
    EXPECT_TENSOR_CLOSE(ops::apply_rotary_pos_emb_backward(y, freqs.to(DType::F64), interleaved), t,
                        1e-12, 1e-12);
  }
}

// A strided view (a slice of a fused QKV tensor) gives the same result as its contiguous copy.
TEST(Rope, StridedInput) {
  Tensor qkv = random_tensor({4, 2, 2, 24}, 5, DType::F32);
  Tensor q = qkv.narrow(3, 8, 8);
  Tensor freqs = ops::rotary_embedding_freqs(8, 4);
  EXPECT_TENSOR_CLOSE(ops::apply_rotary_pos_emb(q, freqs),
                      ops::apply_rotary_pos_emb(q.contiguous(), freqs), 0, 0);
}

TEST(Rope, BadInputsNameShapes) {
  Tensor t = zeros({5, 2, 3, 8});
  expect_error_naming(
      [&] {
        ops::apply_rotary_pos_emb(t, zeros({5, 1, 1, 10}));
      },
      {"[5, 1, 1, 10]", "[5, 2, 3, 8]"});
  expect_error_naming(
      [&] {
        ops::apply_rotary_pos_emb(t, zeros({5, 1, 1, 5}));
      },
      {"[5, 1, 1, 5]", "even"});
  expect_error_naming(
      [&] {
        ops::apply_rotary_pos_emb(t, zeros({4, 1, 1, 8}));
      },
      {"[4, 1, 1, 8]", "[5, 2, 3, 8]"});
  expect_error_naming(
      [&] {
        ops::apply_rotary_pos_emb(zeros({5, 8}), zeros({5, 1, 1, 8}));
      },
      {"[5, 8]"});
  expect_error_naming(
      [&] {
        ops::apply_rotary_pos_emb(t, zeros({5, 1, 1, 8}, DType::I64));
      },
      {"int64"});
  ops::RotaryEmbeddingOptions o;
  o.rotary_percent = 0.3;  // int(10 * 0.3) = 3: odd
  expect_error_naming([&] { ops::rotary_embedding_freqs(10, 4, o); }, {"10", "3"});
}

}  // namespace
}  // namespace mcore
