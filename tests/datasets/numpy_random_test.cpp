// numpy's RandomState / default_rng streams, reproduced exactly (reference:
// tests/reference/gen_numpy_random.py). Exact equality: any difference would reorder samples.
#include <gtest/gtest.h>

#include "mcore/datasets/numpy_random.h"
#include "tests/common/test_util.h"

namespace mcore::datasets {
namespace {

using mcore::testing::has_ref;
using mcore::testing::load_ref;

constexpr const char* G = "numpy_random";

TEST(NumpyRandom, MT19937ReferenceOutput) {
  // Matsumoto & Nishimura's published mt19937ar output for init_by_array({0x123, 0x234, 0x345,
  // 0x456}): the first values.
  MT19937 mt;
  mt.seed_by_array({0x123, 0x234, 0x345, 0x456});
  EXPECT_EQ(mt.next_uint32(), 1067595299u);
  EXPECT_EQ(mt.next_uint32(), 955945823u);
  EXPECT_EQ(mt.next_uint32(), 477289528u);
  // And seed 5489 (the default init_genrand seed): the 10000th output is 4123659995.
  MT19937 d(5489u);
  uint32_t v = 0;
  for (int i = 0; i < 10000; ++i) v = d.next_uint32();
  EXPECT_EQ(v, 4123659995u);
}

TEST(NumpyRandom, ShuffleMatchesNumpy) {
  if (!has_ref(G, "seeds"))
    FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  const std::vector<int64_t> seeds = to_vector<int64_t>(load_ref(G, "seeds"));
  const std::vector<int64_t> sizes = to_vector<int64_t>(load_ref(G, "sizes"));
  int compared = 0;
  for (int64_t seed : seeds) {
    NumpyRandomState rs(static_cast<uint32_t>(seed));
    for (int64_t n : sizes) {
      std::vector<int32_t> a(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) a[i] = static_cast<int32_t>(i);
      rs.shuffle(a);
      std::vector<uint32_t> b(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) b[i] = static_cast<uint32_t>(i);
      rs.shuffle(b);
      const std::string suffix = "_s" + std::to_string(seed) + "_n" + std::to_string(n);
      if (!has_ref(G, "shuffle_i32" + suffix)) continue;
      EXPECT_EQ(a, to_vector<int32_t>(load_ref(G, "shuffle_i32" + suffix))) << suffix;
      const std::vector<int64_t> eb = to_vector<int64_t>(load_ref(G, "shuffle_u32" + suffix));
      EXPECT_EQ(std::vector<int64_t>(b.begin(), b.end()), eb) << suffix;
      ++compared;
    }
    // The state after the shuffles continues identically.
    const std::vector<double> rsample =
        to_vector<double>(load_ref(G, "random_sample_s" + std::to_string(seed)));
    for (double e : rsample) EXPECT_EQ(rs.random_sample(), e) << "seed " << seed;
    const std::vector<int64_t> ints =
        to_vector<int64_t>(load_ref(G, "randint_s" + std::to_string(seed)));
    size_t k = 0;
    for (int64_t hi : {int64_t{2}, int64_t{7}, int64_t{1000}, int64_t{1} << 31,
                       (int64_t{1} << 33) + 5, int64_t{1} << 62})
      EXPECT_EQ(rs.randint(0, hi), ints[k++]) << "seed " << seed << " randint(0, " << hi << ")";
    for (int i = 0; i < 20; ++i) EXPECT_EQ(rs.randint(-5, 5), ints[k++]) << "seed " << seed;
  }
  EXPECT_GE(compared, 40);
}

TEST(NumpyRandom, InitByArrayMatchesNumpy) {
  if (!has_ref(G, "by_array_123_sample")) FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  NumpyRandomState rs(0);
  rs.bit_generator().seed_by_array({1, 2, 3});
  for (double e : to_vector<double>(load_ref(G, "by_array_123_sample")))
    EXPECT_EQ(rs.random_sample(), e);
}

TEST(NumpyRandom, DefaultRngIntegersMatchNumpy) {
  if (!has_ref(G, "pcg_integers_s0")) FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  for (uint64_t s : {uint64_t{0}, uint64_t{5}, (uint64_t{1} << 40) + 3}) {
    NumpyGenerator g(s);
    EXPECT_EQ(g.integers_int32(1, 4096, 1000),
              to_vector<int32_t>(load_ref(G, "pcg_integers_s" + std::to_string(s))))
        << "seed " << s;
  }
  NumpyGenerator g(0);
  EXPECT_EQ(g.integers_int32(1, 4096, 100000),
            to_vector<int32_t>(load_ref(G, "pcg_integers_s0_mock")));
}

TEST(NumpyRandom, BadRandintRangeThrows) {
  NumpyRandomState rs(1);
  EXPECT_THROW(rs.randint(5, 5), Error);
}

}  // namespace
}  // namespace mcore::datasets
