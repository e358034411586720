// Philox4x32-10 (mcore/base/philox.h): known answers from Random123's kat_vectors, the
// layout-invariance guarantee of the random factories (a slice filled alone equals the same
// slice of the whole tensor), and distribution sanity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "mcore/base/philox.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

// Random123 kat_vectors lines "philox4x32 10 <ctr0..3> <key0..1> <out0..3>". Our counter is
// (block lo, block hi, stream lo, stream hi) and the key (seed lo, seed hi).
struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  Philox::Block expected;
};
const Kat kKats[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

uint64_t join(uint32_t lo, uint32_t hi) {
  return static_cast<uint64_t>(hi) << 32 | lo;
}

TEST(Philox, Random123KnownAnswers) {
  for (const Kat& k : kKats) {
    uint64_t seed = join(k.key[0], k.key[1]);
    uint64_t block = join(k.ctr[0], k.ctr[1]);
    uint64_t stream = join(k.ctr[2], k.ctr[3]);
    EXPECT_EQ(Philox::block(seed, stream, block), k.expected) << std::hex << seed;
    for (int lane = 0; lane < 4; ++lane) {
      // Element index 4 * block + lane is 64-bit: blocks from 2^62 on are reachable only
      // through block().
      if (block < (uint64_t{1} << 62)) {
        EXPECT_EQ(Philox::bits(seed, stream, block * 4 + lane), k.expected[lane]);
      }
    }
  }
}

TEST(Philox, FillsMatchScalarDrawsAtAnyOffset) {
  const uint64_t seed = 1234, stream = 77;
  for (auto [first, n] : {std::pair<uint64_t, int64_t>{0, 8}, {3, 37}, {1, 1}, {4097, 40001}}) {
    std::vector<float> u(static_cast<size_t>(n)), z(static_cast<size_t>(n));
    Philox::fill_uniform(seed, stream, first, n, u.data());
    Philox::fill_normal(seed, stream, first, n, z.data());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(u[i], Philox::uniform(seed, stream, first + i)) << first << "+" << i;
      ASSERT_EQ(z[i], Philox::normal(seed, stream, first + i)) << first << "+" << i;
    }
  }
}

TEST(Philox, UniformIsInHalfOpenUnitInterval) {
  EXPECT_EQ(Philox::to_uniform(0u), 0x1p-24f);  // never 0: Box-Muller takes log(u)
  EXPECT_EQ(Philox::to_uniform(0xffffffffu), 1.0f);
  EXPECT_EQ(Philox::to_uniform(0x80000000u), 0.5f + 0x1p-24f);
}

std::vector<float> values(const Tensor& t) {
  return to_vector<float>(t);
}

// Fill `global` shape whole, then as the given slices (start, length along `dim`), and check
// every slice equals the matching part of the whole, bit for bit.
void check_partition(const Shape& global, int64_t dim,
                     const std::vector<std::pair<int64_t, int64_t>>& parts, DType dtype) {
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE("kind " + std::to_string(kind) + " dim " + std::to_string(dim));
    RandomSpec whole_spec{42, 5, {}, {}};
    auto make = [&](const Shape& shape, const RandomSpec& spec) {
      if (kind == 0) return randn(shape, spec, dtype);
      if (kind == 1) return rand(shape, spec, dtype);
      Tensor t = empty(shape, dtype);
      normal_(t, spec, 0.5, 0.02);
      return t;
    };
    Tensor whole = make(global, whole_spec);
    int64_t covered = 0;
    for (auto [start, len] : parts) {
      Shape local = global;
      local[dim] = len;
      Shape offset(global.size(), 0);
      offset[dim] = start;
      Tensor part = make(local, RandomSpec{42, 5, global, offset});
      EXPECT_EQ(values(part), values(whole.narrow(dim, start, len).contiguous()))
          << "slice at " << start << " length " << len;
      covered += len;
    }
    EXPECT_EQ(covered, global[dim]);
  }
}

TEST(Philox, RandomFactoriesArePartitionInvariant) {
  check_partition({6, 10}, 1, {{0, 4}, {4, 6}}, DType::F32);  // column slices (TP of a weight)
  check_partition({6, 10}, 0, {{0, 2}, {2, 4}}, DType::F32);  // row slices
  check_partition({6, 10}, 1, {{0, 3}, {3, 3}, {6, 4}}, DType::BF16);
  check_partition({4, 6, 10}, 1, {{0, 1}, {1, 5}}, DType::F64);
  check_partition({3, 5, 7}, 2, {{0, 2}, {2, 3}, {5, 2}}, DType::F32);
  // A 2-d block (rows and columns at once) of the global tensor.
  Tensor whole = randn({6, 10}, {9, 1, {}, {}});
  Tensor block = randn({3, 4}, {9, 1, {6, 10}, {2, 5}});
  EXPECT_EQ(values(block), values(whole.narrow(0, 2, 3).narrow(1, 5, 4).contiguous()));
}

// Large fills run their rows on every thread, and a contiguous float32 tensor is filled in place
// (others through a float32 staging copy). Each value depends only on its global index: the
// in-place fill of a [700, 300] tensor equals the staged fill of a strided view of the same
// shape and one serial Philox draw over the whole range, bitwise, for normal_ and uniform_;
// a TP column shard (rows not contiguous in the global index space) equals its slice.
TEST(Philox, LargeFillsMatchSerialDraws) {
  const int64_t r = 700, c = 300;
  const RandomSpec spec{77, 3, {}, {}};
  std::vector<float> serial(static_cast<size_t>(r * c));
  Philox::fill_normal(77, 3, 0, r * c, serial.data());
  for (float& x : serial) x = static_cast<float>(0.5 + 2.0 * x);
  Tensor direct = empty({r, c}, DType::F32);
  normal_(direct, spec, 0.5, 2.0);
  Tensor wide = empty({r, 2 * c}, DType::F32);
  Tensor view = wide.narrow(1, 0, c);  // not contiguous: the staging path
  normal_(view, spec, 0.5, 2.0);
  EXPECT_EQ(values(direct), serial);
  EXPECT_EQ(values(view.contiguous()), serial);
  Philox::fill_uniform(77, 3, 0, r * c, serial.data());
  uniform_(direct, spec);
  EXPECT_EQ(values(direct), serial);
  Tensor shard = randn({r, 100}, {77, 3, {r, c}, {0, 200}});
  EXPECT_EQ(values(shard), values(randn({r, c}, spec).narrow(1, 200, 100).contiguous()));
}

TEST(Philox, SeedsAndStreamsDiffer) {
  std::vector<float> a = values(randn({1000}, {1, 0, {}, {}}));
  std::vector<float> b = values(randn({1000}, {2, 0, {}, {}}));
  std::vector<float> c = values(randn({1000}, {1, 1, {}, {}}));
  double ab = 0, ac = 0;
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    ac += a[i] * c[i];
    same += a[i] == b[i] || a[i] == c[i];
  }
  EXPECT_EQ(same, 0);
  EXPECT_LT(std::fabs(ab / 1000), 0.15);  // correlation ~ N(0, 1/sqrt(1000)): 0.15 is ~5 sigma
  EXPECT_LT(std::fabs(ac / 1000), 0.15);
}

TEST(Philox, BadSliceSpecsAreRejected) {
  EXPECT_THROW(randn({3, 4}, {1, 0, {6, 10}, {4, 0}}), Error);  // rows 4..6 exceed 6
  try {
    randn({3, 4}, {1, 0, {6, 10}, {0}});
    FAIL() << "rank mismatch accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[6, 10]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[3, 4]"), std::string::npos) << e.message();
  }
}

struct Moments {
  double mean = 0, var = 0, skew = 0, kurt = 0, min = INFINITY, max = -INFINITY;
};
Moments moments(const std::vector<float>& v) {
  Moments m;
  const double n = static_cast<double>(v.size());
  for (float x : v) {
    m.mean += x;
    m.min = std::min(m.min, static_cast<double>(x));
    m.max = std::max(m.max, static_cast<double>(x));
  }
  m.mean /= n;
  double m2 = 0, m3 = 0, m4 = 0;
  for (float x : v) {
    double d = x - m.mean;
    m2 += d * d, m3 += d * d * d, m4 += d * d * d * d;
  }
  m.var = m2 / n;
  m.skew = m3 / n / std::pow(m.var, 1.5);
  m.kurt = m4 / n / (m.var * m.var);
  return m;
}

// 1e6 samples; bounds are ~5 standard errors of each statistic, so a correct generator fails
// with probability ~1e-6 per check (and the seeds are fixed, so the test is deterministic).
TEST(Philox, DistributionMoments) {
  const int64_t n = 1000000;
  Moments z = moments(values(randn({n}, {2024, 3, {}, {}})));
  EXPECT_NEAR(z.mean, 0.0, 0.005);   // se 1e-3
  EXPECT_NEAR(z.var, 1.0, 0.0075);   // se sqrt(2/n) = 1.4e-3
  EXPECT_NEAR(z.skew, 0.0, 0.0125);  // se sqrt(6/n) = 2.4e-3
  EXPECT_NEAR(z.kurt, 3.0, 0.025);   // se sqrt(24/n) = 4.9e-3
  EXPECT_GT(z.max, 4.0);
  EXPECT_LT(z.min, -4.0);

  Moments u = moments(values(rand({n}, {2024, 4, {}, {}})));
  EXPECT_NEAR(u.mean, 0.5, 0.0015);      // se 0.2887e-3
  EXPECT_NEAR(u.var, 1.0 / 12, 0.0004);  // se 7.5e-5
  EXPECT_GT(u.min, 0.0);
  EXPECT_LE(u.max, 1.0);

  Tensor t = empty({n}, DType::F32);
  normal_(t, {7, 0, {}, {}}, 2.0, 0.5);
  Moments s = moments(values(t));
  EXPECT_NEAR(s.mean, 2.0, 0.0025);
  EXPECT_NEAR(s.var, 0.25, 0.0019);
  Tensor w = empty({n}, DType::F32);
  uniform_(w, {7, 1, {}, {}}, -3.0, 1.0);
  Moments r = moments(values(w));
  EXPECT_NEAR(r.mean, -1.0, 0.006);
  EXPECT_GE(r.min, -3.0);
  EXPECT_LE(r.max, 1.0);

  // Histogram of the normal draws against the normal CDF: 20 bins on [-3, 3].
  std::vector<float> zv = values(randn({n}, {99, 0, {}, {}}));
  std::vector<int64_t> hist(20, 0);
  for (float x : zv)
    if (x >= -3 && x < 3) ++hist[static_cast<size_t>((x + 3) / 0.3)];
  for (int b = 0; b < 20; ++b) {
    double lo = -3 + 0.3 * b, hi = lo + 0.3;
    double p = 0.5 * (std::erf(hi / std::sqrt(2.0)) - std::erf(lo / std::sqrt(2.0)));
    double se = std::sqrt(p * (1 - p) * n);
    EXPECT_NEAR(static_cast<double>(hist[b]), p * n, 5 * se) << "bin " << b;
  }
}

}  // namespace
}  // namespace mcore
