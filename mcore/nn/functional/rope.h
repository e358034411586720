// Differentiable rotary position embedding (Megatron's apply_rotary_pos_emb for sbhd tensors);
// see mcore/ops/rope.h for the conventions. freqs are constants: only t receives a gradient.
#pragma once

#include "mcore/ops/rope.h"
#include "mcore/tensor/tensor.h"

namespace mcore::F {

// t [S, B, H, D], freqs [S, 1, 1, rot_dim] (angles, e.g. from ops::rotary_embedding_freqs).
Tensor apply_rotary_pos_emb(const Tensor& t, const Tensor& freqs, bool rotary_interleaved = false,
                            double mscale = 1.0);

}  // namespace mcore::F
