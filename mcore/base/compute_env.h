// Per-thread floating-point environment for compute threads. Denormals are flushed to zero
// (FTZ) and treated as zero on input (DAZ) in the calling thread and in every OpenMP worker: a
// denormal operand costs ~100 cycles on x86, and training never needs them.
#pragma once

namespace mcore {

// Idempotent and cheap after the first call. The library calls it when it loads and when it
// loads its BLAS; OpenMP workers and other threads started later inherit the mode from the
// thread that creates them.
void init_compute_environment();
// True when FTZ and DAZ are set in the calling thread.
bool denormals_flushed();

}  // namespace mcore
