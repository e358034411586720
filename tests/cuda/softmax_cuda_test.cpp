// Scaled / causal softmax CUDA kernels against the CPU op, forward and backward, float32 and
// bfloat16, short rows (warp per row) and long rows (block per row), packed and scalar paths,
// sq < sk causal (bottom-right diagonal) and fully masked rows. Tolerances: float32 rtol 1e-5
// (expf vs the CPU's vectorized exp, ~1 ulp), bfloat16 rtol 1e-2 (one rounding). Skips without
// a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/softmax.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

TEST(CudaSoftmax, MatchesCpu) {
  MCORE_REQUIRE_GPU();
  const std::vector<Shape> shapes = {
      {2, 3, 5, 7}, {1, 2, 16, 64}, {2, 8, 1000}, {3, 4, 2048}, {2, 6, 9}};
  for (DType dt : {DType::F32, DType::BF16}) {
    const double rtol = dt == DType::F32 ? 1e-5 : 1e-2, atol = dt == DType::F32 ? 1e-6 : 1e-3;
    for (const Shape& shape : shapes) {
      for (bool causal : {false, true}) {
        for (double scale : {1.0, 0.125}) {
          SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dt) + (causal ? " causal" : ""));
          Tensor x = random_tensor(shape, 11, dt, 4.0), dy = random_tensor(shape, 12, dt);
          Tensor yc = ops::softmax_forward(x, scale, causal);
          Tensor yg = ops::softmax_forward(to_gpu(x), scale, causal);
          EXPECT_TENSOR_CLOSE(to_cpu(yg), yc, rtol, atol);
          Tensor dc = ops::softmax_backward(dy, yc, scale);
          Tensor dg = ops::softmax_backward(to_gpu(dy), yg, scale);
          EXPECT_TENSOR_CLOSE(to_cpu(dg), dc, rtol, atol);
        }
      }
    }
  }
}

TEST(CudaSoftmax, FullyMaskedRowsAreZero) {
  MCORE_REQUIRE_GPU();
  // sq > sk: the first sq - sk queries see no key at all.
  Tensor x = random_tensor({1, 6, 4}, 3, DType::F32);
  Tensor y = to_cpu(ops::softmax_forward(to_gpu(x), 1.0, true));
  EXPECT_TENSOR_CLOSE(y, ops::softmax_forward(x, 1.0, true), 1e-5, 1e-6);
  EXPECT_TENSOR_CLOSE(y.narrow(1, 0, 2), zeros({1, 2, 4}, DType::F32), 0, 0);
}

}  // namespace
}  // namespace mcore
