// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11). A value is a pure function
// of (seed, stream, element index): element i of a stream uses counter block i/4 and lane i%4
// (normals: Box-Muller on the lane pairs of block i/4). So a rank that fills elements [a, b) of
// a global tensor gets exactly the values one process filling the whole tensor gets there,
// which is what makes initialization and dropout independent of the parallel layout.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace mcore {

class Philox {
 public:
  using Block = std::array<uint32_t, 4>;

  // Ten rounds of the 4x32 bijection on counter (block, stream) under key = seed.
  static Block block(uint64_t seed, uint64_t stream, uint64_t block_index) {
    uint32_t c0 = static_cast<uint32_t>(block_index), c1 = static_cast<uint32_t>(block_index >> 32);
    uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
      uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
      uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
      uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
      uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
      c0 = n0, c1 = n1, c2 = n2, c3 = n3;
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    return {c0, c1, c2, c3};
  }

  // Uniform in (0, 1] from the top 24 bits: never 0, so log() in Box-Muller is safe.
  static float to_uniform(uint32_t x) { return static_cast<float>((x >> 8) + 1) * 0x1.0p-24f; }

  static uint32_t bits(uint64_t seed, uint64_t stream, uint64_t index) {
    return block(seed, stream, index / 4)[index % 4];
  }
  static float uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return to_uniform(bits(seed, stream, index));
  }
  // Standard normal. Lanes (0,1) and (2,3) of block index/4 each give a cos/sin pair.
  static float normal(uint64_t seed, uint64_t stream, uint64_t index) {
    Block b = block(seed, stream, index / 4);
    float z[4];
    normals_from_block(b, z);
    return z[index % 4];
  }
  static void normals_from_block(const Block& b, float* z) {
    for (int p = 0; p < 2; ++p) {
      float u1 = to_uniform(b[2 * p]), u2 = to_uniform(b[2 * p + 1]);
      float r = std::sqrt(-2.0f * std::log(u1));
      float theta = 6.28318530717958647692f * u2;
      z[2 * p] = r * std::cos(theta);
      z[2 * p + 1] = r * std::sin(theta);
    }
  }

  // Fill out[0, n) with elements [first, first + n) of the stream.
  static void fill_uniform(uint64_t seed, uint64_t stream, uint64_t first, int64_t n, float* out);
  static void fill_normal(uint64_t seed, uint64_t stream, uint64_t first, int64_t n, float* out);

 private:
  static constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  static constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
};

}  // namespace mcore
