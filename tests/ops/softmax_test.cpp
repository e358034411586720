// Scaled, optionally causal softmax (Megatron FusedScaleMaskSoftmax semantics): forward and
// backward against PyTorch in float32 and bfloat16, float64 gradient checks, mask layout,
// fully masked rows and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/softmax.h"
#include "tests/common/gradcheck.h"
#include "tests/ops/act_norm_util.h"

namespace mcore::testing {
namespace {

struct SoftmaxCase {
  const char* name;
  double scale;
  bool causal;
};

// Cases of gen_activation_norm.py: plain [3, 5, 37]; causal [2, 3, 7, 11] (sk > sq: every
// query sees sk - sq extra keys); causal [2, 3, 11, 7] (sq > sk: the first 4 rows are fully
// masked and must be zero).
const SoftmaxCase kCases[] = {
    {"softmax", 1.0, false}, {"softmax_causal", 0.3, true}, {"softmax_causal_tall", 0.125, true}};

void check_against_torch(const SoftmaxCase& c, DType dtype) {
  const std::string p = std::string(c.name) + "_" + dtype_tag(dtype) + "_";
  Tensor x = act_norm_ref(p + "x", dtype);
  x.set_requires_grad(true);
  Tensor y = F::softmax(x, c.scale, c.causal);
  y.backward(act_norm_ref(p + "dy", dtype));
  // Tolerances: tol_for in act_norm_util.h. In bf16 the reference is float32 softmax of the
  // bf16 scores rounded once (FusedScaleMaskSoftmax), ours does the same.
  Tol t = tol_for(dtype);
  EXPECT_TENSOR_CLOSE(y, act_norm_ref(p + "y", dtype), t.rtol, t.atol) << c.name;
  // The backward works from the saved bf16 output y (as Megatron's fused kernel does) while
  // the reference uses float32 y: y's rounding (2^-9 relative) enters sum(dy * y), which then
  // cancels against dy, so the absolute error is about 2^-9 * |y| * |dy| (~1e-3 here).
  const double dx_atol = dtype == DType::BF16 ? 1e-3 : t.atol;
  EXPECT_TENSOR_CLOSE(x.grad(), act_norm_ref(p + "dx", dtype), t.rtol, dx_atol) << c.name;
}

TEST(Softmax, MatchesTorchFloat32) {
  for (const SoftmaxCase& c : kCases) check_against_torch(c, DType::F32);
}

TEST(Softmax, MatchesTorchBFloat16) {
  for (const SoftmaxCase& c : kCases) check_against_torch(c, DType::BF16);
}

TEST(Softmax, GradcheckFloat64) {
  const Shape shapes[] = {{3, 5, 37}, {2, 3, 7, 11}, {2, 2, 9, 5}, {1, 1}};
  for (const SoftmaxCase& c : kCases) {
    for (const Shape& shape : shapes) {
      Tensor x = random_tensor(shape, 21, DType::F64, 2.0);
      x.set_requires_grad(true);
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& in) { return F::softmax(in[0], c.scale, c.causal); }, {x}))
          << c.name << " " << shape_str(shape);
    }
  }
}

// Row sums are 1 over the visible keys, masked entries are exactly 0, and a fully masked row
// (sq > sk, query i < sq - sk) is all zeros with zero gradient.
TEST(Softmax, CausalMaskLayout) {
  const int64_t sq = 6, sk = 4;
  Tensor x = random_tensor({2, sq, sk}, 4, DType::F64, 5.0);
  Tensor y = ops::softmax_forward(x, 0.5, true);
  std::vector<double> v = to_vector<double>(y);
  for (int64_t r = 0; r < 2 * sq; ++r) {
    int64_t i = r % sq;
    double sum = 0;
    for (int64_t j = 0; j < sk; ++j) {
      double e = v[r * sk + j];
      if (j > i + (sk - sq)) {
        EXPECT_EQ(e, 0.0) << "row " << r << " col " << j;
      }
      sum += e;
    }
    EXPECT_NEAR(sum, i < sq - sk ? 0.0 : 1.0, 1e-12) << "row " << r;
  }
  Tensor dx = ops::softmax_backward(ones_like(y), y, 0.5);
  std::vector<double> d = to_vector<double>(dx);
  for (int64_t j = 0; j < sk; ++j) EXPECT_EQ(d[j], 0.0);  // row 0 fully masked
}

TEST(Softmax, ScaleIsAppliedBeforeSoftmax) {
  Tensor x = random_tensor({3, 17}, 8, DType::F64, 4.0);
  EXPECT_TENSOR_CLOSE(ops::softmax_forward(x, 0.25), ops::softmax_forward(ops::scale(x, 0.25)),
                      1e-14, 1e-16);
}

// Max subtraction: huge logits (and -inf entries) must not overflow to NaN.
TEST(Softmax, ExtremeInputs) {
  Tensor x = from_vector<float>({1e4f, 1e4f, -1e4f, -INFINITY}, {1, 4});
  std::vector<double> y = to_vector<double>(ops::softmax_forward(x));
  EXPECT_NEAR(y[0], 0.5, 1e-7);
  EXPECT_NEAR(y[1], 0.5, 1e-7);
  EXPECT_EQ(y[2], 0.0);
  EXPECT_EQ(y[3], 0.0);
  Tensor all_inf = full({2, 3}, -INFINITY);
  for (double e : to_vector<double>(ops::softmax_forward(all_inf))) EXPECT_EQ(e, 0.0);
}

TEST(Softmax, NonContiguousInput) {
  Tensor x = random_tensor({5, 8}, 9, DType::F32, 3.0).transpose(0, 1);
  EXPECT_TENSOR_CLOSE(ops::softmax_forward(x, 0.7, true),
                      ops::softmax_forward(x.contiguous(), 0.7, true), 0, 0);
}

TEST(Softmax, BadInput) {
  std::string m = error_message([] { ops::softmax_forward(zeros({5}), 1.0, true); });
  EXPECT_NE(m.find("[5]"), std::string::npos) << m;
  EXPECT_NE(m.find("causal"), std::string::npos) << m;
  m = error_message([] { ops::softmax_backward(zeros({2, 3}), zeros({2, 4})); });
  EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find("[2, 4]"), std::string::npos) << m;
  m = error_message([] { ops::softmax_backward(zeros({2, 3}, DType::BF16), zeros({2, 3})); });
  EXPECT_NE(m.find("bfloat16"), std::string::npos) << m;
  EXPECT_NE(m.find("float32"), std::string::npos) << m;
}

}  // namespace
}  // namespace mcore::testing
