// Embedding CUDA kernels against the CPU op: the lookup is a bit copy (exact, any dtype, int64
// and int32 ids, 16-byte and element-wise rows); the gradient's float32 atomic sums differ from
// the CPU's token-order sums only in summation order: float32 rtol 1e-5, atol 1e-5; bfloat16
// rtol 1e-2 (one rounding of the float32 sum). Skips without a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/embedding.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

// Repeated ids (so the gradient really sums) in [0, V).
Tensor make_ids(const Shape& shape, int64_t V, DType dt) {
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>((i * 7 + i / 3) % V);
  return from_vector(v, shape).to(dt);
}

TEST(CudaEmbedding, MatchesCpu) {
  MCORE_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (DType id_dt : {DType::I64, DType::I32}) {
      for (int64_t H : {5, 64, 1000}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " H " + std::to_string(H));
        const int64_t V = 11;
        Tensor w = random_tensor({V, H}, 41, dt);
        Tensor ids = make_ids({3, 7}, V, id_dt);
        Tensor yc = ops::embedding_forward(w, ids);
        Tensor yg = ops::embedding_forward(to_gpu(w), to_gpu(ids));
        EXPECT_TENSOR_CLOSE(to_cpu(yg), yc, 0, 0);
        Tensor g = random_tensor({3, 7, H}, 42, dt);
        Tensor dc = ops::embedding_backward(g, ids, V);
        Tensor dg = ops::embedding_backward(to_gpu(g), to_gpu(ids), V);
        EXPECT_EQ(dg.dtype(), dt);
        const double rtol = dt == DType::F32 ? 1e-5 : 1e-2, atol = dt == DType::F32 ? 1e-5 : 1e-2;
        EXPECT_TENSOR_CLOSE(to_cpu(dg), dc, rtol, atol);
      }
    }
  }
}

TEST(CudaEmbedding, BadIdsDtypeRaises) {
  MCORE_REQUIRE_GPU();
  Tensor w = to_gpu(random_tensor({4, 8}, 43, DType::F32));
  EXPECT_THROW(ops::embedding_forward(w, to_gpu(random_tensor({3}, 44, DType::F32))), Error);
  EXPECT_THROW(ops::embedding_forward(w, make_ids({3}, 4, DType::I64)), Error);  // ids on CPU
}

}  // namespace
}  // namespace mcore
