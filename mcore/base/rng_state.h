// The process's random-number key: a seed and a step counter. Nothing draws from a hidden
// sequential generator; every random op derives its Philox stream from (seed, step, a stable id
// of the op), so results do not depend on call order or on how work is split across ranks. The
// trainer advances `step` once per microbatch; activation recompute saves and restores the state
// so a recomputed forward draws exactly the same dropout masks.
#pragma once

#include <cstdint>

namespace mcore {

struct RngState {
  uint64_t seed = 1234;
  uint64_t step = 0;
};

RngState get_rng_state();
void set_rng_state(const RngState& state);

// Mixes two 64-bit values into a stream id (splitmix64 finalizer): distinct inputs give
// unrelated streams.
uint64_t mix_stream(uint64_t a, uint64_t b);

}  // namespace mcore
