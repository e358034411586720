// matmul / linear against PyTorch. Tolerances: fp32 results differ from PyTorch's only by
// summation order inside the GEMM (K <= 33 here), so rtol 1e-5 / atol 1e-5. bf16/fp16: both
// sides accumulate in fp32 and round once, so results agree to one unit in the last place of
// the narrow type (rtol 1e-2 for bf16, 1e-3 for fp16). fp8: the reference is the exact product
// of the same fp8 values in float64; ours accumulates in fp32 (rtol 1e-5).
#include <gtest/gtest.h>

#include <tuple>

#include "mcore/nn/functional.h"
#include "mcore/ops/matmul.h"
#include "tests/common/test_util.h"

namespace mcore {

using testing::load_ref;

TEST(MatmulReference, BatchedTransposesForwardBackward) {
  for (std::string name : {"nn", "tn", "nt", "tt"}) {
    SCOPED_TRACE(name);
    bool ta = name[0] == 't', tb = name[1] == 't';
    Tensor a = load_ref("matmul", name + "_a").set_requires_grad(true);
    Tensor b = load_ref("matmul", name + "_b").set_requires_grad(true);
    Tensor c = F::matmul(a, b, ta, tb);
    EXPECT_TENSOR_CLOSE(c, load_ref("matmul", name + "_c"), 1e-5, 1e-5);
    c.backward(load_ref("matmul", name + "_gc"));
    EXPECT_TENSOR_CLOSE(a.grad(), load_ref("matmul", name + "_ga"), 1e-5, 1e-5);
    EXPECT_TENSOR_CLOSE(b.grad(), load_ref("matmul", name + "_gb"), 1e-5, 1e-5);
  }
}

TEST(MatmulReference, LinearForwardBackward) {
  Tensor x = load_ref("matmul", "linear_x").set_requires_grad(true);
  Tensor w = load_ref("matmul", "linear_w").set_requires_grad(true);
  Tensor bias = load_ref("matmul", "linear_bias").set_requires_grad(true);
  Tensor y = F::linear(x, w, bias);
  EXPECT_TENSOR_CLOSE(y, load_ref("matmul", "linear_y"), 1e-5, 1e-5);
  y.backward(load_ref("matmul", "linear_gy"));
  EXPECT_TENSOR_CLOSE(x.grad(), load_ref("matmul", "linear_gx"), 1e-5, 1e-5);
  EXPECT_TENSOR_CLOSE(w.grad(), load_ref("matmul", "linear_gw"), 1e-5, 1e-5);
  EXPECT_TENSOR_CLOSE(bias.grad(), load_ref("matmul", "linear_gbias"), 1e-5, 1e-5);
}

TEST(MatmulReference, NarrowDtypesAccumulateInFp32) {
  Tensor a = load_ref("matmul", "lp_a"), b = load_ref("matmul", "lp_b");
  Tensor cb = ops::matmul(a.to(DType::BF16), b.to(DType::BF16));
  EXPECT_EQ(cb.dtype(), DType::BF16);
  EXPECT_TENSOR_CLOSE(cb.to(DType::F32), load_ref("matmul", "lp_c_bf16"), 1e-2, 1e-2);
  Tensor ch = ops::matmul(a.to(DType::F16), b.to(DType::F16));
  EXPECT_TENSOR_CLOSE(ch.to(DType::F32), load_ref("matmul", "lp_c_fp16"), 1e-3, 1e-3);
}

// The backward of a bf16/fp16 matmul: gradients in the inputs' dtype, each one GEMM of the
// narrow values accumulated in fp32 and rounded once, as the forward.
TEST(MatmulReference, NarrowDtypesBackward) {
  for (auto [dt, tag, tol] : {std::tuple{DType::BF16, "bf16", 1e-2}, {DType::F16, "fp16", 1e-3}}) {
    SCOPED_TRACE(tag);
    Tensor a = load_ref("matmul", "lp_a").to(dt).set_requires_grad(true);
    Tensor b = load_ref("matmul", "lp_b").to(dt).set_requires_grad(true);
    Tensor c = F::matmul(a, b);
    c.backward(load_ref("matmul", "lp_gc").to(dt));
    EXPECT_EQ(a.grad().dtype(), dt);
    EXPECT_EQ(b.grad().dtype(), dt);
    EXPECT_TENSOR_CLOSE(a.grad().to(DType::F32), load_ref("matmul", std::string("lp_ga_") + tag),
                        tol, tol);
    EXPECT_TENSOR_CLOSE(b.grad().to(DType::F32), load_ref("matmul", std::string("lp_gb_") + tag),
                        tol, tol);
  }
}

TEST(MatmulReference, Fp8WithScales) {
  Tensor a_bits = load_ref("matmul", "fp8_a_bits"), b_bits = load_ref("matmul", "fp8_b_bits");
  // Reinterpret the uint8 bit patterns as fp8 tensors.
  Tensor a(a_bits.storage(), a_bits.shape(), a_bits.strides(), 0, DType::F8E4M3);
  Tensor b(b_bits.storage(), b_bits.shape(), b_bits.strides(), 0, DType::F8E5M2);
  std::vector<double> s = to_vector<double>(load_ref("matmul", "fp8_scale_inv"));
  Tensor c = ops::matmul_fp8(a, s[0], b, s[1]);
  EXPECT_TENSOR_CLOSE(c, load_ref("matmul", "fp8_c"), 1e-5, 1e-6);
  EXPECT_THROW(ops::matmul_fp8(b, 1.0, b.transpose(0, 1), 1.0), Error);  // e5m2 x e5m2
}

}  // namespace mcore
