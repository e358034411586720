// Bit-exact dtype conversions (mcore/base/float_types.h and Tensor::to) against PyTorch,
// ml_dtypes and an exact table-based rounding (tests/reference/gen_numerics.py). Everything is
// compared as bit patterns: compute threads run with FTZ/DAZ, so a float comparison would read
// every denormal as zero and could not see a flushed result.
#include <gtest/gtest.h>
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "mcore/base/compute_env.h"
#include "mcore/base/float_types.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using testing::load_ref;
constexpr const char* kGroup = "numerics";

// The raw element bits of a tensor (any dtype whose size matches T).
template <class T>
std::vector<T> raw(const Tensor& t) {
  Tensor c = t.contiguous();
  EXPECT_EQ(c.element_size(), sizeof(T)) << c.str();
  std::vector<T> out(static_cast<size_t>(c.numel()));
  std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(T));
  return out;
}

template <class T>
Tensor from_raw(const std::vector<T>& bits, DType dtype) {
  EXPECT_EQ(dtype_size(dtype), sizeof(T));
  Tensor t = empty({static_cast<int64_t>(bits.size())}, dtype);
  std::memcpy(t.data_ptr(), bits.data(), bits.size() * sizeof(T));
  return t;
}

// float32 bit patterns: every high half combined with each of the reference's low halves,
// high-major (the order gen_numerics.py's float_grid uses).
std::vector<uint32_t> float_grid(const std::string& lows_name) {
  std::vector<int32_t> lows = raw<int32_t>(load_ref(kGroup, lows_name));
  std::vector<uint32_t> out;
  out.reserve(65536 * lows.size());
  for (uint32_t hi = 0; hi < 65536; ++hi)
    for (int32_t lo : lows) out.push_back(hi << 16 | static_cast<uint32_t>(lo));
  return out;
}

bool f32_bits_nan(uint32_t u) {
  return (u & 0x7fffffffu) > 0x7f800000u;
}
bool f16_bits_nan(uint16_t h) {
  return (h & 0x7fffu) > 0x7c00u;
}
bool bf16_bits_nan(uint16_t h) {
  return (h & 0x7fffu) > 0x7f80u;
}

// Counts mismatches (NaN matches NaN of any payload: PyTorch's scalar and vectorized paths
// write different NaN bits, e.g. 0x7fc0 vs 0xffff for bf16) and reports the first few.
template <class T, class IsNan>
::testing::AssertionResult same_bits(const std::vector<T>& actual, const std::vector<T>& expected,
                                     IsNan is_nan, const std::vector<uint32_t>* inputs = nullptr) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "size " << actual.size() << " vs " << expected.size();
  size_t bad = 0;
  std::ostringstream msg;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] == expected[i] || (is_nan(actual[i]) && is_nan(expected[i]))) continue;
    if (bad++ < 8) {
      msg << "\n  [" << i << "]";
      if (inputs) msg << " input 0x" << std::hex << (*inputs)[i];
      msg << std::hex << " got 0x" << static_cast<uint32_t>(actual[i]) << " expected 0x"
          << static_cast<uint32_t>(expected[i]) << std::dec;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << actual.size() << " differ:" << msg.str();
}

// FTZ/DAZ hold, without any call from the test, in the main thread (set when the library
// loads), in every OpenMP worker of a parallel region, and in a thread the program starts itself
// (threads inherit the creator's MXCSR). Checked by the flags and by arithmetic: a product that
// would be a denormal comes out 0, and a denormal operand reads as 0. The bit-level comparisons
// below do not depend on this mode (conversions go through bit patterns).
float product(float a, float b) {
  volatile float x = a, y = b;  // computed at run time, in the calling thread's mode
  return x * y;
}

// Each probe tests one flag by the bits of a result, never by a float compare (a compare would
// itself read a denormal as zero under DAZ).
bool ftz_active() {  // 2^-126 * 0.5 is the denormal 2^-127 unless flushed on output
  return std::bit_cast<uint32_t>(product(std::numeric_limits<float>::min(), 0.5f)) == 0;
}
bool daz_active() {  // the denormal 2^-141 times 2^40 is the normal 2^-101 unless read as zero
  volatile uint32_t bits = 0x00000100;
  return std::bit_cast<uint32_t>(product(std::bit_cast<float>(uint32_t(bits)), 0x1p40f)) == 0;
}

TEST(Conversion, ComputeThreadsFlushDenormals) {
  auto check_here = [&](const char* where) {
    EXPECT_TRUE(denormals_flushed()) << where;
    EXPECT_TRUE(ftz_active()) << where << ": FTZ off";
    EXPECT_TRUE(daz_active()) << where << ": DAZ off";
  };
  check_here("main thread");
  const int threads = std::max(2, omp_get_max_threads());
  std::vector<int> ok(threads, 0);
#pragma omp parallel num_threads(threads)
  ok[omp_get_thread_num()] = denormals_flushed() && ftz_active() && daz_active();
  for (int t = 0; t < threads; ++t) EXPECT_EQ(ok[t], 1) << "OpenMP thread " << t;
  std::thread([&] { check_here("std::thread"); }).join();
  // Each probe can fail: with only the other flag set, it reports its own flag off.
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved & ~0x8000u);  // DAZ only
  EXPECT_FALSE(ftz_active());
  EXPECT_TRUE(daz_active());
  _mm_setcsr(saved & ~0x0040u);  // FTZ only
  EXPECT_TRUE(ftz_active());
  EXPECT_FALSE(daz_active());
  _mm_setcsr(saved & ~0x8040u);
  EXPECT_FALSE(denormals_flushed());
  _mm_setcsr(saved);
}

// Conversions to and from the integer types and bool, every case gen_numerics.py lists in
// conv_cases.txt ("name src dst"), against PyTorch (numpy for uint16): truncation toward zero
// from floats (in-range values only: outside, C++ and PyTorch are both undefined), wraparound
// when narrowing integers, rounding of large integers to float32/bf16/fp16, and "nonzero" for
// bool (NaN and denormals are true, which a compare under DAZ would get wrong). Bit-exact.
DType dtype_named(const std::string& n) {
  static const std::map<std::string, DType> names = {
      {"f64", DType::F64}, {"f32", DType::F32}, {"bf16", DType::BF16}, {"f16", DType::F16},
      {"i64", DType::I64}, {"i32", DType::I32}, {"i16", DType::I16},   {"i8", DType::I8},
      {"u16", DType::U16}, {"u8", DType::U8},   {"bool", DType::BOOL}};
  auto it = names.find(n);
  if (it == names.end()) throw std::runtime_error("unknown dtype name " + n);
  return it->second;
}

Tensor load_conv(const std::string& name, DType dtype) {
  if (dtype == DType::BF16 || dtype == DType::F16)
    return from_raw(raw<uint16_t>(load_ref(kGroup, name + "_bits")), dtype);
  Tensor t = load_ref(kGroup, name);
  EXPECT_EQ(t.dtype(), dtype) << name;
  return t;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + c.nbytes());
}

TEST(Conversion, IntegerAndBoolConversionsMatchTorch) {
  std::ifstream list(testing::ref_dir() + "/" + kGroup + "/conv_cases.txt");
  ASSERT_TRUE(list) << "conv_cases.txt missing: run the reference_data fixture";
  std::string name, src, dst;
  int cases = 0;
  while (list >> name >> src >> dst) {
    SCOPED_TRACE(name);
    const DType ds = dtype_named(src), dd = dtype_named(dst);
    Tensor in = load_conv("conv_" + name + "_in", ds);
    Tensor want = load_conv("conv_" + name + "_out", dd);
    Tensor got = in.to(dd);
    ASSERT_EQ(got.dtype(), dd);
    ASSERT_EQ(got.numel(), want.numel());
    const std::vector<uint8_t> g = bytes_of(got), w = bytes_of(want);
    EXPECT_EQ(g, w) << src << " -> " << dst << ": got " << got.str() << ", want " << want.str();
    ++cases;
  }
  EXPECT_EQ(cases, 55);  // as many as gen_numerics.py lists (51 torch cases and 4 uint16 ones)
}

TEST(Conversion, AllBf16PatternsToFloatMatchTorch) {
  std::vector<int32_t> expected = raw<int32_t>(load_ref(kGroup, "bf16_all_to_f32_bits"));
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<uint32_t> scalar(65536);
  for (uint32_t h = 0; h < 65536; ++h) scalar[h] = float_bits(bf16_bits_to_float(all[h]));
  std::vector<uint32_t> exp_u(expected.begin(), expected.end());
  EXPECT_TRUE(same_bits(scalar, exp_u, f32_bits_nan));
  EXPECT_TRUE(
      same_bits(raw<uint32_t>(from_raw(all, DType::BF16).to(DType::F32)), exp_u, f32_bits_nan));
}

TEST(Conversion, AllFp16PatternsToFloatMatchTorch) {
  std::vector<int32_t> expected = raw<int32_t>(load_ref(kGroup, "fp16_all_to_f32_bits"));
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<uint32_t> scalar(65536);
  for (uint32_t h = 0; h < 65536; ++h) scalar[h] = float_bits(fp16_bits_to_float(all[h]));
  std::vector<uint32_t> exp_u(expected.begin(), expected.end());
  EXPECT_TRUE(same_bits(scalar, exp_u, f32_bits_nan));
  EXPECT_TRUE(
      same_bits(raw<uint32_t>(from_raw(all, DType::F16).to(DType::F32)), exp_u, f32_bits_nan));
}

TEST(Conversion, FloatToBf16MatchesTorchOnBitGrid) {
  std::vector<uint32_t> in = float_grid("f32_grid_lows");
  std::vector<uint16_t> expected = raw<uint16_t>(load_ref(kGroup, "f32_grid_to_bf16"));
  std::vector<uint16_t> scalar(in.size());
  for (size_t i = 0; i < in.size(); ++i) scalar[i] = float_to_bf16_bits(bits_float(in[i]));
  EXPECT_TRUE(same_bits(scalar, expected, bf16_bits_nan, &in));
  Tensor t = from_raw(in, DType::F32);
  EXPECT_TRUE(same_bits(raw<uint16_t>(t.to(DType::BF16)), expected, bf16_bits_nan, &in));
  // Strided source: the non-contiguous copy path rounds the same way.
  Tensor strided = t.view({-1, 2}).select(1, 0);
  std::vector<uint16_t> exp_even;
  for (size_t i = 0; i < expected.size(); i += 2) exp_even.push_back(expected[i]);
  EXPECT_TRUE(same_bits(raw<uint16_t>(strided.to(DType::BF16)), exp_even, bf16_bits_nan));
}

TEST(Conversion, FloatToFp16MatchesTorchOnBitGrid) {
  std::vector<uint32_t> in = float_grid("f32_grid_lows");
  std::vector<uint16_t> expected = raw<uint16_t>(load_ref(kGroup, "f32_grid_to_fp16"));
  std::vector<uint16_t> scalar(in.size());
  for (size_t i = 0; i < in.size(); ++i) scalar[i] = float_to_fp16_bits(bits_float(in[i]));
  EXPECT_TRUE(same_bits(scalar, expected, f16_bits_nan, &in));
  EXPECT_TRUE(same_bits(raw<uint16_t>(from_raw(in, DType::F32).to(DType::F16)), expected,
                        f16_bits_nan, &in));
}

TEST(Conversion, NarrowRoundTripIsIdentity) {
  for (uint32_t h = 0; h < 65536; ++h) {
    auto b = static_cast<uint16_t>(h);
    if (!bf16_bits_nan(b)) {
      ASSERT_EQ(float_to_bf16_bits(bf16_bits_to_float(b)), b) << h;
    }
    if (!f16_bits_nan(b)) {
      ASSERT_EQ(float_to_fp16_bits(fp16_bits_to_float(b)), b) << h;
    }
  }
  for (uint32_t c = 0; c < 256; ++c) {
    auto b = static_cast<uint8_t>(c);
    float e4 = fp8_bits_to_float(b, Fp8Format::kE4M3), e5 = fp8_bits_to_float(b, Fp8Format::kE5M2);
    if (!std::isnan(e4)) {
      ASSERT_EQ(float_to_fp8_bits(e4, Fp8Format::kE4M3, false), b) << c;
    }
    if (!std::isnan(e5)) {
      ASSERT_EQ(float_to_fp8_bits(e5, Fp8Format::kE5M2, false), b) << c;
    }
  }
}

struct Fp8Case {
  const char* name;
  Fp8Format format;
  DType dtype;
};
const Fp8Case kFp8Cases[] = {{"e4m3", Fp8Format::kE4M3, DType::F8E4M3},
                             {"e5m2", Fp8Format::kE5M2, DType::F8E5M2}};

TEST(Conversion, AllFp8PatternsToFloatMatchMlDtypes) {
  for (const Fp8Case& c : kFp8Cases) {
    SCOPED_TRACE(c.name);
    std::vector<int32_t> e =
        raw<int32_t>(load_ref(kGroup, std::string(c.name) + "_all_to_f32_bits"));
    std::vector<uint32_t> expected(e.begin(), e.end());
    std::vector<uint8_t> all(256);
    std::vector<uint32_t> scalar(256);
    for (uint32_t b = 0; b < 256; ++b) {
      all[b] = static_cast<uint8_t>(b);
      scalar[b] = float_bits(fp8_bits_to_float(all[b], c.format));
    }
    EXPECT_TRUE(same_bits(scalar, expected, f32_bits_nan));
    EXPECT_TRUE(
        same_bits(raw<uint32_t>(from_raw(all, c.dtype).to(DType::F32)), expected, f32_bits_nan));
  }
}

TEST(Conversion, FloatToFp8MatchesMlDtypesOnBitGrid) {
  std::vector<uint32_t> in = float_grid("fp8_grid_lows");
  Tensor t = from_raw(in, DType::F32);
  auto exact = [](uint8_t) { return false; };  // NaN bits must match too (0x7f / 0x7e | sign)
  for (const Fp8Case& c : kFp8Cases) {
    SCOPED_TRACE(c.name);
    for (bool sat : {false, true}) {
      std::string name = std::string("f32_grid_to_") + c.name + (sat ? "_sat" : "");
      std::vector<uint8_t> expected = raw<uint8_t>(load_ref(kGroup, name));
      std::vector<uint8_t> scalar(in.size());
      for (size_t i = 0; i < in.size(); ++i)
        scalar[i] = float_to_fp8_bits(bits_float(in[i]), c.format, sat);
      EXPECT_TRUE(same_bits(scalar, expected, exact, &in)) << name;
      EXPECT_TRUE(same_bits(raw<uint8_t>(t.to(c.dtype, sat)), expected, exact, &in)) << name;
    }
  }
}

TEST(Conversion, Fp8OverflowRules) {
  auto e4 = [](float f, bool sat) { return float_to_fp8_bits(f, Fp8Format::kE4M3, sat); };
  auto e5 = [](float f, bool sat) { return float_to_fp8_bits(f, Fp8Format::kE5M2, sat); };
  // E4M3: 464 is the tie between 448 and the (NaN) code above it: ties to even keep 448.
  EXPECT_EQ(e4(448.0f, false), 0x7e);
  EXPECT_EQ(e4(464.0f, false), 0x7e);
  EXPECT_EQ(e4(464.5f, false), 0x7f);  // overflow -> NaN without saturation
  EXPECT_EQ(e4(-1e6f, false), 0xff);
  EXPECT_EQ(e4(INFINITY, false), 0x7f);
  EXPECT_EQ(e4(464.5f, true), 0x7e);  // saturate: clamp to +-448
  EXPECT_EQ(e4(-1e30f, true), 0xfe);
  EXPECT_EQ(e4(-INFINITY, true), 0xfe);
  EXPECT_EQ(e4(NAN, true), 0x7f);  // NaN stays NaN
  EXPECT_EQ(fp8_bits_to_float(0x7e, Fp8Format::kE4M3), 448.0f);
  // E5M2: max 57344; 61440 ties to even -> the inf code; saturation clamps to +-57344.
  EXPECT_EQ(e5(57344.0f, false), 0x7b);
  EXPECT_EQ(e5(61439.0f, false), 0x7b);
  EXPECT_EQ(e5(61440.0f, false), 0x7c);
  EXPECT_EQ(e5(-INFINITY, false), 0xfc);
  EXPECT_EQ(e5(61440.0f, true), 0x7b);
  EXPECT_EQ(e5(INFINITY, true), 0x7b);
  EXPECT_EQ(e5(-1e30f, true), 0xfb);
  EXPECT_EQ(e5(NAN, false), 0x7e);
  EXPECT_EQ(fp8_bits_to_float(0x7b, Fp8Format::kE5M2), 57344.0f);
  EXPECT_EQ(fp8_max(Fp8Format::kE4M3), 448.0f);
  EXPECT_EQ(fp8_max(Fp8Format::kE5M2), 57344.0f);
  // Through Tensor::to.
  Tensor big = from_vector<float>({1000.0f, -1000.0f, 1e5f, -INFINITY});
  EXPECT_EQ(to_vector<float>(big.to(DType::F8E4M3, true)),
            (std::vector<float>{448.0f, -448.0f, 448.0f, -448.0f}));
  EXPECT_EQ(to_vector<float>(big.to(DType::F8E5M2, true)),
            (std::vector<float>{1024.0f, -1024.0f, 57344.0f, -57344.0f}));
  std::vector<float> ns = to_vector<float>(big.to(DType::F8E4M3, false));
  for (float v : ns) EXPECT_TRUE(std::isnan(v));
}

// float64 sources round once, correctly. PyTorch and ml_dtypes go double -> float -> narrow and
// round twice (the generator asserts that every disagreement is exactly that), so the reference
// here is an exact table lookup, cross-checked against NumPy's correctly rounded float16.
TEST(Conversion, DoubleToBf16AndFp16RoundOnce) {
  Tensor x = load_ref(kGroup, "f64_inputs");
  ASSERT_EQ(x.dtype(), DType::F64);
  for (auto [dtype, name] :
       {std::pair{DType::BF16, "f64_to_bf16_exact"}, std::pair{DType::F16, "f64_to_fp16_exact"}}) {
    SCOPED_TRACE(name);
    std::vector<uint16_t> expected = raw<uint16_t>(load_ref(kGroup, name));
    auto is_nan = dtype == DType::BF16 ? bf16_bits_nan : f16_bits_nan;
    EXPECT_TRUE(same_bits(raw<uint16_t>(x.to(dtype)), expected, is_nan));
    // fill_ converts its double argument the same way.
    std::vector<double> xv = to_vector<double>(x);
    std::vector<uint16_t> filled;
    for (size_t i = 0; i < xv.size(); i += 97) {
      Tensor one = empty({1}, dtype);
      one.fill_(xv[i]);
      filled.push_back(raw<uint16_t>(one)[0]);
    }
    std::vector<uint16_t> exp_sub;
    for (size_t i = 0; i < expected.size(); i += 97) exp_sub.push_back(expected[i]);
    EXPECT_TRUE(same_bits(filled, exp_sub, is_nan));
  }
  // The classic double-rounding case, spelled out.
  Tensor d = from_vector<double>({1.0 + 0x1p-8 + 0x1p-30, -(1.0 + 0x1p-11 + 0x1p-40)});
  EXPECT_EQ(to_vector<float>(d.narrow(0, 0, 1).to(DType::BF16))[0], 1.0f + 0x1p-7f);
  EXPECT_EQ(to_vector<float>(d.narrow(0, 1, 1).to(DType::F16))[0], -(1.0f + 0x1p-10f));
}

TEST(Conversion, DoubleToFp8RoundsOnce) {
  for (const Fp8Case& c : kFp8Cases) {
    SCOPED_TRACE(c.name);
    Tensor x = load_ref(kGroup, std::string("f64_fp8_inputs_") + c.name);
    std::vector<uint8_t> expected =
        raw<uint8_t>(load_ref(kGroup, std::string("f64_to_") + c.name + "_exact"));
    EXPECT_TRUE(same_bits(raw<uint8_t>(x.to(c.dtype)), expected, [](uint8_t) { return false; }));
  }
}

TEST(Conversion, DenormalsSurviveFloatDoubleConversions) {
  init_compute_environment();  // FTZ/DAZ on in this thread, as in every compute thread
  std::vector<uint32_t> bits = {0x00000001u, 0x80000001u, 0x007fffffu, 0x00400000u, 0x00012345u,
                                0x00800000u, 0x3f800000u, 0x80000000u, 0x7f800000u};
  Tensor f = from_raw(bits, DType::F32);
  Tensor d = f.to(DType::F64);
  std::vector<double> dv = to_vector<double>(d);
  EXPECT_EQ(dv[0], 0x1p-149);
  EXPECT_EQ(dv[1], -0x1p-149);
  EXPECT_EQ(dv[2], 0x7fffff * 0x1p-149);
  EXPECT_EQ(raw<uint32_t>(d.to(DType::F32)), bits);  // and back, bit for bit
  // Rounding into float's subnormal range from double: ties to even at 2^-149 granularity.
  Tensor t = from_vector<double>({0x1p-150, 0x1p-150 * 3, 0x1p-150 * (1 + 0x1p-30), 1e-300,
                                  0x1p-126 * (1 - 0x1p-30), -0x1p-140});
  EXPECT_EQ(raw<uint32_t>(t.to(DType::F32)),
            (std::vector<uint32_t>{0u, 2u, 1u, 0u, 0x00800000u, 0x80000200u}));
  // bf16 subnormals (2^-133 granularity) reach float and double unchanged.
  std::vector<uint16_t> b = {0x0001, 0x8001, 0x007f};
  std::vector<double> bd = to_vector<double>(from_raw(b, DType::BF16));
  EXPECT_EQ(bd, (std::vector<double>{0x1p-133, -0x1p-133, 127 * 0x1p-133}));
  EXPECT_EQ(raw<uint16_t>(from_vector<double>(bd).to(DType::BF16)), b);
}

TEST(Conversion, DoubleToFloatExactHelper) {
  // Hardware conversion (outside the subnormal range) agrees with the bit-level one.
  uint64_t s = 88172645463325252ull;
  for (int i = 0; i < 200000; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    double d;
    uint64_t u = (s & 0x800fffffffffffffull) | ((897ull + (s >> 52) % 256) << 52);  // 2^-126..2^129
    std::memcpy(&d, &u, 8);
    float hw = static_cast<float>(d);
    ASSERT_EQ(float_bits(double_to_float_exact(d)), float_bits(hw)) << d;
    float odd = double_to_float_exact(d, true);
    double od = float_to_double_exact(odd);
    if (std::isfinite(hw) && od != d) {
      ASSERT_EQ(float_bits(odd) & 1u, 1u) << d;
      // The odd one of the two floats that bracket d.
      ASSERT_LT(std::fabs(float_to_double_exact(bits_float(float_bits(odd) - 1))), std::fabs(d));
      ASSERT_GT(std::fabs(float_to_double_exact(bits_float(float_bits(odd) + 1))), std::fabs(d));
    }
  }
  EXPECT_TRUE(std::isnan(double_to_float_exact(NAN)));
  EXPECT_EQ(double_to_float_exact(-INFINITY), -INFINITY);
  EXPECT_EQ(double_to_float_exact(1e300), INFINITY);
  EXPECT_EQ(float_bits(double_to_float_exact(1e300, true)), 0x7f7fffffu);
  EXPECT_EQ(float_bits(double_to_float_exact(-0.0)), 0x80000000u);
}

}  // namespace
}  // namespace mcore
