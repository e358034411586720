// Fused cross-entropy CUDA kernels against the CPU op: loss and saved logsumexp (float32) and
// the logits gradient, with ignore_index, a loss mask, int64 and int32 targets, float32 and
// bfloat16 logits, short and long vocabularies; and the vocab-parallel shard passes (row max,
// row stats, fused stats, finish, backward) recombined at tp = 1, where they must give the
// fused op's results. Tolerances: float32 rtol 1e-5, atol 1e-5 (online max/sum rescaling in a
// different order); bfloat16 gradients rtol 1e-2. Skips without a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/cross_entropy.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/cross_entropy_cuda.h"
#endif

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

Tensor make_targets(int64_t n, int64_t V, DType dt, bool with_ignore) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = (with_ignore && i % 5 == 2) ? -100 : (i * 13 + 3) % V;
  return from_vector(v).to(dt);
}

TEST(CudaCrossEntropy, MatchesCpu) {
  MCORE_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t V : {7, 256, 5003}) {
      for (DType tdt : {DType::I64, DType::I32}) {
        for (bool masked : {false, true}) {
          SCOPED_TRACE(std::string(dtype_name(dt)) + " V " + std::to_string(V));
          const int64_t N = 9;
          Tensor logits = random_tensor({N, V}, 51, dt, 5.0);
          Tensor target = make_targets(N, V, tdt, true);
          Tensor mask = masked ? random_tensor({N}, 52, DType::F32) : Tensor();
          auto c = ops::cross_entropy_forward(logits, target, mask);
          auto g = ops::cross_entropy_forward(to_gpu(logits), to_gpu(target),
                                              masked ? to_gpu(mask) : Tensor());
          EXPECT_EQ(g.loss.dtype(), DType::F32);
          EXPECT_TENSOR_CLOSE(to_cpu(g.loss), c.loss, 1e-5, 1e-5);
          EXPECT_TENSOR_CLOSE(to_cpu(g.logsumexp), c.logsumexp, 1e-5, 1e-5);
          Tensor gl = random_tensor({N}, 53, DType::F32);
          Tensor dc = ops::cross_entropy_backward(gl, logits, target, c.logsumexp, mask);
          Tensor dg = ops::cross_entropy_backward(to_gpu(gl), to_gpu(logits), to_gpu(target),
                                                  g.logsumexp, masked ? to_gpu(mask) : Tensor());
          const double rtol = dt == DType::F32 ? 1e-5 : 1e-2;
          EXPECT_TENSOR_CLOSE(to_cpu(dg), dc, rtol, dt == DType::F32 ? 1e-6 : 1e-3);
        }
      }
    }
  }
}

#ifdef MCORE_WITH_CUDA
TEST(CudaCrossEntropy, VocabParallelPiecesAtTp1) {
  MCORE_REQUIRE_GPU();
  const int64_t N = 6, V = 1000;
  Tensor logits = random_tensor({2, 3, V}, 54, DType::F32, 4.0);
  Tensor target = make_targets(N, V, DType::I64, false).view({2, 3});
  auto c = ops::cross_entropy_forward(logits, target);
  Tensor gx = to_gpu(logits), gt = to_gpu(target);
  // Two-pass (max, then stats under the given max) and fused single pass.
  Tensor mx = ops::cuda::vocab_parallel_row_max(gx);
  EXPECT_EQ(mx.shape(), (Shape{2, 3}));
  Tensor st = ops::cuda::vocab_parallel_row_stats(gx, gt, mx, 0, V, false);
  auto r2 = ops::cuda::vocab_parallel_finish(mx, st, Tensor(), V, 0.0);
  EXPECT_TENSOR_CLOSE(to_cpu(r2.loss), c.loss, 1e-5, 1e-5);
  auto [fmx, fst] = ops::cuda::vocab_parallel_fused_row_stats(gx, gt, 0, V, true);
  EXPECT_TENSOR_CLOSE(to_cpu(fmx), to_cpu(mx), 0, 0);
  auto r1 =
      ops::cuda::vocab_parallel_finish(fmx, fst.narrow(1, 0, 2).contiguous(), Tensor(), V, 0.0);
  EXPECT_TENSOR_CLOSE(to_cpu(r1.loss), c.loss, 1e-5, 1e-5);
  EXPECT_TENSOR_CLOSE(to_cpu(r1.logsumexp), c.logsumexp, 1e-5, 1e-5);
  Tensor gl = random_tensor({2, 3}, 55, DType::F32);
  Tensor dc = ops::cross_entropy_backward(gl, logits, target, c.logsumexp);
  Tensor dg =
      ops::cuda::vocab_parallel_backward(to_gpu(gl), gx, gt, r1.logsumexp, Tensor(), 0, V, 0.0);
  EXPECT_TENSOR_CLOSE(to_cpu(dg), dc, 1e-5, 1e-6);
  // Sharded: the target logit is found only by the shard owning it.
  Tensor half_st = ops::cuda::vocab_parallel_row_stats(gx.narrow(-1, 500, 500).contiguous(), gt, mx,
                                                       500, V, false);
  EXPECT_EQ(half_st.shape(), (Shape{N, 2}));
}
#endif

}  // namespace
}  // namespace mcore
