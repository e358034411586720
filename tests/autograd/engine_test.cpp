#include <gtest/gtest.h>

#include "mcore/autograd/checkpoint.h"
#include "mcore/autograd/engine.h"
#include "mcore/nn/functional.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore {

using testing::random_tensor;

TEST(Autograd, ChainRuleThroughSharedInput) {
  // y = sum(x * x + 3x): dy/dx = 2x + 3, x used twice.
  Tensor x = from_vector<double>({1.0, -2.0, 0.5}).set_requires_grad(true);
  Tensor y = F::sum(F::add(F::mul(x, x), F::scale(x, 3.0)));
  y.backward();
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{5.0, -1.0, 4.0}));
  EXPECT_DOUBLE_EQ(y.item(), 1 + 4 + 0.25 + 3 * (1 - 2 + 0.5));
}

TEST(Autograd, GradAccumulatesAcrossBackwardCalls) {
  Tensor x = from_vector<double>({1.0, 2.0}).set_requires_grad(true);
  F::sum(F::scale(x, 2.0)).backward();
  F::sum(F::scale(x, 3.0)).backward();
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{5.0, 5.0}));
}

TEST(Autograd, MultipleRootsWithGivenGradients) {
  // Pipeline-stage style: backward(outputs, grad_outputs).
  Tensor x = from_vector<double>({1.0, 2.0}).set_requires_grad(true);
  Tensor a = F::scale(x, 2.0), b = F::mul(x, x);
  autograd::backward({a, b}, {from_vector<double>({1.0, 1.0}), from_vector<double>({0.5, 2.0})});
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{2.0 + 1.0, 2.0 + 8.0}));
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = from_vector<double>({1.0}).set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard g;
    y = F::scale(x, 2.0);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_THROW(y.backward(), Error);
}

TEST(Autograd, HooksRunInOrder) {
  Tensor x = from_vector<double>({1.0, 2.0}).set_requires_grad(true);
  int post_calls = 0;
  x.register_hook([](const Tensor& g) { return F::scale(g, 2.0).detach(); });
  x.register_post_accumulate_grad_hook([&](Tensor& p) {
    ++post_calls;
    EXPECT_EQ(to_vector<double>(p.grad()), (std::vector<double>{20.0, 20.0}));
  });
  Tensor h = F::scale(x, 2.0);
  h.register_hook([](const Tensor& g) { return F::scale(g, 5.0).detach(); });  // non-leaf hook
  F::sum(h).backward();
  EXPECT_EQ(post_calls, 1);
}

TEST(Autograd, SecondBackwardWithoutRetainGraphIsAnError) {
  Tensor x = from_vector<double>({1.0, 2.0}).set_requires_grad(true);
  Tensor y = F::sum(F::mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_NO_THROW(y.backward());
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{4.0, 8.0}));
  EXPECT_THROW(y.backward(), Error);
}

TEST(Autograd, ViewOnTensorRequiringGradIsAClearError) {
  Tensor x = zeros({2, 3}, DType::F64).set_requires_grad(true);
  try {
    x.view({3, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("F::view"), std::string::npos) << e.message();
  }
}

TEST(Autograd, ViewOpsGradcheck) {
  Tensor x = random_tensor({3, 4, 5}, 1).set_requires_grad(true);
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor t = F::transpose(in[0], 0, 2);  // [5, 4, 3]
    Tensor n = F::narrow(t, 1, 1, 2);      // [5, 2, 3]
    Tensor r = F::view(F::reshape(F::contiguous(n), {10, 3}), {10, 3});
    Tensor s = F::select(F::permute(in[0], {2, 0, 1}), 0, 4);  // [3, 4]
    std::vector<Tensor> parts = F::split(r, {4, 6}, 0);
    Tensor c = F::cat({parts[1], parts[0]}, 0);
    return F::add(F::sum(F::mul(c, c)), F::sum(F::unsqueeze(s, 0)));
  };
  EXPECT_TRUE(testing::gradcheck(fn, {x}));
}

// split is one node for all its pieces: an unused piece (gradient arriving as zeros), a
// negative dim, a strided input and a zero-size piece must all give the right gradient.
TEST(Autograd, SplitGradcheckUnusedPiecesAndNegativeDim) {
  Tensor x = random_tensor({3, 4, 7}, 5).set_requires_grad(true);
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor t = F::transpose(in[0], 0, 1);  // [4, 3, 7], strided
    std::vector<Tensor> p = F::split(t, {2, 0, 4, 1}, -1);
    EXPECT_EQ(p.size(), 4u);
    EXPECT_EQ(p[2].shape(), (Shape{4, 3, 4}));
    return F::add(F::sum(F::mul(p[2], p[2])), F::sum(F::scale(p[3], 3.0)));  // p[0] unused
  };
  EXPECT_TRUE(testing::gradcheck(fn, {x}));
  EXPECT_THROW(F::split(x, {3, 3}, 2), Error);
}

TEST(Autograd, BroadcastArithmeticGradcheck) {
  Tensor a = random_tensor({4, 3, 5}, 2).set_requires_grad(true);
  Tensor bias = random_tensor({5}, 3).set_requires_grad(true);
  Tensor rowscale = random_tensor({4, 1, 1}, 4).set_requires_grad(true);
  auto fn = [](const std::vector<Tensor>& in) {
    return F::sub(F::mul(F::add(in[0], in[1]), in[2]), F::scale(in[1], 0.5));
  };
  EXPECT_TRUE(testing::gradcheck(fn, {a, bias, rowscale}));
}

TEST(Autograd, MatmulAndLinearGradcheck) {
  Tensor a = random_tensor({2, 3, 5}, 5).set_requires_grad(true);
  Tensor b = random_tensor({2, 5, 4}, 6).set_requires_grad(true);
  Tensor w = random_tensor({7, 5}, 7).set_requires_grad(true);
  Tensor bias = random_tensor({7}, 8).set_requires_grad(true);
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return F::matmul(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return F::matmul(in[0], in[1], true, true); },
      {random_tensor({2, 5, 3}, 9).set_requires_grad(true),
       random_tensor({2, 4, 5}, 10).set_requires_grad(true)}));
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return F::linear(in[0], in[1], in[2]); }, {a, w, bias}));
  // Shared 2-D right operand over a batch.
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return F::matmul(in[0], in[1], false, true); }, {a, w}));
}

TEST(Autograd, CheckpointGivesIdenticalGradients) {
  Tensor x = random_tensor({4, 6}, 11, DType::F32).set_requires_grad(true);
  Tensor w1 = random_tensor({8, 6}, 12, DType::F32).set_requires_grad(true);
  Tensor w2 = random_tensor({6, 8}, 13, DType::F32).set_requires_grad(true);
  auto block = [&](const std::vector<Tensor>& in) {
    Tensor h = F::linear(in[0], w1);
    return std::vector<Tensor>{F::linear(F::mul(h, h), w2)};
  };
  Tensor y1 = F::sum(block({x})[0]);
  y1.backward();
  Tensor gx = x.grad(), g1 = w1.grad(), g2 = w2.grad();
  x.set_grad(Tensor());
  w1.set_grad(Tensor());
  w2.set_grad(Tensor());
  Tensor y2 = F::sum(autograd::checkpoint(block, {x})[0]);
  y2.backward();
  EXPECT_EQ(y1.item(), y2.item());
  EXPECT_EQ(to_vector<float>(gx), to_vector<float>(x.grad()));
  EXPECT_EQ(to_vector<float>(g1), to_vector<float>(w1.grad()));
  EXPECT_EQ(to_vector<float>(g2), to_vector<float>(w2.grad()));
}

TEST(Autograd, ShapeMismatchErrorsNameBothShapes) {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  try {
    F::matmul(a, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[2, 3]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[4, 5]"), std::string::npos) << e.message();
  }
  try {
    F::add(zeros({2, 3}), zeros({3, 2}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[2, 3]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[3, 2]"), std::string::npos) << e.message();
  }
  try {
    F::add(zeros({2}), zeros({2}, DType::F64));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("float32"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("float64"), std::string::npos) << e.message();
  }
}

}  // namespace mcore
