// CUDA FP8 casts (mcore/ops/cuda/fp8_cuda.cu) against the CPU: quantized bytes and amax must be
// identical (tolerance 0: both do one round-to-nearest-even of the same float32 product, with the
// same saturation and NaN codes), dequantized values identical too. Inputs cover saturation,
// +-inf, NaN, subnormals of both formats, every input dtype and both scale forms (host float,
// device tensor). All tests skip without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mcore/ops/fp8.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

// Random values over many binades plus the special cases, in float32.
Tensor special_input(int64_t n, uint64_t seed) {
  Tensor x = random_tensor({n}, seed, DType::F32, 1.0);
  float* p = x.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = std::ldexp(p[i], static_cast<int>(i % 41) - 24);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f,    -0.0f,   inf,   -inf,   std::nanf(""), 448.0f, 464.0f, -1e6f,
                            57344.f, 61440.f, 1e-9f, -3e-7f, 0.0019f,       2e-3f,  1.5e-5f};
  for (size_t i = 0; i < sizeof(specials) / sizeof(float); ++i) p[i * 3] = specials[i];
  return x;
}

void expect_same_bytes(const Tensor& gpu, const Tensor& cpu) {
  const Tensor g = to_cpu(gpu);
  ASSERT_EQ(g.dtype(), cpu.dtype());
  ASSERT_EQ(g.shape(), cpu.shape());
  const auto* a = static_cast<const uint8_t*>(g.contiguous().data_ptr());
  const auto* b = static_cast<const uint8_t*>(cpu.contiguous().data_ptr());
  int64_t first_diff = -1;
  for (int64_t i = 0; i < cpu.numel() && first_diff < 0; ++i)
    if (a[i] != b[i]) first_diff = i;
  EXPECT_EQ(first_diff, -1) << "first differing byte at " << first_diff;
}

TEST(CudaFp8, QuantizeMatchesCpuBitForBit) {
  MCORE_REQUIRE_GPU();
  const Tensor x32 = special_input(10003, 1);  // odd: vector body plus scalar tail
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor x = x32.to(dt);
    for (Fp8Format f : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (f == Fp8Format::kE4M3 ? " e4m3" : " e5m2"));
      const float scale = 3.0f;
      const auto ref = ops::fp8_quantize(x, scale, f);
      const auto got = ops::fp8_quantize(to_gpu(x), scale, f);
      expect_same_bytes(got.data, ref.data);
      EXPECT_EQ(to_cpu(got.amax).item<float>(), ref.amax.item<float>());
      EXPECT_TRUE(std::isinf(ref.amax.item<float>()));  // the inf input counts, the NaN not
      // The device-tensor scale gives the same result.
      const Tensor scale_t = to_gpu(scalar_tensor(scale, DType::F32));
      const auto got_t = ops::fp8_quantize(to_gpu(x), scale_t, f);
      expect_same_bytes(got_t.data, ref.data);
    }
  }
}

TEST(CudaFp8, AmaxOfFiniteInputAndStridedInput) {
  MCORE_REQUIRE_GPU();
  Tensor x = random_tensor({33, 70}, 4, DType::F32, 2.0);
  x.data<float>()[1000] = -9.25f;
  const Tensor xt = x.transpose(0, 1);  // not contiguous
  const auto ref = ops::fp8_quantize(xt, 10.0f, Fp8Format::kE4M3);
  const auto got = ops::fp8_quantize(to_gpu(x).transpose(0, 1), 10.0f, Fp8Format::kE4M3);
  EXPECT_EQ(to_cpu(got.amax).item<float>(), 9.25f);
  expect_same_bytes(got.data, ref.data);
}

TEST(CudaFp8, DequantizeMatchesCpu) {
  MCORE_REQUIRE_GPU();
  for (Fp8Format f : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    // Every code once, twice over (odd length).
    Tensor codes = empty({513}, f == Fp8Format::kE4M3 ? DType::F8E4M3 : DType::F8E5M2);
    auto* c = static_cast<uint8_t*>(codes.data_ptr());
    for (int i = 0; i < 513; ++i) c[i] = static_cast<uint8_t>(i & 0xff);
    for (DType out : {DType::F32, DType::BF16, DType::F16}) {
      const Tensor ref = ops::fp8_dequantize(codes, 0.125f, out);
      const Tensor got = ops::fp8_dequantize(to_gpu(codes), 0.125f, out);
      expect_same_bytes(got, ref);
      const Tensor got_t =
          ops::fp8_dequantize(to_gpu(codes), to_gpu(scalar_tensor(0.125, DType::F32)), out);
      expect_same_bytes(got_t, ref);
    }
  }
}

TEST(CudaFp8, BadInputs) {
  MCORE_REQUIRE_GPU();
  const Tensor x = to_gpu(random_tensor({8}, 1, DType::F64));
  EXPECT_THROW(ops::fp8_quantize(x, 1.0f, Fp8Format::kE4M3), Error);
  const Tensor y = to_gpu(random_tensor({8}, 2, DType::F32));
  try {
    ops::fp8_quantize(y, to_gpu(zeros({2})), Fp8Format::kE4M3);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::fp8_dequantize(y, 1.0f), Error);  // not fp8 data
}

}  // namespace
}  // namespace mcore
