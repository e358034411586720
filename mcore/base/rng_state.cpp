#include "mcore/base/rng_state.h"

namespace mcore {

namespace {
thread_local RngState t_state;
}

RngState get_rng_state() {
  return t_state;
}
void set_rng_state(const RngState& state) {
  t_state = state;
}

uint64_t mix_stream(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace mcore
