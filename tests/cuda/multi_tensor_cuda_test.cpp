// CUDA multi-tensor passes (mcore/ops/cuda/multi_tensor_cuda.cu) against the CPU: the squared L2
// norm of a gradient list (mixed dtypes, tensors spanning several 64Ki-element chunks, empty
// tensors), max-abs with NaN, zero counts, unscale with the found-inf flag, scale. All tests
// skip without a GPU.
//
// Tolerances: the L2 norm accumulates in float64 on both devices in different orders: rtol 1e-12.
// max_abs, count_zeros, unscale and scale are exact (one rounding per element, or none): 0.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "mcore/ops/multi_tensor.h"
#include "mcore/ops/reduction.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/multi_tensor_cuda.h"
#endif

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

// Sizes around the chunk boundary (65536) and an empty tensor.
std::vector<Tensor> grad_list(DType dt, uint64_t seed) {
  std::vector<Tensor> ts;
  for (int64_t n :
       {int64_t{1}, int64_t{1000}, int64_t{65536}, int64_t{65537}, int64_t{0}, int64_t{200003}}) {
    ts.push_back(random_tensor({n}, seed++, dt));
  }
  return ts;
}

std::vector<Tensor> on_gpu(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(to_gpu(t));
  return out;
}

#ifdef MCORE_WITH_CUDA
TEST(CudaMultiTensor, L2NormSquaredMatchesCpuAndIsReproducible) {
  MCORE_REQUIRE_GPU();
  std::vector<Tensor> ts = grad_list(DType::F32, 1);
  for (const Tensor& t : grad_list(DType::BF16, 20)) ts.push_back(t);
  ts.push_back(random_tensor({3, 70000}, 40, DType::F64));
  ts.push_back(random_tensor({129}, 41, DType::F16));
  const double ref = ops::multi_tensor_l2norm_squared(ts);
  const std::vector<Tensor> g = on_gpu(ts);
  const double got = ops::cuda::multi_tensor_l2norm_squared(g);
  EXPECT_NEAR(got, ref, 1e-12 * ref);
  EXPECT_EQ(got, ops::cuda::multi_tensor_l2norm_squared(g));  // bit-reproducible
  // A non-contiguous view is copied, not misread.
  const Tensor m = to_gpu(random_tensor({64, 48}, 42, DType::F32));
  EXPECT_NEAR(ops::cuda::multi_tensor_l2norm_squared({m.transpose(0, 1)}),
              ops::multi_tensor_l2norm_squared({to_cpu(m)}), 1e-12 * 64 * 48);
}

TEST(CudaMultiTensor, L2NormPropagatesInf) {
  MCORE_REQUIRE_GPU();
  Tensor t = random_tensor({5000}, 3, DType::F32);
  t.data<float>()[4321] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isinf(ops::cuda::multi_tensor_l2norm_squared({to_gpu(t)})));
}
#endif

TEST(CudaMultiTensor, MaxAbsAndCountZeros) {
  MCORE_REQUIRE_GPU();
  std::vector<Tensor> ts = grad_list(DType::F32, 5);
  ts.push_back(random_tensor({70001}, 50, DType::F64));
  for (int64_t i = 0; i < 300; i += 7) ts[3].data<float>()[i] = 0.0f;
  ts[5].data<float>()[123456] = -7.5f;  // the largest magnitude, negative
  ts[6].data<double>()[70000] = 0.0;
  const std::vector<Tensor> g = on_gpu(ts);
  EXPECT_EQ(ops::multi_tensor_max_abs(g), ops::multi_tensor_max_abs(ts));
  EXPECT_EQ(ops::multi_tensor_max_abs(g), 7.5);
  EXPECT_EQ(ops::multi_tensor_count_zeros(g), ops::multi_tensor_count_zeros(ts));
  ts[2].data<float>()[17] = std::nanf("");
  EXPECT_TRUE(std::isnan(ops::multi_tensor_max_abs(on_gpu(ts))));
}

TEST(CudaMultiTensor, UnscaleFindsInfAndScales) {
  MCORE_REQUIRE_GPU();
  std::vector<Tensor> ts = grad_list(DType::F32, 9);
  ts.push_back(random_tensor({1234}, 60, DType::F64));
  std::vector<Tensor> g = on_gpu(ts);
  EXPECT_FALSE(ops::non_finite_check_and_unscale_(g, 1.0f / 1024));
  EXPECT_FALSE(ops::non_finite_check_and_unscale_(ts, 1.0f / 1024));
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_TENSOR_CLOSE(to_cpu(g[i]), ts[i], 0, 0);

  ts[5].data<float>()[199999] = -std::numeric_limits<float>::infinity();
  g = on_gpu(ts);
  EXPECT_TRUE(ops::non_finite_check_and_unscale_(g, 0.5f));
  EXPECT_TRUE(ops::non_finite_check_and_unscale_(ts, 0.5f));
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_TENSOR_CLOSE(to_cpu(g[i]), ts[i], 0, 0);

  ops::multi_tensor_scale_(g, 0.3);
  ops::multi_tensor_scale_(ts, 0.3);
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_TENSOR_CLOSE(to_cpu(g[i]), ts[i], 0, 0);
}

TEST(CudaMultiTensor, MixedDevicesAndBadDtypesRaise) {
  MCORE_REQUIRE_GPU();
  std::vector<Tensor> mixed = {to_gpu(random_tensor({4}, 1, DType::F32)),
                               random_tensor({4}, 2, DType::F32)};
  try {
    ops::multi_tensor_scale_(mixed, 2.0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 1"), std::string::npos) << e.what();
  }
  std::vector<Tensor> bf = {to_gpu(random_tensor({4}, 3, DType::BF16))};
  EXPECT_THROW(ops::multi_tensor_max_abs(bf), Error);
  EXPECT_EQ(ops::multi_tensor_count_zeros({}), 0);
}

}  // namespace
}  // namespace mcore
