// Dropout CUDA kernels: the keep mask must equal the CPU's bit for bit (the same Philox4x32-10
// counter/key mapping), for slices starting at any global offset (including ones not aligned
// to a Philox block of 4), p = 0 and p = 1; forward and backward outputs then equal the CPU's
// exactly (the same float32 product, one rounding). Skips without a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/dropout.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/dropout_cuda.h"
#endif

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

#ifdef MCORE_WITH_CUDA
TEST(CudaDropout, MaskIsBitIdenticalToCpu) {
  MCORE_REQUIRE_GPU();
  for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
    for (uint64_t offset : {0ull, 1ull, 3ull, 6ull, (1ull << 33) + 5}) {
      for (const Shape& shape : std::vector<Shape>{{1}, {3, 5}, {4, 1001}}) {
        SCOPED_TRACE("p " + std::to_string(p) + " offset " + std::to_string(offset) + " " +
                     shape_str(shape));
        Tensor mc = ops::dropout_mask(shape, p, 1234, 7, offset);
        Tensor mg = ops::cuda::dropout_mask(shape, p, 1234, 7, offset, Device::cuda(0));
        EXPECT_EQ(to_vector<uint8_t>(to_cpu(mg)), to_vector<uint8_t>(mc));
      }
    }
  }
}
#endif

TEST(CudaDropout, ForwardBackwardMatchCpuExactly) {
  MCORE_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (uint64_t offset : {0ull, 2ull, 4096ull}) {
      for (const Shape& shape : std::vector<Shape>{{7}, {3, 5, 16}, {8, 1000}}) {
        SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dt) + " offset " + std::to_string(offset));
        Tensor x = random_tensor(shape, 61, dt);
        Tensor yc = ops::dropout_forward(x, 0.3, 99, 2, offset);
        Tensor yg = ops::dropout_forward(to_gpu(x), 0.3, 99, 2, offset);
        EXPECT_TENSOR_CLOSE(to_cpu(yg), yc, 0, 0);
        Tensor dc = ops::dropout_backward(x, 0.3, 99, 2, offset);
        Tensor dg = ops::dropout_backward(to_gpu(x), 0.3, 99, 2, offset);
        EXPECT_TENSOR_CLOSE(to_cpu(dg), dc, 0, 0);
      }
    }
  }
}

}  // namespace
}  // namespace mcore
