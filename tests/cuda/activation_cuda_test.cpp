// Activation CUDA kernels (GeLU erf/tanh, SiLU, SwiGLU) against the CPU op, forward and
// backward, float32 and bfloat16, sizes with and without a scalar tail after the 16-byte packs.
// Tolerances: float32 rtol 1e-5, atol 1e-6 (CUDA's erff/expf vs the CPU's vectorized forms,
// ~1-2 ulp); bfloat16 rtol 1e-2 (one rounding). Skips without a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/activation.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

const std::vector<Shape> kShapes = {{7}, {3, 5, 16}, {4, 1001}, {2, 4096}};

double rtol_for(DType dt) {
  return dt == DType::F32 ? 1e-5 : 1e-2;
}
double atol_for(DType dt) {
  return dt == DType::F32 ? 1e-6 : 1e-2;
}

TEST(CudaActivation, GeluSiluMatchCpu) {
  MCORE_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const Shape& shape : kShapes) {
      SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dt));
      Tensor x = random_tensor(shape, 21, dt, 4.0), dy = random_tensor(shape, 22, dt);
      Tensor gx = to_gpu(x), gdy = to_gpu(dy);
      const double r = rtol_for(dt), a = atol_for(dt);
      for (auto ap : {ops::GeluApproximate::kNone, ops::GeluApproximate::kTanh}) {
        EXPECT_TENSOR_CLOSE(to_cpu(ops::gelu_forward(gx, ap)), ops::gelu_forward(x, ap), r, a);
        EXPECT_TENSOR_CLOSE(to_cpu(ops::gelu_backward(gdy, gx, ap)), ops::gelu_backward(dy, x, ap),
                            r, a);
      }
      EXPECT_TENSOR_CLOSE(to_cpu(ops::silu_forward(gx)), ops::silu_forward(x), r, a);
      EXPECT_TENSOR_CLOSE(to_cpu(ops::silu_backward(gdy, gx)), ops::silu_backward(dy, x), r, a);
    }
  }
}

TEST(CudaActivation, SwigluMatchesCpu) {
  MCORE_REQUIRE_GPU();
  // F = 5 (scalar path), 16 and 1024 (packed).
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const Shape& shape : std::vector<Shape>{{3, 10}, {2, 3, 32}, {4, 2048}}) {
      SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dt));
      Shape out_shape = shape;
      out_shape.back() /= 2;
      Tensor x = random_tensor(shape, 23, dt, 3.0), dy = random_tensor(out_shape, 24, dt);
      const double r = rtol_for(dt), a = atol_for(dt);
      EXPECT_TENSOR_CLOSE(to_cpu(ops::swiglu_forward(to_gpu(x))), ops::swiglu_forward(x), r, a);
      EXPECT_TENSOR_CLOSE(to_cpu(ops::swiglu_backward(to_gpu(dy), to_gpu(x))),
                          ops::swiglu_backward(dy, x), r, a);
    }
  }
}

}  // namespace
}  // namespace mcore
