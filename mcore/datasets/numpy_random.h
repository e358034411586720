// An exact reimplementation of NumPy's legacy `numpy.random.RandomState`, the generator
// Megatron-core seeds with the dataset seed to shuffle its document and sample indices. The
// shuffles decide which sample a training step sees, so "the same data as Megatron" means the
// same MT19937 stream and the same legacy Fisher-Yates draws, bit for bit. Only what Megatron's
// dataset code paths call (and what tests want) is here: seeding, shuffle, random_sample, randint.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace mcore::datasets {

// MT19937 exactly as numpy/random/src/mt19937 (Matsumoto & Nishimura's reference generator).
class MT19937 {
 public:
  static constexpr int kStateLen = 624;

  explicit MT19937(uint32_t seed = 5489u) { seed_(seed); }
  // init_genrand: what RandomState(int) does (numpy's `_legacy_seeding` for an integer seed).
  void seed_(uint32_t seed);
  // init_by_array: what RandomState(array_of_uint32) does.
  void seed_by_array(const std::vector<uint32_t>& key);

  uint32_t next_uint32() {
    if (pos_ >= kStateLen) generate();
    uint32_t y = key_[pos_++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
  }
  // numpy's mt19937_next64: the first 32-bit draw is the high half.
  uint64_t next_uint64() {
    uint64_t hi = next_uint32();
    return (hi << 32) | next_uint32();
  }
  // numpy's mt19937_next_double (53-bit resolution, two draws).
  double next_double() {
    int32_t a = static_cast<int32_t>(next_uint32() >> 5),
            b = static_cast<int32_t>(next_uint32() >> 6);
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

 private:
  void generate();
  std::array<uint32_t, kStateLen> key_{};
  int pos_ = kStateLen;
};

// numpy.random.RandomState with the methods Megatron's datasets use.
class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : mt_(seed) {}

  // RandomState.shuffle on a 1-d array: for i = n-1 .. 1, swap x[i] with x[random_interval(i)].
  template <class T>
  void shuffle(T* data, int64_t n) {
    for (int64_t i = n - 1; i > 0; --i) {
      uint64_t j = random_interval(static_cast<uint64_t>(i));
      std::swap(data[i], data[j]);
    }
  }
  template <class T>
  void shuffle(std::vector<T>& v) {
    shuffle(v.data(), static_cast<int64_t>(v.size()));
  }

  // RandomState.random_sample(): a double in [0, 1).
  double random_sample() { return mt_.next_double(); }
  // RandomState.randint(low, high) with the default int64 dtype: an integer in [low, high).
  int64_t randint(int64_t low, int64_t high);
  // numpy's random_interval: uniform in [0, max] by masked rejection (legacy shuffle's draw).
  uint64_t random_interval(uint64_t max);

  MT19937& bit_generator() { return mt_; }

 private:
  MT19937 mt_;
};

// numpy.random.default_rng(seed) (SeedSequence -> PCG64), for what Megatron's mock dataset
// draws: `integers(low, high, size, dtype=int32)` (Lemire's bounded method on buffered 32-bit
// halves of the 64-bit outputs).
class NumpyGenerator {
 public:
  explicit NumpyGenerator(uint64_t seed);
  uint64_t next_uint64();
  uint32_t next_uint32();
  // Generator.integers(low, high, size=n, dtype=numpy.int32): values in [low, high).
  std::vector<int32_t> integers_int32(int32_t low, int32_t high, int64_t n);

 private:
  unsigned __int128 state_ = 0, inc_ = 0;
  bool has_uint32_ = false;
  uint32_t uinteger_ = 0;
};

}  // namespace mcore::datasets
