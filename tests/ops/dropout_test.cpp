// Dropout: the keep rule against Philox directly, partition invariance (a tensor split in
// pieces with global offsets draws the whole tensor's mask), keep fraction and expectation,
// backward consistent with forward, float64 gradient check, edge probabilities, bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/base/philox.h"
#include "mcore/nn/functional.h"
#include "mcore/ops/dropout.h"
#include "tests/common/gradcheck.h"
#include "tests/ops/act_norm_util.h"

namespace mcore::testing {
namespace {

constexpr uint64_t kSeed = 1234, kStream = 5;

TEST(Dropout, KeepRuleIsPhiloxUniformAboveP) {
  const double p = 0.3;
  const uint64_t off = 17;  // not a multiple of 4: the first Philox block is partial
  Tensor mask = ops::dropout_mask({103}, p, kSeed, kStream, off);
  std::vector<uint8_t> m = to_vector<uint8_t>(mask);
  for (int64_t i = 0; i < 103; ++i)
    EXPECT_EQ(m[i], Philox::uniform(kSeed, kStream, off + i) > p ? 1 : 0) << i;
}

// Forward output is x * mask / (1 - p) exactly (float32 scale of a float32 value).
TEST(Dropout, ForwardIsMaskedScaling) {
  const double p = 0.25;
  Tensor x = random_tensor({7, 13}, 1, DType::F32, 2.0);
  Tensor y = ops::dropout_forward(x, p, kSeed, kStream);
  std::vector<float> xv = to_vector<float>(x), yv = to_vector<float>(y);
  std::vector<uint8_t> m = to_vector<uint8_t>(ops::dropout_mask({7, 13}, p, kSeed, kStream));
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(yv[i], m[i] ? xv[i] * scale : 0.0f) << i;
}

// Splitting a tensor into pieces, each with its global offset, reproduces the whole tensor's
// output: rows split in halves, and a flat split at an index that is not a multiple of 4.
TEST(Dropout, PartitionInvariance) {
  const double p = 0.4;
  Tensor x = random_tensor({6, 101}, 2, DType::F32);
  Tensor full = ops::dropout_forward(x, p, kSeed, kStream, 1000);
  Tensor top = ops::dropout_forward(x.narrow(0, 0, 3), p, kSeed, kStream, 1000);
  Tensor bottom = ops::dropout_forward(x.narrow(0, 3, 3), p, kSeed, kStream, 1000 + 3 * 101);
  EXPECT_TENSOR_CLOSE(full.narrow(0, 0, 3), top, 0, 0);
  EXPECT_TENSOR_CLOSE(full.narrow(0, 3, 3), bottom, 0, 0);

  Tensor flat = x.reshape({606});
  const int64_t cut = 157;
  Tensor a = ops::dropout_forward(flat.narrow(0, 0, cut), p, kSeed, kStream, 1000);
  Tensor b = ops::dropout_forward(flat.narrow(0, cut, 606 - cut), p, kSeed, kStream, 1000 + cut);
  Tensor ff = full.reshape({606});
  EXPECT_TENSOR_CLOSE(ff.narrow(0, 0, cut), a, 0, 0);
  EXPECT_TENSOR_CLOSE(ff.narrow(0, cut, 606 - cut), b, 0, 0);
  // The backward regenerates the same mask per piece.
  Tensor gb = ops::dropout_backward(flat.narrow(0, cut, 606 - cut), p, kSeed, kStream, 1000 + cut);
  EXPECT_TENSOR_CLOSE(gb, b, 0, 0);
}

// An index map places a block that is not one slice of the global tensor: rows 3..5 of every
// slab, each row a 7-wide prefix of the global 11-wide row (a context-parallel rank's query
// rows against a prefix of the keys). Its mask, forward and backward are the global tensor's
// there; a contiguous map is the plain offset.
TEST(Dropout, IndexMapPlacesRowsOfSlabs) {
  const double p = 0.35;
  const uint64_t off = 1001;  // odd: rows start mid Philox block
  Tensor global_mask = ops::dropout_mask({4, 9, 11}, p, kSeed, kStream, off);
  ops::DropoutIndexMap map{off + 3 * 11, 3, 7, 11, 99};
  Tensor local_mask = ops::dropout_mask({4, 3, 7}, p, kSeed, kStream, map);
  EXPECT_TENSOR_CLOSE(local_mask.to(DType::F32),
                      global_mask.narrow(1, 3, 3).narrow(2, 0, 7).contiguous().to(DType::F32), 0,
                      0);
  Tensor xg = random_tensor({4, 9, 11}, 3, DType::F32);
  Tensor yg = ops::dropout_forward(xg, p, kSeed, kStream, off);
  Tensor xl = xg.narrow(1, 3, 3).narrow(2, 0, 7).contiguous();
  EXPECT_TENSOR_CLOSE(ops::dropout_forward(xl, p, kSeed, kStream, map),
                      yg.narrow(1, 3, 3).narrow(2, 0, 7).contiguous(), 0, 0);
  EXPECT_TENSOR_CLOSE(ops::dropout_backward(xl, p, kSeed, kStream, map),
                      yg.narrow(1, 3, 3).narrow(2, 0, 7).contiguous(), 0, 0);
  // Large enough for the threaded path: 64 slabs of 40 rows of 200.
  Tensor big = ops::dropout_mask({64, 40, 200}, p, kSeed, kStream,
                                 ops::DropoutIndexMap{off, 40, 200, 300, 300 * 50});
  Tensor ref = ops::dropout_mask({64, 50, 300}, p, kSeed, kStream, off);
  EXPECT_TENSOR_CLOSE(big.to(DType::F32),
                      ref.narrow(1, 0, 40).narrow(2, 0, 200).contiguous().to(DType::F32), 0, 0);
  EXPECT_TENSOR_CLOSE(
      ops::dropout_mask({5, 7}, p, kSeed, kStream, ops::DropoutIndexMap::contiguous(off))
          .to(DType::F32),
      ops::dropout_mask({5, 7}, p, kSeed, kStream, off).to(DType::F32), 0, 0);
  // A map that does not tile the tensor is refused.
  EXPECT_THROW(
      ops::dropout_mask({4, 3, 8}, p, kSeed, kStream, ops::DropoutIndexMap{0, 5, 7, 11, 99}),
      Error);
}

// Large n: the kept fraction is 1 - p and E[y] = x within 5 binomial standard deviations.
TEST(Dropout, KeepFractionAndExpectation) {
  const int64_t n = 200003;  // also exercises the multi-threaded path
  for (double p : {0.1, 0.5, 0.9}) {
    Tensor y = ops::dropout_forward(ones({n}), p, 99, 3);
    std::vector<float> v = to_vector<float>(y);
    double kept = 0, sum = 0;
    for (float e : v) kept += e != 0, sum += e;
    const double sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(kept / n, 1 - p, 5 * sigma) << "p=" << p;
    EXPECT_NEAR(sum / n, 1.0, 5 * sigma / (1 - p)) << "p=" << p;
  }
}

TEST(Dropout, DifferentKeysGiveDifferentMasks) {
  Tensor m0 = ops::dropout_mask({4096}, 0.5, kSeed, kStream);
  Tensor m1 = ops::dropout_mask({4096}, 0.5, kSeed, kStream + 1);
  Tensor m2 = ops::dropout_mask({4096}, 0.5, kSeed + 1, kStream);
  std::vector<uint8_t> a = to_vector<uint8_t>(m0), b = to_vector<uint8_t>(m1),
                       c = to_vector<uint8_t>(m2);
  int diff_stream = 0, diff_seed = 0;
  for (size_t i = 0; i < a.size(); ++i) diff_stream += a[i] != b[i], diff_seed += a[i] != c[i];
  // Independent masks at p = 0.5 differ in about half the places.
  EXPECT_GT(diff_stream, 1700);
  EXPECT_GT(diff_seed, 1700);
}

// Autograd: dx = dy * mask / (1 - p) with the mask regenerated, not stored.
TEST(Dropout, BackwardMatchesForwardMask) {
  const double p = 0.3;
  Tensor x = random_tensor({5, 33}, 3, DType::F32);
  x.set_requires_grad(true);
  Tensor y = F::dropout(x, p, true, kSeed, kStream, 40);
  Tensor dy = random_tensor({5, 33}, 4, DType::F32);
  y.backward(dy);
  EXPECT_TENSOR_CLOSE(x.grad(), ops::dropout_forward(dy, p, kSeed, kStream, 40), 0, 0);
  std::vector<float> yv = to_vector<float>(y), gv = to_vector<float>(x.grad());
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(yv[i] == 0.0f, gv[i] == 0.0f) << i;
}

TEST(Dropout, GradcheckFloat64) {
  for (const Shape& shape : {Shape{7}, Shape{3, 5, 6}}) {
    Tensor x = random_tensor(shape, 5, DType::F64);
    x.set_requires_grad(true);
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& in) { return F::dropout(in[0], 0.35, true, 7, 2, 3); }, {x}))
        << shape_str(shape);
  }
}

TEST(Dropout, EdgeProbabilitiesAndEval) {
  Tensor x = random_tensor({9, 10}, 6, DType::F32);
  EXPECT_TENSOR_CLOSE(ops::dropout_forward(x, 0.0, kSeed, kStream), x, 0, 0);
  EXPECT_TENSOR_CLOSE(ops::dropout_forward(x, 1.0, kSeed, kStream), zeros({9, 10}), 0, 0);
  EXPECT_TRUE(F::dropout(x, 0.5, false, kSeed, kStream).is_same(x));  // eval: identity
  EXPECT_TRUE(F::dropout(x, 0.0, true, kSeed, kStream).is_same(x));
}

// bf16: kept values are x * (1 / (1 - p)) computed in float32 and rounded once.
TEST(Dropout, BFloat16RoundsOnce) {
  const double p = 0.3;
  Tensor x = random_tensor({4, 25}, 7, DType::F32, 3.0).to(DType::BF16);
  Tensor y = ops::dropout_forward(x, p, kSeed, kStream);
  ASSERT_EQ(y.dtype(), DType::BF16);
  Tensor expect = ops::dropout_forward(x.to(DType::F32), p, kSeed, kStream).to(DType::BF16);
  EXPECT_TENSOR_CLOSE(y, expect, 0, 0);
}

TEST(Dropout, BadInput) {
  std::string m = error_message([] { ops::dropout_forward(zeros({3}), 1.5, 0, 0); });
  EXPECT_NE(m.find("1.5"), std::string::npos) << m;
  m = error_message([] { F::dropout(zeros({3}), -0.1, true, 0, 0); });
  EXPECT_NE(m.find("-0.1"), std::string::npos) << m;
  m = error_message([] { ops::dropout_forward(zeros({3}, DType::I32), 0.5, 0, 0); });
  EXPECT_NE(m.find("int32"), std::string::npos) << m;
}

}  // namespace
}  // namespace mcore::testing
