#include "mcore/base/philox.h"

namespace mcore {

namespace {
// Shared by both fills: walk whole blocks in parallel, each element from its own global index.
template <class BlockFn>
void fill(uint64_t first, int64_t n, float* out, BlockFn&& block_values) {
  if (n <= 0) return;
  const uint64_t b0 = first / 4, b1 = (first + n - 1) / 4;
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t bi = 0; bi <= static_cast<int64_t>(b1 - b0); ++bi) {
    uint64_t b = b0 + bi;
    float v[4];
    block_values(b, v);
    for (int l = 0; l < 4; ++l) {
      uint64_t idx = b * 4 + l;
      if (idx >= first && idx < first + static_cast<uint64_t>(n)) out[idx - first] = v[l];
    }
  }
}
}  // namespace

void Philox::fill_uniform(uint64_t seed, uint64_t stream, uint64_t first, int64_t n, float* out) {
  fill(first, n, out, [&](uint64_t b, float* v) {
    Block x = block(seed, stream, b);
    for (int l = 0; l < 4; ++l) v[l] = to_uniform(x[l]);
  });
}

void Philox::fill_normal(uint64_t seed, uint64_t stream, uint64_t first, int64_t n, float* out) {
  fill(first, n, out, [&](uint64_t b, float* v) { normals_from_block(block(seed, stream, b), v); });
}

}  // namespace mcore
