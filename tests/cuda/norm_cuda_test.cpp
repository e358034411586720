// LayerNorm / RMSNorm CUDA kernels against the CPU op: forward output and saved statistics,
// backward dx / dweight / dbias, float32 and bfloat16, vectorized and scalar row lengths.
// Tolerances: float32 rtol 1e-5 (same float32 math, different summation order); column sums
// (dweight, dbias) over many rows get atol 1e-4. bfloat16 outputs rtol 1e-2 (one bf16 rounding
// of a float32 value that may differ in the last float bits). Skips without a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/norm.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

struct Tol {
  double rtol, atol;
};
Tol tol_for(DType dt) {
  return dt == DType::F32 ? Tol{1e-5, 1e-6} : Tol{1e-2, 1e-2};
}

// H = 7 and 250 take the scalar path (rows not 16-byte multiples), 256 and 4096 the packed one;
// 4096 also takes the block-per-row plan.
const std::vector<Shape> kShapes = {{4, 7}, {3, 5, 256}, {9, 250}, {6, 4096}};

TEST(CudaNorm, LayerNormMatchesCpu) {
  MCORE_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const Shape& shape : kShapes) {
      SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dt));
      const int64_t h = shape.back();
      Tensor x = random_tensor(shape, 1, dt, 3.0), w = random_tensor({h}, 2, dt);
      Tensor b = random_tensor({h}, 3, dt), dy = random_tensor(shape, 4, dt);
      const Tol t = tol_for(dt);
      auto c = ops::layer_norm_forward(x, w, b, 1e-5);
      auto g = ops::layer_norm_forward(to_gpu(x), to_gpu(w), to_gpu(b), 1e-5);
      EXPECT_TRUE(g.y.device().is_cuda());
      EXPECT_TENSOR_CLOSE(to_cpu(g.y), c.y, t.rtol, t.atol);
      EXPECT_EQ(g.mean.dtype(), c.mean.dtype());
      EXPECT_TENSOR_CLOSE(to_cpu(g.mean), c.mean, 1e-5, 1e-6);
      EXPECT_TENSOR_CLOSE(to_cpu(g.rstd), c.rstd, 1e-5, 1e-6);
      auto cg = ops::layer_norm_backward(dy, x, c.mean, c.rstd, w, true);
      auto gg = ops::layer_norm_backward(to_gpu(dy), to_gpu(x), g.mean, g.rstd, to_gpu(w), true);
      EXPECT_TENSOR_CLOSE(to_cpu(gg.dx), cg.dx, t.rtol, t.atol);
      EXPECT_TENSOR_CLOSE(to_cpu(gg.dweight), cg.dweight, t.rtol, std::max(t.atol, 1e-4));
      EXPECT_TENSOR_CLOSE(to_cpu(gg.dbias), cg.dbias, t.rtol, std::max(t.atol, 1e-4));
      // Without bias, and weight grads only.
      auto c2 = ops::layer_norm_forward(x, w, Tensor(), 1e-5);
      auto g2 = ops::layer_norm_forward(to_gpu(x), to_gpu(w), Tensor(), 1e-5);
      EXPECT_TENSOR_CLOSE(to_cpu(g2.y), c2.y, t.rtol, t.atol);
      auto gw = ops::layer_norm_backward(to_gpu(dy), to_gpu(x), g2.mean, g2.rstd, to_gpu(w), false,
                                         /*need_dx=*/false);
      EXPECT_FALSE(gw.dx.defined());
      EXPECT_FALSE(gw.dbias.defined());
      EXPECT_TENSOR_CLOSE(to_cpu(gw.dweight), cg.dweight, t.rtol, std::max(t.atol, 1e-4));
    }
  }
}

TEST(CudaNorm, RMSNormMatchesCpu) {
  MCORE_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const Shape& shape : kShapes) {
      SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dt));
      const int64_t h = shape.back();
      Tensor x = random_tensor(shape, 5, dt, 2.0), w = random_tensor({h}, 6, dt);
      Tensor dy = random_tensor(shape, 7, dt);
      const Tol t = tol_for(dt);
      auto c = ops::rms_norm_forward(x, w, 1e-6);
      auto g = ops::rms_norm_forward(to_gpu(x), to_gpu(w), 1e-6);
      EXPECT_TENSOR_CLOSE(to_cpu(g.y), c.y, t.rtol, t.atol);
      EXPECT_TENSOR_CLOSE(to_cpu(g.rstd), c.rstd, 1e-5, 1e-6);
      auto cg = ops::rms_norm_backward(dy, x, c.rstd, w);
      auto gg = ops::rms_norm_backward(to_gpu(dy), to_gpu(x), g.rstd, to_gpu(w));
      EXPECT_TENSOR_CLOSE(to_cpu(gg.dx), cg.dx, t.rtol, t.atol);
      EXPECT_TENSOR_CLOSE(to_cpu(gg.dweight), cg.dweight, t.rtol, std::max(t.atol, 1e-4));
    }
  }
}

TEST(CudaNorm, MixedDevicesRaise) {
  MCORE_REQUIRE_GPU();
  Tensor x = random_tensor({2, 8}, 1, DType::F32), w = random_tensor({8}, 2, DType::F32);
  EXPECT_THROW(ops::rms_norm_forward(to_gpu(x), w, 1e-6), Error);
  EXPECT_THROW(ops::rms_norm_forward(to_gpu(x), to_gpu(random_tensor({7}, 2, DType::F32)), 1e-6),
               Error);
}

}  // namespace
}  // namespace mcore
