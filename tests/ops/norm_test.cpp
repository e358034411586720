// LayerNorm and RMSNorm: forward and backward (dx, dweight, dbias) against PyTorch in float32
// and bfloat16, saved statistics, float64 gradient checks, the multi-threaded weight-gradient
// reduction, and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/norm.h"
#include "tests/common/gradcheck.h"
#include "tests/ops/act_norm_util.h"

namespace mcore::testing {
namespace {

struct NormCase {
  const char* name;
  bool rms;
  bool bias;
  double eps;
};

// gen_activation_norm.py: x [3, 5, 37].
const NormCase kCases[] = {{"layer_norm", false, true, 1e-5},
                           {"layer_norm_nobias", false, false, 1e-6},
                           {"rms_norm", true, false, 1e-5}};

struct NormResult {
  Tensor y, dx, dw, db;
};

// Runs the differentiable op on the inputs saved under prefix p, in `dtype`.
NormResult run_norm(const NormCase& c, const std::string& p, DType dtype) {
  Tensor x = act_norm_ref(p + "x", dtype), w = act_norm_ref(p + "w", dtype);
  Tensor b = c.bias ? act_norm_ref(p + "b", dtype) : Tensor();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  if (b.defined()) b.set_requires_grad(true);
  Tensor y = c.rms ? F::rms_norm(x, w, c.eps) : F::layer_norm(x, w, b, c.eps);
  y.backward(act_norm_ref(p + "dy", dtype));
  return {y, x.grad(), w.grad(), b.defined() ? b.grad() : Tensor()};
}

void check_against_torch(const NormCase& c, DType dtype) {
  const std::string p = std::string(c.name) + "_" + dtype_tag(dtype) + "_";
  NormResult r = run_norm(c, p, dtype);
  Tol t = tol_for(dtype);
  EXPECT_TENSOR_CLOSE(r.y, act_norm_ref(p + "y", dtype), t.rtol, t.atol) << c.name;
  EXPECT_TENSOR_CLOSE(r.dx, act_norm_ref(p + "dx", dtype), t.rtol, t.atol) << c.name;
  // dweight/dbias sum 15 rows: float32 summation order differs from PyTorch's, so a slightly
  // looser absolute floor (sums of O(1) terms whose result can cancel to near zero).
  double wa = dtype == DType::F32 ? 1e-5 : t.atol;
  EXPECT_TENSOR_CLOSE(r.dw, act_norm_ref(p + "dw", dtype), t.rtol, wa) << c.name;
  if (c.bias) {
    EXPECT_TENSOR_CLOSE(r.db, act_norm_ref(p + "db", dtype), t.rtol, wa) << c.name;
  }
}

TEST(Norm, MatchesTorchFloat32) {
  for (const NormCase& c : kCases) check_against_torch(c, DType::F32);
}

TEST(Norm, MatchesTorchBFloat16) {
  for (const NormCase& c : kCases) check_against_torch(c, DType::BF16);
}

// float32 LayerNorm of rows with mean 300 and std 0.1 (E[x^2] - E[x]^2 would lose every digit),
// against the float64 answer for the same float32 inputs, relative to the largest element.
// Storing the mean in float32 costs up to half an ulp of 300 (1.5e-5, 1.5e-4 of the std);
// ours measures 5e-5 (y), 2e-5 (dx), 9e-5 (dweight); PyTorch's own float32 y is 1.5e-4 off.
TEST(Norm, LargeMeanFloat32MatchesFloat64) {
  const NormCase c{"layer_norm_offset", false, true, 1e-5};
  NormResult r = run_norm(c, "layer_norm_offset_f32_", DType::F32);
  const std::string e = "layer_norm_offset_f64_";
  EXPECT_LT(max_rel_error(r.y, load_ref("act_norm", e + "y")), 1.5e-4);
  EXPECT_LT(max_rel_error(r.dx, load_ref("act_norm", e + "dx")), 1.5e-4);
  EXPECT_LT(max_rel_error(r.dw, load_ref("act_norm", e + "dw")), 1.5e-4);
  EXPECT_LT(max_rel_error(r.db, load_ref("act_norm", e + "db")), 1e-6);
}

TEST(Norm, GradcheckFloat64) {
  for (const Shape& shape : {Shape{3, 5, 13}, Shape{7}, Shape{4, 1}, Shape{2, 3, 2}}) {
    const int64_t h = shape.back();
    Tensor x = random_tensor(shape, 31, DType::F64, 2.0);
    Tensor w = ops::add_scalar(random_tensor({h}, 32, DType::F64, 0.5), 1.0);
    Tensor b = random_tensor({h}, 33, DType::F64, 0.5);
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& in) { return F::layer_norm(in[0], in[1], in[2], 1e-5); },
        {x, w, b}))
        << "layer_norm " << shape_str(shape);
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& in) { return F::layer_norm(in[0], in[1], Tensor(), 1e-3); },
        {x, w}))
        << "layer_norm without bias " << shape_str(shape);
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& in) { return F::rms_norm(in[0], in[1], 1e-6); }, {x, w}))
        << "rms_norm " << shape_str(shape);
  }
}

// The saved statistics are the ones the formulas define, in the accumulation dtype.
TEST(Norm, SavedStatistics) {
  Tensor x = random_tensor({4, 11}, 41, DType::F64, 3.0);
  Tensor w = ones({11}, DType::F64);
  ops::LayerNormOutput ln = ops::layer_norm_forward(x, w, Tensor(), 1e-5);
  ops::RMSNormOutput rn = ops::rms_norm_forward(x, w, 1e-5);
  ASSERT_EQ(ln.mean.shape(), (Shape{4}));
  ASSERT_EQ(rn.rstd.dtype(), DType::F64);
  std::vector<double> v = to_vector<double>(x), mean = to_vector<double>(ln.mean),
                      rstd = to_vector<double>(ln.rstd), rrms = to_vector<double>(rn.rstd);
  for (int r = 0; r < 4; ++r) {
    double s = 0, s2 = 0;
    for (int j = 0; j < 11; ++j) s += v[r * 11 + j], s2 += v[r * 11 + j] * v[r * 11 + j];
    double mu = s / 11, var = s2 / 11 - mu * mu;
    EXPECT_NEAR(mean[r], mu, 1e-14);
    EXPECT_NEAR(rstd[r], 1 / std::sqrt(var + 1e-5), 1e-12);
    EXPECT_NEAR(rrms[r], 1 / std::sqrt(s2 / 11 + 1e-5), 1e-12);
  }
  Tensor xb = x.to(DType::BF16);
  EXPECT_EQ(ops::layer_norm_forward(xb, w.to(DType::BF16), Tensor(), 1e-5).rstd.dtype(),
            DType::F32);
}

// Enough rows that the backward runs multi-threaded with per-thread weight-gradient partials;
// compared with a plain float64 loop.
TEST(Norm, LargeBackwardMatchesNaiveLoop) {
  const int64_t rows = 96, h = 301;
  Tensor x = random_tensor({rows, h}, 51, DType::F64, 2.0);
  Tensor w = random_tensor({h}, 52, DType::F64, 1.0);
  Tensor dy = random_tensor({rows, h}, 53, DType::F64, 1.0);
  for (bool rms : {false, true}) {
    Tensor mean, rstd;
    if (rms) {
      rstd = ops::rms_norm_forward(x, w, 1e-5).rstd;
    } else {
      auto o = ops::layer_norm_forward(x, w, w, 1e-5);
      mean = o.mean;
      rstd = o.rstd;
    }
    ops::NormGrads g = rms ? ops::rms_norm_backward(dy, x, rstd, w)
                           : ops::layer_norm_backward(dy, x, mean, rstd, w, true);
    std::vector<double> xv = to_vector<double>(x), dyv = to_vector<double>(dy),
                        wv = to_vector<double>(w), dxv = to_vector<double>(g.dx);
    std::vector<double> dw(h, 0), db(h, 0);
    double max_dx_err = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double mu = 0, ms = 0;
      for (int64_t j = 0; j < h; ++j) mu += xv[r * h + j];
      mu = rms ? 0 : mu / h;
      for (int64_t j = 0; j < h; ++j) ms += (xv[r * h + j] - mu) * (xv[r * h + j] - mu);
      double rs = 1 / std::sqrt(ms / h + 1e-5), sg = 0, sgx = 0;
      for (int64_t j = 0; j < h; ++j) {
        double xh = (xv[r * h + j] - mu) * rs, gg = dyv[r * h + j] * wv[j];
        sg += gg, sgx += gg * xh;
        dw[j] += dyv[r * h + j] * xh;
        db[j] += dyv[r * h + j];
      }
      for (int64_t j = 0; j < h; ++j) {
        double xh = (xv[r * h + j] - mu) * rs, gg = dyv[r * h + j] * wv[j];
        double dx = rs * (gg - (rms ? 0 : sg / h) - xh * sgx / h);
        max_dx_err = std::max(max_dx_err, std::fabs(dx - dxv[r * h + j]));
      }
    }
    EXPECT_LT(max_dx_err, 1e-12);
    EXPECT_TENSOR_CLOSE(g.dweight, from_vector(dw), 1e-12, 1e-12);
    if (!rms) {
      EXPECT_TENSOR_CLOSE(g.dbias, from_vector(db), 1e-12, 1e-12);
    }
    EXPECT_FALSE(g.dbias.defined() && rms);
  }
}

// Frozen weight (only x requires grad) and frozen input (only parameters) both work.
TEST(Norm, PartialRequiresGrad) {
  Tensor x = random_tensor({3, 9}, 61, DType::F64);
  Tensor w = random_tensor({9}, 62, DType::F64), b = random_tensor({9}, 63, DType::F64);
  x.set_requires_grad(true);
  F::sum(F::layer_norm(x, w, b)).backward();
  EXPECT_TRUE(x.grad().defined());
  x.set_requires_grad(false);
  w.set_requires_grad(true);
  F::sum(F::rms_norm(x, w)).backward();
  EXPECT_TRUE(w.grad().defined());
}

TEST(Norm, BadInput) {
  Tensor x = zeros({4, 8});
  std::string m = error_message([&] { ops::layer_norm_forward(x, zeros({7}), Tensor(), 1e-5); });
  EXPECT_NE(m.find("[7]"), std::string::npos) << m;
  EXPECT_NE(m.find("[4, 8]"), std::string::npos) << m;
  m = error_message([&] { F::layer_norm(x, zeros({8}), zeros({8, 1})); });
  EXPECT_NE(m.find("bias"), std::string::npos) << m;
  EXPECT_NE(m.find("[8, 1]"), std::string::npos) << m;
  EXPECT_NE(m.find("[4, 8]"), std::string::npos) << m;
  m = error_message([&] { F::rms_norm(x, zeros({8}, DType::BF16)); });
  EXPECT_NE(m.find("bfloat16"), std::string::npos) << m;
  EXPECT_NE(m.find("float32"), std::string::npos) << m;
  m = error_message([&] { F::rms_norm(x, zeros({16})); });
  EXPECT_NE(m.find("[16]"), std::string::npos) << m;
  EXPECT_NE(m.find("[4, 8]"), std::string::npos) << m;
  auto o = ops::rms_norm_forward(x, ones({8}), 1e-5);
  m = error_message([&] { ops::rms_norm_backward(zeros({4, 9}), x, o.rstd, ones({8})); });
  EXPECT_NE(m.find("[4, 9]"), std::string::npos) << m;
  EXPECT_NE(m.find("[4, 8]"), std::string::npos) << m;
  m = error_message([&] { ops::rms_norm_backward(x, x, zeros({3}), ones({8})); });
  EXPECT_NE(m.find("rstd"), std::string::npos) << m;
}

}  // namespace
}  // namespace mcore::testing
