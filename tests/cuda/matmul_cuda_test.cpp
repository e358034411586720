// cuBLASLt GEMMs against float64 CPU references: fp32 (1e-5 of the largest output: same math,
// different blocking), TF32 (1e-3: inputs rounded to 10 mantissa bits), bf16 (1e-2: one
// rounding of the fp32 result to 8 bits) and fp16 (2e-3), float64 (1e-12); transposed flags and
// transposed views, batched and shared-B layouts, alpha/beta, bias/GELU epilogues and FP8 (1e-3
// against the exact dequantized product: fp32 accumulation of exact fp8 products).
#include <gtest/gtest.h>

#include "mcore/ops/elementwise.h"
#include "mcore/ops/matmul.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::max_rel_error;
using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

// op(a) @ op(b) on the GPU in `d` vs float64 on the CPU of the same (rounded) inputs.
double gemm_error(DType d, const Shape& sa, const Shape& sb, bool ta, bool tb, uint64_t seed) {
  Tensor a = random_tensor(sa, seed, DType::F64).to(d);
  Tensor b = random_tensor(sb, seed + 1, DType::F64).to(d);
  Tensor expected = ops::matmul(a.to(DType::F64), b.to(DType::F64), ta, tb);
  Tensor actual = ops::matmul(to_gpu(a), to_gpu(b), ta, tb);
  EXPECT_EQ(actual.dtype(), d);
  EXPECT_EQ(actual.shape(), expected.shape());
  return max_rel_error(to_cpu(actual).to(DType::F64), expected);
}

struct Case {
  DType dtype;
  double tol;
};

TEST(CudaMatmul, DTypesAndTransposes) {
  MCORE_REQUIRE_GPU();
  for (Case c : {Case{DType::F64, 1e-12}, Case{DType::F32, 1e-5}, Case{DType::BF16, 1e-2},
                 Case{DType::F16, 2e-3}}) {
    for (auto [m, k, n] :
         {std::array<int64_t, 3>{7, 13, 5}, {64, 128, 96}, {1, 1, 1}, {33, 1, 2}}) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          Shape sa = ta ? Shape{k, m} : Shape{m, k};
          Shape sb = tb ? Shape{n, k} : Shape{k, n};
          EXPECT_LT(gemm_error(c.dtype, sa, sb, ta, tb, 1), c.tol)
              << c.dtype << " m=" << m << " k=" << k << " n=" << n << " ta=" << ta << " tb=" << tb;
        }
      }
    }
  }
}

TEST(CudaMatmul, TF32IsOptIn) {
  MCORE_REQUIRE_GPU();
  EXPECT_FALSE(cuda::allow_tf32());
  cuda::set_allow_tf32(true);
  const double err = gemm_error(DType::F32, {128, 256}, {256, 64}, false, false, 3);
  cuda::set_allow_tf32(false);
  EXPECT_LT(err, 2e-3);  // 10-bit inputs: ~1e-3 per product, relative to the largest output
}

TEST(CudaMatmul, TransposedViewsAreReadInPlace) {
  MCORE_REQUIRE_GPU();
  NoGradGuard no_grad;
  Tensor a = random_tensor({12, 20}, 5, DType::F32), b = random_tensor({9, 20}, 6, DType::F32);
  Tensor expected = ops::matmul(a.to(DType::F64), b.to(DType::F64), false, true);
  Tensor ga = to_gpu(a), gb = to_gpu(b);
  // b.T as a view (column-major storage) with trans_b=false == b with trans_b=true.
  EXPECT_LT(max_rel_error(to_cpu(ops::matmul(ga, gb.transpose(0, 1))).to(DType::F64), expected),
            1e-5);
  EXPECT_LT(max_rel_error(
                to_cpu(ops::matmul(ga.transpose(0, 1), gb.transpose(0, 1), true)).to(DType::F64),
                expected),
            1e-5);
  // A row slice of a wider matrix (leading dimension > columns).
  Tensor wide = to_gpu(random_tensor({12, 31}, 7, DType::F32));
  Tensor sl = wide.narrow(1, 3, 20);
  EXPECT_LT(max_rel_error(to_cpu(ops::matmul(sl, gb, false, true)).to(DType::F64),
                          ops::matmul(to_cpu(sl).to(DType::F64), b.to(DType::F64), false, true)),
            1e-5);
}

TEST(CudaMatmul, BatchedAndSharedB) {
  MCORE_REQUIRE_GPU();
  for (DType d : {DType::F32, DType::BF16}) {
    const double tol = d == DType::F32 ? 1e-5 : 1e-2;
    EXPECT_LT(gemm_error(d, {3, 4, 10, 16}, {3, 4, 16, 8}, false, false, 8), tol);
    EXPECT_LT(gemm_error(d, {3, 4, 16, 10}, {3, 4, 8, 16}, true, true, 9), tol);
    EXPECT_LT(gemm_error(d, {2, 5, 10, 16}, {16, 8}, false, false, 10), tol);  // folded batch
    EXPECT_LT(gemm_error(d, {2, 5, 16, 10}, {8, 16}, true, true, 11), tol);    // strided batch
  }
  // Batch dims that do not step evenly (a permuted view): staged through a copy.
  NoGradGuard no_grad;
  Tensor x = random_tensor({4, 3, 6, 5}, 12, DType::F32);
  Tensor b = random_tensor({3, 4, 5, 7}, 13, DType::F32);
  Tensor expected = ops::matmul(x.permute({1, 0, 2, 3}).to(DType::F64), b.to(DType::F64));
  Tensor actual = ops::matmul(to_gpu(x).permute({1, 0, 2, 3}), to_gpu(b));
  EXPECT_LT(max_rel_error(to_cpu(actual).to(DType::F64), expected), 1e-5);
}

TEST(CudaMatmul, MatmulOutAlphaBeta) {
  MCORE_REQUIRE_GPU();
  Tensor a = random_tensor({17, 24}, 14, DType::F32), b = random_tensor({24, 11}, 15, DType::F32);
  Tensor c0 = random_tensor({17, 11}, 16, DType::F32);
  Tensor expected = c0.clone();
  ops::matmul_out(expected, a, b, false, false, 0.5, 2.0);
  Tensor c = to_gpu(c0);
  ops::matmul_out(c, to_gpu(a), to_gpu(b), false, false, 0.5, 2.0);
  EXPECT_LT(max_rel_error(to_cpu(c).to(DType::F64), expected.to(DType::F64)), 1e-5);
  // k == 0: c = beta * c.
  Tensor e = to_gpu(c0);
  ops::matmul_out(e, zeros({17, 0}, {DType::F32, Device::cuda()}),
                  zeros({0, 11}, {DType::F32, Device::cuda()}), false, false, 1.0, 3.0);
  EXPECT_TENSOR_CLOSE(to_cpu(e), ops::scale(c0, 3.0), 1e-6, 0);
}

TEST(CudaMatmul, BiasAndGeluEpilogues) {
  MCORE_REQUIRE_GPU();
  for (DType d : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    const double tol = d == DType::F64 ? 1e-12 : d == DType::F32 ? 1e-5 : 2e-2;
    Tensor a = random_tensor({2, 16, 32}, 17, DType::F64).to(d);
    Tensor w = random_tensor({24, 32}, 18, DType::F64).to(d);  // Linear weight [out, in]
    Tensor bias = random_tensor({24}, 19, DType::F64).to(d);
    for (auto act : {ops::MatmulActivation::kNone, ops::MatmulActivation::kGeluTanh}) {
      for (bool with_bias : {false, true}) {
        Tensor bb = with_bias ? bias : Tensor();
        Tensor expected =
            ops::matmul_bias_act(a.to(DType::F64), w.to(DType::F64),
                                 with_bias ? bias.to(DType::F64) : Tensor(), act, false, true);
        Tensor actual = ops::matmul_bias_act(to_gpu(a), to_gpu(w),
                                             with_bias ? to_gpu(bias) : Tensor(), act, false, true);
        EXPECT_LT(max_rel_error(to_cpu(actual).to(DType::F64), expected), tol)
            << d << " bias=" << with_bias << " gelu=" << (act != ops::MatmulActivation::kNone);
      }
    }
  }
}

int compute_capability() {
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major * 10 + minor;
}

TEST(CudaMatmul, Fp8PerTensorScales) {
  MCORE_REQUIRE_GPU();
  Tensor a8 = random_tensor({32, 64}, 20, DType::F64, 4.0).to(DType::F8E4M3);
  Tensor b8 = random_tensor({48, 64}, 21, DType::F64, 4.0).to(DType::F8E4M3);
  Tensor b5 = random_tensor({64, 48}, 22, DType::F64, 4.0).to(DType::F8E5M2);
  if (compute_capability() < 89) {
    EXPECT_THROW(ops::matmul_fp8(to_gpu(a8), 1.0, to_gpu(b8), 1.0, false, true), Error);
    GTEST_SKIP() << "FP8 GEMMs need compute capability 8.9+";
  }
  for (DType out : {DType::F32, DType::BF16}) {
    const double tol = out == DType::F32 ? 1e-3 : 1e-2;
    // The TN layout cuBLASLt wants, and the NN layout restaged to it.
    Tensor e1 = ops::matmul_fp8(a8, 0.5, b8, 0.25, false, true, out);
    Tensor g1 = ops::matmul_fp8(to_gpu(a8), 0.5, to_gpu(b8), 0.25, false, true, out);
    EXPECT_LT(max_rel_error(to_cpu(g1).to(DType::F64), e1.to(DType::F64)), tol) << out;
    Tensor e2 = ops::matmul_fp8(a8, 2.0, b5, 0.125, false, false, out);
    Tensor g2 = ops::matmul_fp8(to_gpu(a8), 2.0, to_gpu(b5), 0.125, false, false, out);
    EXPECT_LT(max_rel_error(to_cpu(g2).to(DType::F64), e2.to(DType::F64)), tol) << out;
    // Column-major views whose flags make them the wrong way round for TN: restaged too.
    Tensor a_cm = to_gpu(a8.transpose(0, 1).contiguous()).transpose(0, 1);  // [32, 64]
    Tensor b_cm = to_gpu(b5).transpose(0, 1);                               // [48, 64]
    Tensor g3 = ops::matmul_fp8(a_cm, 2.0, b_cm, 0.125, false, true, out);
    EXPECT_LT(max_rel_error(to_cpu(g3).to(DType::F64), e2.to(DType::F64)), tol) << out;
  }
}

TEST(CudaMatmul, BadInputsNameShapes) {
  MCORE_REQUIRE_GPU();
  Tensor a = zeros({3, 4}, {DType::F32, Device::cuda()});
  Tensor b = zeros({5, 6}, {DType::F32, Device::cuda()});
  try {
    ops::matmul(a, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 4]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[5, 6]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::matmul(a, zeros({4, 6}, {DType::BF16, Device::cuda()})), Error);
  EXPECT_THROW(ops::matmul(a, zeros({4, 6}, DType::F32)), Error);  // mixed devices
}

}  // namespace
}  // namespace mcore
