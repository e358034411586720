// CUDA elementwise and reduction ops against the CPU ops: broadcast arithmetic, scalar ops,
// in-place forms, strided inputs, sum_to, sum/mean/max over dims, their backwards and the
// float64 multi-tensor sum of squares. Tolerances: float64 1e-12 and float32 1e-5 relative
// (same math, different summation order); bf16/fp16 elementwise results round the same float32
// value, so they agree exactly, and bf16 sums (summation order differs, one rounding) use 1e-2.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mcore/ops/elementwise.h"
#include "mcore/ops/reduction.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

const DType kFloatTypes[] = {DType::F64, DType::F32, DType::BF16, DType::F16};

double rtol(DType d) {
  return d == DType::F64 ? 1e-12 : d == DType::F32 ? 1e-5 : 1e-2;
}

// The op on the GPU (poisoned outputs are not possible for value-returning ops) vs the CPU.
template <class Fn>
void expect_same(Fn fn, const std::vector<Tensor>& inputs, double tol, const char* what) {
  std::vector<Tensor> gpu;
  for (const Tensor& t : inputs) gpu.push_back(to_gpu(t));
  Tensor expected = fn(inputs);
  Tensor actual = fn(gpu);
  ASSERT_TRUE(actual.device().is_cuda()) << what;
  EXPECT_TENSOR_CLOSE(to_cpu(actual).to(DType::F64), expected.to(DType::F64), tol, tol) << what;
}

TEST(CudaElementwise, BroadcastBinaryOps) {
  MCORE_REQUIRE_GPU();
  const std::vector<std::pair<Shape, Shape>> shapes = {{{7, 13}, {7, 13}},  {{4, 5, 6}, {6}},
                                                       {{4, 1, 6}, {5, 1}}, {{3, 33}, {3, 1}},
                                                       {{1}, {9, 2}},       {{1027}, {1027}}};
  for (DType d : kFloatTypes) {
    for (const auto& [sa, sb] : shapes) {
      Tensor a = random_tensor(sa, 1, DType::F64).to(d);
      Tensor b = random_tensor(sb, 2, DType::F64, 2.0).to(d);
      Tensor bd = ops::add_scalar(b.to(DType::F64), 3.0).to(d);  // divisors away from zero
      const double tol = d == DType::F64 ? 1e-15 : d == DType::F32 ? 1e-6 : 1e-2;
      expect_same([](auto v) { return ops::add(v[0], v[1]); }, {a, b}, tol, "add");
      expect_same([](auto v) { return ops::add(v[0], v[1], -0.5); }, {a, b}, tol, "add alpha");
      expect_same([](auto v) { return ops::sub(v[0], v[1]); }, {a, b}, tol, "sub");
      expect_same([](auto v) { return ops::mul(v[0], v[1]); }, {a, b}, tol, "mul");
      expect_same([](auto v) { return ops::div(v[0], v[1]); }, {a, bd}, tol, "div");
    }
  }
}

TEST(CudaElementwise, ScalarAndInPlaceOps) {
  MCORE_REQUIRE_GPU();
  for (DType d : kFloatTypes) {
    const double tol = d == DType::F64 ? 1e-15 : d == DType::F32 ? 1e-6 : 1e-2;
    Tensor x = random_tensor({5, 67}, 3, DType::F64).to(d);
    Tensor y = random_tensor({5, 67}, 4, DType::F64).to(d);
    Tensor bias = random_tensor({67}, 5, DType::F64).to(d);
    expect_same([](auto v) { return ops::scale(v[0], 0.3); }, {x}, tol, "scale");
    expect_same([](auto v) { return ops::add_scalar(v[0], -1.25); }, {x}, tol, "add_scalar");
    expect_same([](auto v) { return ops::neg(v[0]); }, {x}, tol, "neg");
    expect_same(
        [](auto v) {
          Tensor a = v[0].clone();
          ops::add_(a, v[1], 2.0);
          ops::mul_(a, v[2]);
          ops::scale_(a, -0.5);
          ops::axpy_(a, 0.25, v[0]);
          return a;
        },
        {x, bias, y}, tol, "in-place chain");
  }
}

TEST(CudaElementwise, StridedInputsAndOutputs) {
  MCORE_REQUIRE_GPU();
  NoGradGuard no_grad;
  Tensor a = random_tensor({6, 9}, 6, DType::F32);
  Tensor b = random_tensor({9, 6}, 7, DType::F32);
  expect_same([](auto v) { return ops::mul(v[0], v[1].transpose(0, 1)); }, {a, b}, 1e-6,
              "transposed operand");
  expect_same([](auto v) { return ops::scale(v[0].narrow(1, 2, 5), 3.0); }, {a}, 1e-6,
              "narrowed operand");
  expect_same(
      [](auto v) {
        Tensor out = v[0].clone();
        Tensor view = out.transpose(0, 1);  // in-place into a strided view
        ops::add_(view, v[1]);
        return out;
      },
      {a.transpose(0, 1).contiguous(), b}, 1e-6, "strided in-place");
}

TEST(CudaReduction, SumToAndSumMeanOverDims) {
  MCORE_REQUIRE_GPU();
  for (DType d : kFloatTypes) {
    // Short rows (warp path), long rows (block and split paths), columns.
    for (const Shape& s : std::vector<Shape>{{5, 7, 3}, {3, 5000}, {2, 70001}, {1, 300000}}) {
      Tensor x = random_tensor(s, 8, DType::F64).to(d);
      for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{
               {}, {0}, {-1}, {0, static_cast<int64_t>(s.size()) - 1}}) {
        expect_same([&](auto v) { return ops::sum(v[0], dims); }, {x}, rtol(d), "sum");
        expect_same([&](auto v) { return ops::mean(v[0], dims, true); }, {x}, rtol(d), "mean");
      }
    }
    Tensor x = random_tensor({4, 5, 6}, 9, DType::F64).to(d);
    expect_same([](auto v) { return ops::sum_all(v[0]); }, {x}, rtol(d), "sum_all");
    expect_same([](auto v) { return ops::sum(v[0], {1}); }, {x}, rtol(d), "middle dim");
    expect_same([](auto v) { return ops::sum_to(v[0], {5, 1}); }, {x}, rtol(d), "sum_to");
    expect_same([](auto v) { return ops::sum_to(v[0], {6}); }, {x}, rtol(d), "sum_to bias");
    Tensor g = random_tensor({4, 6}, 10, DType::F64).to(d);
    expect_same(
        [](auto v) {
          return ops::sum_backward(v[0], {4, 5, 6}, {1}, false);
        },
        {g}, rtol(d), "sum_backward");
    expect_same(
        [](auto v) {
          return ops::mean_backward(v[0], {4, 5, 6}, {1}, false);
        },
        {g}, rtol(d), "mean_backward");
  }
}

TEST(CudaReduction, MaxWithNaNAndTies) {
  MCORE_REQUIRE_GPU();
  for (DType d : kFloatTypes) {
    Tensor x = random_tensor({6, 40, 3}, 12, DType::F64).to(DType::F64);
    double* p = x.data<double>();
    p[5] = std::numeric_limits<double>::quiet_NaN();  // row with a NaN
    p[100] = p[103] = 5.0;                            // ties: the first wins
    x = x.to(d);
    for (int64_t dim : {0, 1, 2}) {
      ops::MaxResult cpu = ops::max(x, dim);
      ops::MaxResult gpu = ops::max(to_gpu(x), dim);
      EXPECT_TENSOR_CLOSE(to_cpu(gpu.values).to(DType::F64), cpu.values.to(DType::F64), 0, 0);
      EXPECT_TRUE(to_vector<int64_t>(gpu.indices) == to_vector<int64_t>(cpu.indices)) << dim;
      Tensor g = random_tensor(cpu.values.shape(), 13, DType::F64).to(d);
      Tensor gx_cpu = ops::max_backward(g, cpu.indices, x.shape(), dim, false);
      Tensor gx_gpu = ops::max_backward(to_gpu(g), gpu.indices, x.shape(), dim, false);
      EXPECT_TENSOR_CLOSE(to_cpu(gx_gpu).to(DType::F64), gx_cpu.to(DType::F64), 0, 0);
    }
  }
}

TEST(CudaReduction, MultiTensorL2NormSquared) {
  MCORE_REQUIRE_GPU();
  std::vector<Tensor> cpu = {
      random_tensor({1000, 3}, 14, DType::F32), random_tensor({7}, 15, DType::BF16),
      random_tensor({70000}, 16, DType::F16), random_tensor({3, 3}, 17, DType::F64)};
  std::vector<Tensor> gpu;
  for (const Tensor& t : cpu) gpu.push_back(to_gpu(t));
  const double expected = ops::multi_tensor_l2norm_squared(cpu);
  EXPECT_NEAR(ops::multi_tensor_l2norm_squared(gpu), expected, 1e-12 * expected);
}

TEST(CudaElementwise, BadInputsNameShapes) {
  MCORE_REQUIRE_GPU();
  Tensor a = zeros({3, 4}, {DType::F32, Device::cuda()});
  Tensor b = zeros({5}, {DType::F32, Device::cuda()});
  try {
    ops::add(a, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 4]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[5]"), std::string::npos) << e.what();
  }
  Tensor c = zeros({3, 4}, DType::F32);  // on the CPU
  EXPECT_THROW(ops::add(a, c), Error);
}

}  // namespace
}  // namespace mcore
