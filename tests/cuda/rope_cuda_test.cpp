// RoPE CUDA kernels against the CPU op: rotate-half and interleaved pairing, partial rotation
// (rot_dim < head dim), per-sample angles [S, B, 1, rot], mscale, a strided (transposed) input,
// forward and backward, float32 and bfloat16. Tolerances: float32 rtol 1e-5, atol 1e-5
// (sincosf vs the CPU's cosf/sinf on angles up to ~S, 1-2 ulp of the trig value); bfloat16
// rtol 1e-2 (one rounding). Skips without a GPU.
#include <gtest/gtest.h>

#include "mcore/ops/rope.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

TEST(CudaRope, MatchesCpu) {
  MCORE_REQUIRE_GPU();
  struct Case {
    Shape t;
    int64_t rot;
    bool per_sample;
  };
  // D = 64 packed; D = 6 and rot 4 scalar; rot 48 < D = 64 partial (packed for bf16 only when
  // rot/2 is a multiple of 8: 24 is not, so bf16 rotate-half takes the scalar path).
  const std::vector<Case> cases = {{{5, 2, 3, 64}, 64, false},
                                   {{4, 3, 2, 6}, 4, false},
                                   {{7, 2, 2, 64}, 48, true},
                                   {{3, 1, 4, 128}, 128, true}};
  for (DType dt : {DType::F32, DType::BF16}) {
    const double rtol = dt == DType::F32 ? 1e-5 : 1e-2, atol = dt == DType::F32 ? 1e-5 : 1e-2;
    for (const Case& c : cases) {
      for (bool interleaved : {false, true}) {
        for (double mscale : {1.0, 1.3}) {
          SCOPED_TRACE(shape_str(c.t) + " rot " + std::to_string(c.rot) + " " + dtype_name(dt) +
                       (interleaved ? " interleaved" : " rotate-half"));
          const int64_t S = c.t[0], B = c.t[1];
          Tensor freqs = random_tensor({S, c.per_sample ? B : 1, 1, c.rot}, 31, DType::F32, 20.0);
          Tensor x = random_tensor(c.t, 32, dt), dy = random_tensor(c.t, 33, dt);
          Tensor yc = ops::apply_rotary_pos_emb(x, freqs, interleaved, mscale);
          Tensor yg = ops::apply_rotary_pos_emb(to_gpu(x), to_gpu(freqs), interleaved, mscale);
          EXPECT_TENSOR_CLOSE(to_cpu(yg), yc, rtol, atol);
          Tensor dc = ops::apply_rotary_pos_emb_backward(dy, freqs, interleaved, mscale);
          Tensor dg =
              ops::apply_rotary_pos_emb_backward(to_gpu(dy), to_gpu(freqs), interleaved, mscale);
          EXPECT_TENSOR_CLOSE(to_cpu(dg), dc, rtol, atol);
        }
      }
    }
  }
}

TEST(CudaRope, StridedInput) {
  MCORE_REQUIRE_GPU();
  // [B, S, H, D] transposed to [S, B, H, D]: strided rows, channel stride 1.
  Tensor base = random_tensor({2, 5, 3, 32}, 34, DType::F32);
  Tensor freqs = ops::rotary_embedding_freqs(32, 5);
  Tensor yc = ops::apply_rotary_pos_emb(base.transpose(0, 1), freqs);
  Tensor yg = ops::apply_rotary_pos_emb(to_gpu(base).transpose(0, 1), to_gpu(freqs));
  EXPECT_TENSOR_CLOSE(to_cpu(yg), yc, 1e-5, 1e-5);
}

}  // namespace
}  // namespace mcore
