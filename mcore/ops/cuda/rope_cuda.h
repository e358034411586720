// CUDA kernels of rotary position embedding (mcore/ops/rope.h, Megatron's sbhd
// apply_rotary_pos_emb): the same arguments, both channel pairings (rotate-half and
// interleaved), partial rotation (rot_dim < head dim: the tail is copied), per-sample angles
// [S, B, 1, rot_dim] and mscale. cos/sin are evaluated per element from the angles in the
// angles' own precision (float32; float64 angles in float64), as the CPU's tables are. One warp
// or block per [s, b, h] row, 16-byte packed loads where the layout allows.
//
// Plain C++ header (no CUDA includes): rope.cpp calls these, after validating the arguments,
// when t is on a CUDA device. Dtypes of t: float32, bfloat16, float16.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

Tensor apply_rotary_pos_emb(const Tensor& t, const Tensor& freqs, bool rotary_interleaved,
                            double mscale);
Tensor apply_rotary_pos_emb_backward(const Tensor& grad_out, const Tensor& freqs,
                                     bool rotary_interleaved, double mscale);

}  // namespace mcore::ops::cuda
