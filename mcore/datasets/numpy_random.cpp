#include "mcore/datasets/numpy_random.h"

#include <algorithm>

#include "mcore/base/error.h"

namespace mcore::datasets {

namespace {
constexpr int kPeriod = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpper = 0x80000000u, kLower = 0x7fffffffu;

// Smallest all-ones mask covering `max` (numpy's gen_mask).
uint64_t gen_mask(uint64_t max) {
  uint64_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  return mask;
}
}  // namespace

void MT19937::seed_(uint32_t seed) {
  for (int pos = 0; pos < kStateLen; ++pos) {
    key_[pos] = seed;
    seed = 1812433253u * (seed ^ (seed >> 30)) + static_cast<uint32_t>(pos) + 1u;
  }
  pos_ = kStateLen;
}

void MT19937::seed_by_array(const std::vector<uint32_t>& init_key) {
  seed_(19650218u);
  const int key_length = static_cast<int>(init_key.size());
  int i = 1, j = 0;
  for (int k = std::max(kStateLen, key_length); k; --k) {
    key_[i] = (key_[i] ^ ((key_[i - 1] ^ (key_[i - 1] >> 30)) * 1664525u)) + init_key[j] +
              static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= kStateLen) {
      key_[0] = key_[kStateLen - 1];
      i = 1;
    }
    if (j >= key_length) j = 0;
  }
  for (int k = kStateLen - 1; k; --k) {
    key_[i] =
        (key_[i] ^ ((key_[i - 1] ^ (key_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kStateLen) {
      key_[0] = key_[kStateLen - 1];
      i = 1;
    }
  }
  key_[0] = 0x80000000u;  // MSB is 1, assuring a non-zero initial array
  pos_ = kStateLen;
}

void MT19937::generate() {
  int i = 0;
  uint32_t y;
  for (; i < kStateLen - kPeriod; ++i) {
    y = (key_[i] & kUpper) | (key_[i + 1] & kLower);
    key_[i] = key_[i + kPeriod] ^ (y >> 1) ^ (-(y & 1u) & kMatrixA);
  }
  for (; i < kStateLen - 1; ++i) {
    y = (key_[i] & kUpper) | (key_[i + 1] & kLower);
    key_[i] = key_[i + (kPeriod - kStateLen)] ^ (y >> 1) ^ (-(y & 1u) & kMatrixA);
  }
  y = (key_[kStateLen - 1] & kUpper) | (key_[0] & kLower);
  key_[kStateLen - 1] = key_[kPeriod - 1] ^ (y >> 1) ^ (-(y & 1u) & kMatrixA);
  pos_ = 0;
}

uint64_t NumpyRandomState::random_interval(uint64_t max) {
  if (max == 0) return 0;
  const uint64_t mask = gen_mask(max);
  uint64_t value;
  if (max <= 0xffffffffull) {
    while ((value = (mt_.next_uint32() & mask)) > max) {
    }
  } else {
    while ((value = (mt_.next_uint64() & mask)) > max) {
    }
  }
  return value;
}

int64_t NumpyRandomState::randint(int64_t low, int64_t high) {
  MCORE_CHECK(low < high) << "randint: low (" << low << ") must be < high (" << high << ")";
  // Legacy RandomState draws int64 with masked rejection (random_bounded_uint64, use_masked).
  const uint64_t rng = static_cast<uint64_t>(high) - static_cast<uint64_t>(low) - 1u;
  if (rng == 0) return low;
  uint64_t value;
  if (rng <= 0xffffffffull) {
    if (rng == 0xffffffffull) return low + static_cast<int64_t>(mt_.next_uint32());
    const uint64_t mask = gen_mask(rng);
    while ((value = (mt_.next_uint32() & mask)) > rng) {
    }
  } else if (rng == 0xffffffffffffffffull) {
    value = mt_.next_uint64();
  } else {
    const uint64_t mask = gen_mask(rng);
    while ((value = (mt_.next_uint64() & mask)) > rng) {
    }
  }
  return static_cast<int64_t>(static_cast<uint64_t>(low) + value);
}

// ---------------------------------------------------------------------------------------------
// SeedSequence + PCG64 (numpy/random/bit_generator.pyx, numpy/random/src/pcg64).

namespace {

constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875, kInitB = 0x8b51f9dd,
                   kMultB = 0x58f38ded, kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;
constexpr int kXShift = 16, kPoolSize = 4;

uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}
uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t r = kMixMultL * x - kMixMultR * y;
  r ^= r >> kXShift;
  return r;
}

// SeedSequence(seed).generate_state(n_words) as uint32 words.
std::vector<uint32_t> seed_sequence_state(uint64_t seed, int n_words) {
  std::vector<uint32_t> entropy;  // _int_to_uint32_array: little-endian 32-bit words, [0] for 0
  if (seed == 0) entropy.push_back(0);
  while (seed > 0) {
    entropy.push_back(static_cast<uint32_t>(seed & 0xffffffffu));
    seed >>= 32;
  }
  uint32_t pool[kPoolSize];
  uint32_t hash_const = kInitA;
  for (int i = 0; i < kPoolSize; ++i)
    pool[i] = hashmix(i < static_cast<int>(entropy.size()) ? entropy[i] : 0u, hash_const);
  for (int s = 0; s < kPoolSize; ++s)
    for (int d = 0; d < kPoolSize; ++d)
      if (s != d) pool[d] = mix(pool[d], hashmix(pool[s], hash_const));
  for (size_t s = kPoolSize; s < entropy.size(); ++s)
    for (int d = 0; d < kPoolSize; ++d) pool[d] = mix(pool[d], hashmix(entropy[s], hash_const));
  std::vector<uint32_t> state(static_cast<size_t>(n_words));
  uint32_t hc = kInitB;
  for (int i = 0; i < n_words; ++i) {
    uint32_t v = pool[i % kPoolSize];
    v ^= hc;
    hc *= kMultB;
    v *= hc;
    v ^= v >> kXShift;
    state[static_cast<size_t>(i)] = v;
  }
  return state;
}

constexpr unsigned __int128 kPcgMult =
    (static_cast<unsigned __int128>(2549297995355413924ull) << 64) | 4865540595714422341ull;

}  // namespace

NumpyGenerator::NumpyGenerator(uint64_t seed) {
  const std::vector<uint32_t> w = seed_sequence_state(seed, 8);
  uint64_t v[4];
  for (int i = 0; i < 4; ++i)
    v[i] = static_cast<uint64_t>(w[2 * i]) | (static_cast<uint64_t>(w[2 * i + 1]) << 32);
  const unsigned __int128 initstate = (static_cast<unsigned __int128>(v[0]) << 64) | v[1];
  const unsigned __int128 initseq = (static_cast<unsigned __int128>(v[2]) << 64) | v[3];
  state_ = 0;
  inc_ = (initseq << 1) | 1u;
  state_ = state_ * kPcgMult + inc_;
  state_ += initstate;
  state_ = state_ * kPcgMult + inc_;
}

uint64_t NumpyGenerator::next_uint64() {
  state_ = state_ * kPcgMult + inc_;
  const uint64_t hi = static_cast<uint64_t>(state_ >> 64), lo = static_cast<uint64_t>(state_);
  const unsigned rot = static_cast<unsigned>(state_ >> 122);
  const uint64_t x = hi ^ lo;
  return (x >> rot) | (x << ((64 - rot) & 63));
}

uint32_t NumpyGenerator::next_uint32() {
  if (has_uint32_) {
    has_uint32_ = false;
    return uinteger_;
  }
  const uint64_t next = next_uint64();
  has_uint32_ = true;
  uinteger_ = static_cast<uint32_t>(next >> 32);
  return static_cast<uint32_t>(next & 0xffffffffu);
}

std::vector<int32_t> NumpyGenerator::integers_int32(int32_t low, int32_t high, int64_t n) {
  MCORE_CHECK(low < high) << "integers: low (" << low << ") must be < high (" << high << ")";
  const uint32_t rng = static_cast<uint32_t>(static_cast<int64_t>(high) - 1 - low);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t v;
    if (rng == 0) {
      v = 0;
    } else if (rng == 0xffffffffu) {
      v = next_uint32();
    } else {
      const uint32_t rng_excl = rng + 1;
      uint64_t m = static_cast<uint64_t>(next_uint32()) * rng_excl;
      uint32_t leftover = static_cast<uint32_t>(m);
      if (leftover < rng_excl) {
        const uint32_t threshold = (0xffffffffu - rng) % rng_excl;
        while (leftover < threshold) {
          m = static_cast<uint64_t>(next_uint32()) * rng_excl;
          leftover = static_cast<uint32_t>(m);
        }
      }
      v = static_cast<uint32_t>(m >> 32);
    }
    out[static_cast<size_t>(i)] = static_cast<int32_t>(static_cast<uint32_t>(low) + v);
  }
  return out;
}

}  // namespace mcore::datasets
