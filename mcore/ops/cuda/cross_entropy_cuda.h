// CUDA kernels of the fused cross-entropy over the vocabulary (mcore/ops/cross_entropy.h) and the
// per-shard passes of Megatron's vocab-parallel cross-entropy (mcore/tensor_parallel/
// cross_entropy.cpp), with the CPU code's arguments, float32 results and formulas. One warp or
// block per token row, 16-byte packed loads; the forward reads the logits once (online max and
// sum of exps per thread, merged by shuffles), the backward recomputes softmax from the saved
// logsumexp. A target outside the vocabulary (and not ignore_index) makes the kernel print it and
// trap: the error surfaces at the next synchronizing CUDA call.
//
// Plain C++ header (no CUDA includes). Logits: float32, bfloat16, float16; targets int64 or
// int32; loss_mask and grad_loss any float dtype (read as float32).
#pragma once

#include <utility>

#include "mcore/ops/cross_entropy.h"

namespace mcore::ops::cuda {

CrossEntropyForwardResult cross_entropy_forward(const Tensor& logits, const Tensor& target,
                                                const Tensor& loss_mask, int64_t ignore_index);
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                              const Tensor& logsumexp, const Tensor& loss_mask,
                              int64_t ignore_index);

// ---- vocab-parallel pieces: logits [..., Vl] hold global ids [vocab_start, vocab_start + Vl)
// of a vocabulary of `vocab`; targets are global ids in [0, vocab).

// Pass 1: per-row max of the shard, float32 [rows] (all-reduce max across the group next).
Tensor vocab_parallel_row_max(const Tensor& logits);
// Pass 2: per row [sum exp(x - row_max), target logit if this shard owns it else 0, sum of
// logits (with_logit_sum only)] as float32 [rows, 2 or 3] (all-reduce sum next).
Tensor vocab_parallel_row_stats(const Tensor& logits, const Tensor& target, const Tensor& row_max,
                                int64_t vocab_start, int64_t vocab, bool with_logit_sum);
// Passes 1 and 2 in one read for a single shard: (row max, stats).
std::pair<Tensor, Tensor> vocab_parallel_fused_row_stats(const Tensor& logits, const Tensor& target,
                                                         int64_t vocab_start, int64_t vocab,
                                                         bool with_logit_sum);
// loss and logsumexp [rows] from the reduced max and stats, with Megatron's label smoothing
// (`smoothing` = label_smoothing * V / (V - 1), 0 for none) and the optional loss mask.
CrossEntropyForwardResult vocab_parallel_finish(const Tensor& row_max, const Tensor& stats,
                                                const Tensor& loss_mask, int64_t vocab,
                                                double smoothing);
// d logits = g * mask * (softmax - (1 - smoothing) onehot - smoothing / vocab) on this shard.
Tensor vocab_parallel_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                               const Tensor& logsumexp, const Tensor& loss_mask,
                               int64_t vocab_start, int64_t vocab, double smoothing);

}  // namespace mcore::ops::cuda
