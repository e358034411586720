// Reductions (mcore/ops/reduction.h, F::sum / F::mean with dims): sums and means over dimension
// lists with and without keepdim, max with indices, and the multi-tensor squared L2 norm, against
// PyTorch (tests/reference/gen_numerics.py); float64 gradient checks (max's against finite
// differences); bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "mcore/nn/functional.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/reduction.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

constexpr const char* kGroup = "numerics";

// A bf16 tensor from the uint16 bit patterns the generator saves.
Tensor bf16_ref(const std::string& name) {
  Tensor bits = load_ref(kGroup, name);
  EXPECT_EQ(bits.dtype(), DType::U16);
  Tensor t = empty(bits.shape(), DType::BF16);
  std::memcpy(t.data_ptr(), bits.contiguous().data_ptr(), bits.nbytes());
  return t;
}

struct DimsCase {
  const char* name;
  std::vector<int64_t> dims;
};
// Single dims, runs of dims (one strided pass) and split sets ({1, 3}, {0, 2}: permute path).
const DimsCase kDims[] = {{"d1", {1}},     {"d13", {1, 3}}, {"d0", {0}},           {"d23", {2, 3}},
                          {"d02", {0, 2}}, {"dm1", {-1}},   {"dall", {0, 1, 2, 3}}};

TEST(Reduction, SumAndMeanMatchTorchFloat64) {
  Tensor x = load_ref(kGroup, "red_x");                        // [3, 5, 7, 4]
  Tensor xt = x.transpose(0, 3).contiguous().transpose(0, 3);  // same values, strided layout
  for (const DimsCase& c : kDims) {
    for (int keep = 0; keep < 2; ++keep) {
      SCOPED_TRACE(std::string(c.name) + " keepdim " + std::to_string(keep));
      std::string k = "_k" + std::to_string(keep);
      // NumPy saves a 0-d array as shape [1]; our full reduction without keepdim is 0-d.
      auto ref = [&](const std::string& name) {
        Tensor t = load_ref(kGroup, name + c.name + k);
        return c.dims.size() == 4 && !keep ? t.reshape({}) : t;
      };
      // float64 with at most 420 terms: a few ulps.
      EXPECT_TENSOR_CLOSE(ops::sum(x, c.dims, keep), ref("red_sum_"), 1e-13, 1e-14);
      EXPECT_TENSOR_CLOSE(ops::mean(x, c.dims, keep), ref("red_mean_"), 1e-13, 1e-14);
      EXPECT_TENSOR_CLOSE(ops::sum(xt, c.dims, keep), ref("red_sum_"), 1e-13, 1e-14);
    }
  }
  // Reversed and negative dims name the same reduction.
  EXPECT_TENSOR_CLOSE(ops::sum(x, {-1, 1}), load_ref(kGroup, "red_sum_d13_k0"), 1e-13, 1e-14);
  // Empty dims: every dimension (torch.sum(x, dim=[])).
  EXPECT_TENSOR_CLOSE(ops::sum(x, {}), load_ref(kGroup, "red_sum_dall_k0").reshape({}), 1e-13,
                      1e-14);
}

TEST(Reduction, SumMatchesTorchFloat32AndBFloat16) {
  Tensor x = load_ref(kGroup, "red_x");
  // float32: 35 terms of |x| < 4; rounding error <= 35 * 2^-24 * sum|x| ~ 1e-5 in the worst case.
  EXPECT_TENSOR_CLOSE(ops::sum(x.to(DType::F32), {1, 3}), load_ref(kGroup, "red_sum_d13_f32"), 1e-6,
                      1e-5);
  // bf16: both accumulate in float32 (summation orders differ) and round once, so results agree
  // to 1 bf16 ulp (2^-7 relative at most) where the float32 sums straddle a bf16 rounding point.
  Tensor xb = bf16_ref("red_xb_bits");
  Tensor s = ops::sum(xb, {1, 3});
  EXPECT_EQ(s.dtype(), DType::BF16);
  EXPECT_TENSOR_CLOSE(s, bf16_ref("red_sum_d13_bf16"), 0.008, 1e-6);
  EXPECT_TENSOR_CLOSE(ops::mean(xb, {2}), bf16_ref("red_mean_d2_bf16"), 0.008, 1e-6);
}

TEST(Reduction, LongSumsKeepFloat32Precision) {
  // Rows of 60001 values ~ 1 + N(0, 1): a naive float32 running sum drifts by ~1e-4 relative;
  // the pairwise row sum stays within a few ulps of the float64 sum.
  Tensor lx = load_ref(kGroup, "red_long");
  EXPECT_TENSOR_CLOSE(ops::sum(lx, {1}), load_ref(kGroup, "red_long_sum"), 2e-7, 0);
  // 5003 rows summed down a strided dimension: blocked (64-row) accumulation, error
  // O((64 + 5003 / 64) ulp) at worst.
  Tensor tall = load_ref(kGroup, "red_tall");
  EXPECT_TENSOR_CLOSE(ops::sum(tall, {0}), load_ref(kGroup, "red_tall_sum0"), 2e-6, 0);
  EXPECT_TENSOR_CLOSE(ops::sum(tall.transpose(0, 1), {1}), load_ref(kGroup, "red_tall_sum0"), 2e-6,
                      0);
}

TEST(Reduction, LargeReductionsParallelPathsAgree) {
  // Big enough for the OpenMP paths (whole-row parallel sums and column tasks): compare with
  // float64 sums of the same data.
  Tensor x = random_tensor({3, 300001}, 5, DType::F32);
  Tensor ref = ops::sum(x.to(DType::F64), {1});
  EXPECT_TENSOR_CLOSE(ops::sum(x, {1}), ref, 1e-5, 1e-3);
  Tensor y = random_tensor({257, 3, 301}, 6, DType::F32);
  EXPECT_TENSOR_CLOSE(ops::sum(y, {0}), ops::sum(y.to(DType::F64), {0}), 1e-5, 1e-5);
  EXPECT_TENSOR_CLOSE(ops::mean(y, {0, 2}, true), ops::mean(y.to(DType::F64), {0, 2}, true), 1e-5,
                      1e-6);
}

// ops::sum_to of a contiguous [rows, n] onto [n] (a linear layer's bias gradient) takes a
// column-parallel path above 32768 elements; it must give exactly what the generic strided loop
// gives (the same view made non-contiguous), and the float64 column sums to float32 rounding.
TEST(Reduction, SumToColumnsParallelPathMatchesGeneric) {
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t n : {768, 1000, 17}) {
      const int64_t rows = 40000 / n + 3;
      Tensor wide = random_tensor({rows, 2 * n}, static_cast<uint64_t>(n), DType::F32).to(dt);
      Tensor strided = wide.narrow(1, 0, n);  // generic path
      Tensor dense = strided.contiguous();    // column-parallel path
      ASSERT_TRUE(dense.is_contiguous() && !strided.is_contiguous());
      Tensor fast = ops::sum_to(dense, {n}), slow = ops::sum_to(strided, {n});
      EXPECT_TENSOR_CLOSE(fast, slow, 0, 0);
      Tensor ref = F::sum(dense.to(DType::F64), {0}, false);
      EXPECT_TENSOR_CLOSE(fast.to(DType::F64), ref, dt == DType::F32 ? 1e-5 : 1e-2, 1e-4);
    }
  }
}

TEST(Reduction, MaxMatchesTorch) {
  Tensor x = load_ref(kGroup, "red_x");
  for (int64_t d = 0; d < 4; ++d) {
    SCOPED_TRACE("dim " + std::to_string(d));
    ops::MaxResult r = ops::max(x, d);
    EXPECT_TENSOR_CLOSE(r.values, load_ref(kGroup, "red_max_d" + std::to_string(d) + "_values"), 0,
                        0);
    EXPECT_EQ(to_vector<int64_t>(r.indices),
              to_vector<int64_t>(load_ref(kGroup, "red_max_d" + std::to_string(d) + "_indices")));
    ops::MaxResult k = ops::max(x, d - 4, true);  // negative dim, keepdim
    Shape ks = x.shape();
    ks[d] = 1;
    EXPECT_EQ(k.values.shape(), ks);
    EXPECT_EQ(to_vector<int64_t>(k.indices), to_vector<int64_t>(r.indices));
    // bf16: values are copied, not recomputed.
    ops::MaxResult b = ops::max(x.to(DType::BF16), d);
    EXPECT_EQ(b.values.dtype(), DType::BF16);
    EXPECT_TENSOR_CLOSE(b.values, r.values.to(DType::BF16), 0, 0);
  }
}

TEST(Reduction, MaxTiesAndNaN) {
  Tensor x = from_vector<float>({1, 3, 3, 2, NAN, 5, NAN, 0, -1, -1, -2, -1}, {3, 4});
  ops::MaxResult r = ops::max(x, 1);
  std::vector<float> v = to_vector<float>(r.values);
  EXPECT_EQ(v[0], 3.0f);
  EXPECT_TRUE(std::isnan(v[1]));
  EXPECT_EQ(v[2], -1.0f);
  EXPECT_EQ(to_vector<int64_t>(r.indices),
            (std::vector<int64_t>{1, 0, 0}));  // first of equals / NaNs
  ops::MaxResult c = ops::max(x, 0);
  EXPECT_EQ(to_vector<int64_t>(c.indices), (std::vector<int64_t>{1, 1, 1, 0}));
}

TEST(Reduction, MaxBackwardScattersToArgmax) {
  Tensor x = load_ref(kGroup, "red_x");
  ops::MaxResult r = ops::max(x, 2, true);
  Tensor g = random_tensor(r.values.shape(), 3);
  Tensor gx = ops::max_backward(g, r.indices, x.shape(), 2, true);
  // Sum over the dim returns g; and gx is nonzero exactly where x equals its max.
  EXPECT_TENSOR_CLOSE(ops::sum(gx, {2}, true), g, 0, 0);
  std::vector<double> xv = to_vector<double>(x), gv = to_vector<double>(gx);
  std::vector<double> mv = to_vector<double>(r.values.expand(x.shape()).contiguous());
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(gv[i] != 0, xv[i] == mv[i]) << i;
}

// max's gradient against central finite differences in float64, for each dim and keepdim, on
// odd shapes with distinct values (away from ties, where max is not differentiable): the
// derivative of sum(g * max(x, dim)) with respect to every element of x.
TEST(Reduction, MaxBackwardGradcheckFloat64) {
  const Shape shape = {3, 5, 7};
  Tensor x = random_tensor(shape, 31, DType::F64, 2.0);
  for (int64_t dim = -1; dim < 3; ++dim) {
    for (bool keep : {false, true}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + " keepdim " + std::to_string(keep));
      ops::MaxResult r = ops::max(x, dim, keep);
      Tensor g = random_tensor(r.values.shape(), 32, DType::F64, 1.0);
      const std::vector<double> analytic =
          to_vector<double>(ops::max_backward(g, r.indices, shape, dim, keep));
      const std::vector<double> gv = to_vector<double>(g);
      auto objective = [&](const Tensor& xp) {
        const std::vector<double> v = to_vector<double>(ops::max(xp, dim, keep).values);
        double s = 0;
        for (size_t i = 0; i < v.size(); ++i) s += gv[i] * v[i];
        return s;
      };
      const double eps = 1e-6;
      for (int64_t i = 0; i < x.numel(); ++i) {
        Tensor xp = x.clone(), xm = x.clone();
        xp.data<double>()[i] += eps;
        xm.data<double>()[i] -= eps;
        const double numeric = (objective(xp) - objective(xm)) / (2 * eps);
        EXPECT_NEAR(analytic[i], numeric, 1e-6) << "element " << i;
      }
    }
  }
}

TEST(Reduction, GradcheckSumMeanFloat64) {
  const std::pair<Shape, std::vector<int64_t>> cases[] = {
      {{3, 5, 7}, {1}}, {{3, 5, 7}, {0, 2}}, {{2, 3, 4, 5}, {1, 2}}, {{2, 3, 4, 5}, {-1, 0}},
      {{7}, {0}},       {{1, 3}, {0}},       {{4, 1, 3}, {}}};
  for (const auto& [shape, dims] : cases) {
    for (bool keep : {false, true}) {
      SCOPED_TRACE(shape_str(shape) + " keepdim " + std::to_string(keep));
      Tensor x = random_tensor(shape, 17, DType::F64, 2.0);
      x.set_requires_grad(true);
      EXPECT_TRUE(
          gradcheck([&](const std::vector<Tensor>& in) { return F::sum(in[0], dims, keep); }, {x}));
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& in) { return F::mean(in[0], dims, keep); }, {x}));
    }
  }
}

TEST(Reduction, MeanBackwardBFloat16) {
  // d/dx mean(x, dims) = 1/count broadcast: check values directly on a bf16 input.
  Tensor x = random_tensor({4, 6, 5}, 2, DType::BF16);
  x.set_requires_grad(true);
  Tensor y = F::mean(x, {0, 2});
  EXPECT_EQ(y.shape(), (Shape{6}));
  y.backward(full({6}, 2.0, DType::BF16));
  EXPECT_EQ(x.grad().dtype(), DType::BF16);
  EXPECT_TENSOR_CLOSE(x.grad(), full({4, 6, 5}, 0.1, DType::F32), 0.004, 0);  // 0.1 in bf16
}

TEST(Reduction, MultiTensorL2NormSquared) {
  Tensor a = load_ref(kGroup, "l2_a"), b = bf16_ref("l2_b_bits"), c = load_ref(kGroup, "l2_c");
  double expected = to_vector<double>(load_ref(kGroup, "l2_total"))[0];
  // Squares of float32/bf16 values are exact in float64; only the float64 summation order
  // differs from NumPy's: 1e-13 relative.
  EXPECT_NEAR(ops::multi_tensor_l2norm_squared({a, b, c}), expected, 1e-13 * expected);
  EXPECT_NEAR(ops::multi_tensor_l2norm_squared({a.transpose(0, 1), b, c.to(DType::F16)}), expected,
              1e-3 * expected);  // fp16 rounding of c: ~2^-11 relative per value
  EXPECT_EQ(ops::multi_tensor_l2norm_squared({}), 0.0);
  // Many chunks: equals the float64 sum of squares, independently of the thread count.
  Tensor big = random_tensor({1000, 333}, 8, DType::F32);
  std::vector<double> v = to_vector<double>(big);
  double s = 0;
  for (double e : v) s += e * e;
  double got = ops::multi_tensor_l2norm_squared({big, big.narrow(1, 1, 100)});
  double s2 = 0;
  for (int64_t i = 0; i < 1000; ++i)
    for (int64_t j = 1; j < 101; ++j) s2 += v[i * 333 + j] * v[i * 333 + j];
  EXPECT_NEAR(got, s + s2, 1e-12 * (s + s2));
  // Inf / NaN propagate (the grad clipper reports them).
  Tensor bad = from_vector<float>({1, INFINITY});
  EXPECT_TRUE(std::isinf(ops::multi_tensor_l2norm_squared({a, bad})));
  EXPECT_TRUE(std::isnan(ops::multi_tensor_l2norm_squared({from_vector<float>({NAN}), a})));
}

TEST(Reduction, BadInput) {
  Tensor x = zeros({2, 3});
  try {
    ops::sum(x, {2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[2, 3]"), std::string::npos) << e.message();
  }
  EXPECT_THROW(ops::sum(x, {1, -1}), Error);  // repeated
  EXPECT_THROW(ops::max(x, -3), Error);
  EXPECT_THROW(ops::max(zeros({2, 0}), 1), Error);
  EXPECT_THROW(ops::sum(zeros({2}, DType::I64), {0}), Error);
  try {
    ops::sum_backward(zeros({3}), {2, 3}, {1}, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[3]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[2, 3]"), std::string::npos) << e.message();
  }
  try {
    ops::multi_tensor_l2norm_squared({x, zeros({4}, DType::I32)});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("int32"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[4]"), std::string::npos) << e.message();
  }
  // Size-0 reductions: sum is 0, mean is NaN (as PyTorch).
  EXPECT_EQ(to_vector<float>(ops::sum(zeros({2, 0}), {1})), (std::vector<float>{0, 0}));
  EXPECT_TRUE(std::isnan(to_vector<float>(ops::mean(zeros({2, 0}), {1}))[0]));
}

}  // namespace
}  // namespace mcore::testing
