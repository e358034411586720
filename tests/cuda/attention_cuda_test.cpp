// CUDA fused attention (mcore/ops/cuda/attention_*.cu) against the CPU kernel: forward output and
// logsumexp, backward dQ/dK/dV, for causal and non-causal, GQA, sequence lengths that are not
// multiples of the 32-row tile, Sq != Sk (bottom-right causal diagonal), key-padding masks,
// strided (fused-QKV) inputs and every head-dim bucket. bf16/fp16 with d in {64, 128} exercise
// the tensor-core forward (attention_fwd_tc.cu), other cases the SIMT one. All tests skip without
// a GPU.
//
// Tolerances: float32 rtol 1e-4 (not the usual 1e-5) because the GPU sums the online softmax and
// the tile products in a different order than the CPU's BLAS blocks (and uses exp2 with a
// pre-scaled log2(e)); both are float32 throughout, so the difference is a few ulps amplified by
// the d-long dot products. bf16/fp16 rtol 2e-2: inputs are identical, both compute in float32,
// and the outputs are rounded once, so they can differ by one bf16 ulp (2^-8 relative); the
// tensor-core forward also rounds P to bf16 before P V, as FlashAttention does.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mcore/ops/attention.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

struct Case {
  int64_t sq, sk, batch, hq, hkv, d, dv;
  bool causal;
};

struct Tol {
  double rtol, atol;
};

Tol tol_for(DType dt) {
  return dt == DType::F32 ? Tol{1e-4, 1e-5} : Tol{2e-2, 2e-2};
}

// Runs forward and backward on both devices with the same inputs and compares everything.
void check_case(const Case& c, DType dt, const Tensor& mask_cpu = Tensor(), uint64_t seed = 1) {
  SCOPED_TRACE("sq=" + std::to_string(c.sq) + " sk=" + std::to_string(c.sk) +
               " b=" + std::to_string(c.batch) + " hq=" + std::to_string(c.hq) + " hkv=" +
               std::to_string(c.hkv) + " d=" + std::to_string(c.d) + " dv=" + std::to_string(c.dv) +
               " causal=" + std::to_string(c.causal) + " " + dtype_name(dt));
  const Tensor q = random_tensor({c.sq, c.batch, c.hq, c.d}, seed, dt);
  const Tensor k = random_tensor({c.sk, c.batch, c.hkv, c.d}, seed + 1, dt);
  const Tensor v = random_tensor({c.sk, c.batch, c.hkv, c.dv}, seed + 2, dt);
  const Tensor dout = random_tensor({c.sq, c.batch, c.hq, c.dv}, seed + 3, dt);
  ops::AttentionOptions cpu_opts;
  cpu_opts.causal = c.causal;
  cpu_opts.attention_mask = mask_cpu;
  ops::AttentionOptions gpu_opts = cpu_opts;
  if (mask_cpu.defined()) gpu_opts.attention_mask = to_gpu(mask_cpu);

  const auto ref = ops::attention_forward(q, k, v, cpu_opts);
  const Tensor qg = to_gpu(q), kg = to_gpu(k), vg = to_gpu(v);
  const auto got = ops::attention_forward(qg, kg, vg, gpu_opts);
  ASSERT_TRUE(got.out.device().is_cuda());
  ASSERT_EQ(got.softmax_lse.dtype(), DType::F32);
  const Tol t = tol_for(dt);
  EXPECT_TENSOR_CLOSE(to_cpu(got.out), ref.out, t.rtol, t.atol);
  // The logsumexp is float32 on both devices whatever the input dtype.
  EXPECT_TENSOR_CLOSE(to_cpu(got.softmax_lse), ref.softmax_lse, 1e-5, 1e-5);

  const auto gref = ops::attention_backward(dout, q, k, v, ref.out, ref.softmax_lse, cpu_opts);
  const auto ggot =
      ops::attention_backward(to_gpu(dout), qg, kg, vg, got.out, got.softmax_lse, gpu_opts);
  EXPECT_TENSOR_CLOSE(to_cpu(ggot.dq), gref.dq, t.rtol, t.atol * 4);
  EXPECT_TENSOR_CLOSE(to_cpu(ggot.dk), gref.dk, t.rtol, t.atol * 4);
  EXPECT_TENSOR_CLOSE(to_cpu(ggot.dv), gref.dv, t.rtol, t.atol * 4);
}

TEST(CudaAttention, CausalGqaOddLengthFp32) {
  MCORE_REQUIRE_GPU();
  check_case({37, 37, 2, 4, 2, 64, 64, true}, DType::F32);
  check_case({100, 100, 1, 6, 3, 128, 128, true}, DType::F32);
}

TEST(CudaAttention, NonCausalFp32) {
  MCORE_REQUIRE_GPU();
  check_case({33, 65, 2, 2, 2, 64, 64, false}, DType::F32);
  check_case({64, 64, 1, 4, 1, 128, 128, false}, DType::F32);  // MQA
}

// Sq != Sk: bottom-right diagonal; with Sq > Sk the first rows see no key (output 0, lse -inf).
TEST(CudaAttention, CausalUnequalLengths) {
  MCORE_REQUIRE_GPU();
  check_case({20, 75, 2, 2, 1, 64, 64, true}, DType::F32);
  check_case({70, 40, 1, 2, 2, 64, 64, true}, DType::F32);
}

// Head dims outside 64/128 go through the 256-wide bucket (or 64 for small ones), dv != d.
TEST(CudaAttention, OtherHeadDims) {
  MCORE_REQUIRE_GPU();
  check_case({40, 40, 1, 2, 2, 80, 80, true}, DType::F32);
  check_case({40, 40, 1, 2, 1, 32, 48, true}, DType::F32);
  check_case({35, 35, 1, 2, 2, 192, 256, false}, DType::F32);
}

TEST(CudaAttention, Bf16AndFp16) {
  MCORE_REQUIRE_GPU();
  check_case({77, 77, 2, 4, 2, 64, 64, true}, DType::BF16);
  check_case({96, 96, 1, 8, 2, 128, 128, true}, DType::BF16);
  check_case({45, 60, 1, 4, 4, 64, 64, false}, DType::F16);
  // d = 80 has no tensor-core kernel: the SIMT kernel computes bf16 too.
  check_case({50, 50, 1, 2, 2, 80, 80, true}, DType::BF16);
}

TEST(CudaAttention, KeyPaddingMask) {
  MCORE_REQUIRE_GPU();
  const int64_t b = 2, sk = 50;
  Tensor mask = zeros({b, sk}, DType::BOOL);
  bool* m = mask.data<bool>();
  for (int64_t j = 41; j < sk; ++j) m[j] = true;            // batch 0: 41 real keys
  for (int64_t j = 0; j < sk; ++j) m[sk + j] = j % 3 == 1;  // batch 1: scattered holes
  check_case({50, 50, b, 4, 2, 64, 64, true}, DType::F32, mask);
  check_case({50, 50, b, 4, 2, 64, 64, false}, DType::F32, mask);
}

// q, k, v as slices of one fused [S, B, 3H, D] projection (strided heads), as SelfAttention
// passes them.
TEST(CudaAttention, StridedFusedQkv) {
  MCORE_REQUIRE_GPU();
  const int64_t s = 45, b = 2, h = 4, d = 64;
  const Tensor qkv = random_tensor({s, b, 3 * h, d}, 7, DType::F32);
  const Tensor q = qkv.narrow(2, 0, h), k = qkv.narrow(2, h, h), v = qkv.narrow(2, 2 * h, h);
  ops::AttentionOptions opts;
  opts.causal = true;
  const auto ref = ops::attention_forward(q, k, v, opts);
  const Tensor g = to_gpu(qkv);
  const auto got =
      ops::attention_forward(g.narrow(2, 0, h), g.narrow(2, h, h), g.narrow(2, 2 * h, h), opts);
  EXPECT_TENSOR_CLOSE(to_cpu(got.out), ref.out, 1e-4, 1e-5);
  EXPECT_TENSOR_CLOSE(to_cpu(got.softmax_lse), ref.softmax_lse, 1e-5, 1e-5);
}

// No atomics: two backward runs give the same bits.
TEST(CudaAttention, BackwardIsDeterministic) {
  MCORE_REQUIRE_GPU();
  const Tensor q = to_gpu(random_tensor({130, 2, 8, 64}, 11, DType::F32));
  const Tensor k = to_gpu(random_tensor({130, 2, 2, 64}, 12, DType::F32));
  const Tensor v = to_gpu(random_tensor({130, 2, 2, 64}, 13, DType::F32));
  const Tensor dout = to_gpu(random_tensor({130, 2, 8, 64}, 14, DType::F32));
  ops::AttentionOptions opts;
  opts.causal = true;
  const auto f = ops::attention_forward(q, k, v, opts);
  const auto a = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, opts);
  const auto b = ops::attention_backward(dout, q, k, v, f.out, f.softmax_lse, opts);
  EXPECT_TENSOR_CLOSE(to_cpu(a.dq), to_cpu(b.dq), 0, 0);
  EXPECT_TENSOR_CLOSE(to_cpu(a.dk), to_cpu(b.dk), 0, 0);
  EXPECT_TENSOR_CLOSE(to_cpu(a.dv), to_cpu(b.dv), 0, 0);
}

TEST(CudaAttention, BadInputs) {
  MCORE_REQUIRE_GPU();
  // float64 has no CUDA kernel: the error says so.
  const Tensor q64 = to_gpu(random_tensor({4, 1, 2, 64}, 1, DType::F64));
  try {
    ops::attention_forward(q64, q64, q64);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("float64"), std::string::npos) << e.what();
  }
  // Head dim beyond the kernel's limit names both dims.
  const Tensor big = to_gpu(random_tensor({4, 1, 2, 320}, 2, DType::F32));
  try {
    ops::attention_forward(big, big, big);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d=320"), std::string::npos) << e.what();
  }
  // Shape mismatch is caught before the kernel, naming both shapes.
  const Tensor q = to_gpu(random_tensor({4, 1, 3, 64}, 3, DType::F32));
  const Tensor k = to_gpu(random_tensor({4, 1, 2, 64}, 4, DType::F32));
  try {
    ops::attention_forward(q, k, k);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[4, 1, 3, 64]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 1, 2, 64]"), std::string::npos) << msg;
  }
  // q on the GPU, k on the CPU.
  const Tensor kc = random_tensor({4, 1, 3, 64}, 5, DType::F32);
  EXPECT_THROW(ops::attention_forward(to_gpu(kc), kc, kc), Error);
}

}  // namespace
}  // namespace mcore
