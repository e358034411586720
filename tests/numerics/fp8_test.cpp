// FP8 quantize / dequantize with per-tensor scale (mcore/ops/fp8.h) against an ml_dtypes
// reference (tests/reference/gen_numerics.py): saturating casts, amax, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "mcore/ops/fp8.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

constexpr const char* kGroup = "numerics";

template <class T>
std::vector<T> raw(const Tensor& t) {
  Tensor c = t.contiguous();
  EXPECT_EQ(c.element_size(), sizeof(T));
  std::vector<T> out(static_cast<size_t>(c.numel()));
  std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(T));
  return out;
}

struct Case {
  const char* name;
  Fp8Format format;
  DType dtype;
};
const Case kCases[] = {{"e4m3", Fp8Format::kE4M3, DType::F8E4M3},
                       {"e5m2", Fp8Format::kE5M2, DType::F8E5M2}};

// Quantization is exact arithmetic (one float32 multiply, one rounding), so bits must match.
TEST(Fp8, QuantizeMatchesMlDtypes) {
  Tensor x = load_ref(kGroup, "fp8_x");  // [9, 31], row 0 holds +-inf, +-1e30, +-0
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    Tensor scale = load_ref(kGroup, std::string("fp8_scale_") + c.name);  // max / 40
    ops::Fp8Quantized q = ops::fp8_quantize(x, scale.reshape({}), c.format);
    EXPECT_EQ(q.data.dtype(), c.dtype);
    EXPECT_EQ(q.data.shape(), x.shape());
    EXPECT_EQ(raw<uint8_t>(q.data), raw<uint8_t>(load_ref(kGroup, std::string("fp8_q_") + c.name)));
    EXPECT_EQ(q.amax.dim(), 0);
    EXPECT_TRUE(std::isinf(q.amax.item()));
    // Rows 1..8 through a transposed (non-contiguous) view: same codes, finite amax.
    Tensor rest = x.narrow(0, 1, 8).transpose(0, 1).contiguous().transpose(0, 1);
    ops::Fp8Quantized r = ops::fp8_quantize(rest, to_vector<float>(scale)[0], c.format);
    std::vector<uint8_t> all = raw<uint8_t>(load_ref(kGroup, std::string("fp8_q_") + c.name));
    EXPECT_EQ(raw<uint8_t>(r.data), std::vector<uint8_t>(all.begin() + 31, all.end()));
    EXPECT_EQ(r.amax.item(), to_vector<float>(load_ref(kGroup, "fp8_amax_rest"))[0]);
    // Saturation: +-inf and +-1e30 land on +-max, never on inf/NaN codes.
    std::vector<float> back = to_vector<float>(q.data.narrow(0, 0, 1));
    const float mx = fp8_max(c.format);
    EXPECT_EQ(back[0], mx);
    EXPECT_EQ(back[1], -mx);
    EXPECT_EQ(back[2], mx);
    EXPECT_EQ(back[3], -mx);
  }
}

TEST(Fp8, QuantizeLowPrecisionInputs) {
  Tensor x = load_ref(kGroup, "fp8_x");
  for (DType dt : {DType::BF16, DType::F16}) {
    Tensor xl = x.to(dt);
    std::vector<float> xv = to_vector<float>(xl);
    for (const Case& c : kCases) {
      const float scale = 3.5f;
      ops::Fp8Quantized q = ops::fp8_quantize(xl, scale, c.format);
      std::vector<uint8_t> got = raw<uint8_t>(q.data);
      float amax = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        ASSERT_EQ(got[i], float_to_fp8_bits(xv[i] * scale, c.format, true)) << i;
        amax = std::max(amax, std::fabs(xv[i]));
      }
      EXPECT_EQ(q.amax.item(), amax);
    }
  }
}

TEST(Fp8, AmaxIgnoresNaN) {
  Tensor x = from_vector<float>({1.0f, NAN, -3.0f, 2.0f});
  ops::Fp8Quantized q = ops::fp8_quantize(x, 1.0f, Fp8Format::kE4M3);
  EXPECT_EQ(q.amax.item(), 3.0);
  EXPECT_TRUE(std::isnan(to_vector<float>(q.data)[1]));  // the NaN itself stays NaN
  // Many chunks (parallel path): amax of a long tensor.
  Tensor big = random_tensor({100003}, 4, DType::F32, 2.0);
  std::vector<float> v = to_vector<float>(big);
  float m = 0;
  for (float e : v) m = std::max(m, std::fabs(e));
  EXPECT_EQ(ops::fp8_quantize(big, 100.0f, Fp8Format::kE5M2).amax.item(), m);
}

TEST(Fp8, DequantizeMatchesReference) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    Tensor bits = load_ref(kGroup, std::string("fp8_q_") + c.name);
    Tensor q = empty(bits.shape(), c.dtype);
    std::memcpy(q.data_ptr(), bits.data_ptr(), bits.nbytes());
    const float scale = to_vector<float>(load_ref(kGroup, std::string("fp8_scale_") + c.name))[0];
    const float scale_inv = 1.0f / scale;
    // float32: decode (exact) times scale_inv, one rounding: bit-exact.
    Tensor f = ops::fp8_dequantize(q, from_vector<float>({scale_inv}), DType::F32);
    EXPECT_EQ(raw<uint32_t>(f),
              raw<uint32_t>(load_ref(kGroup, std::string("fp8_deq_") + c.name + "_f32")));
    // bf16: the float32 product rounded once, as torch's .to(bfloat16): bit-exact.
    Tensor b = ops::fp8_dequantize(q, scale_inv, DType::BF16);
    EXPECT_EQ(b.dtype(), DType::BF16);
    EXPECT_EQ(raw<uint16_t>(b),
              raw<uint16_t>(load_ref(kGroup, std::string("fp8_deq_") + c.name + "_bf16")));
  }
}

TEST(Fp8, RoundTripErrorIsHalfAnUlp) {
  // Values well inside the normal range: relative error <= 2^-(mantissa bits + 1).
  Tensor x = random_tensor({4096}, 9, DType::F32, 1.0);
  std::vector<float> xv = to_vector<float>(x);
  for (const Case& c : kCases) {
    const float scale = 64.0f;
    Tensor y = ops::fp8_dequantize(ops::fp8_quantize(x, scale, c.format).data, 1.0f / scale);
    std::vector<float> yv = to_vector<float>(y);
    const double bound = c.format == Fp8Format::kE4M3 ? 0x1p-4 : 0x1p-3;
    for (size_t i = 0; i < xv.size(); ++i) {
      if (std::fabs(xv[i]) * scale < (c.format == Fp8Format::kE4M3 ? 0x1p-6 : 0x1p-14)) continue;
      ASSERT_LE(std::fabs(yv[i] - xv[i]), bound * std::fabs(xv[i]) * (1 + 1e-6)) << xv[i];
    }
  }
}

TEST(Fp8, BadInput) {
  Tensor x = zeros({2, 3});
  try {
    ops::fp8_quantize(x, zeros({2}), Fp8Format::kE4M3);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[2]"), std::string::npos) << e.message();
  }
  EXPECT_THROW(ops::fp8_quantize(x, zeros({1}, DType::F64), Fp8Format::kE4M3), Error);
  try {
    ops::fp8_quantize(zeros({2, 3}, DType::F64), 1.0f, Fp8Format::kE5M2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("float64"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[2, 3]"), std::string::npos) << e.message();
  }
  EXPECT_THROW(ops::fp8_dequantize(x, 1.0f), Error);  // not fp8 data
  Tensor q = ops::fp8_quantize(x, 1.0f, Fp8Format::kE4M3).data;
  EXPECT_THROW(ops::fp8_dequantize(q, 1.0f, DType::F64), Error);
  EXPECT_THROW(ops::fp8_dequantize(q, zeros({3}), DType::F32), Error);
}

}  // namespace
}  // namespace mcore::testing
