// Context parallelism (Megatron's --context-parallel-size): every sample's sequence is cut into
// 2 * cp chunks, and rank r of the context-parallel group holds chunks r and 2cp-1-r, in that
// order (Megatron's get_batch_on_this_cp_rank). Pairing an early chunk with a late one gives
// every rank the same share of causal attention work. Everything but attention works per
// token and needs no communication. Attention all-gathers the keys and values over the group
// (Megatron's cp_comm_type "allgather"), and each local query chunk attends to the prefix of
// the keys that its causal mask admits. Dropout masks stay keyed by the global element index,
// so a run gives the same losses under any context-parallel size.
#pragma once

#include <cstdint>

#include "mcore/comm/process_group.h"
#include "mcore/tensor/tensor.h"

namespace mcore::transformer {

struct ContextParallelLayout {
  int size = 1;
  int rank = 0;
  comm::ProcessGroupPtr group;  // null when size == 1

  // The global chunk index (of 2 * size) of this rank's local chunk j (0 or 1).
  int64_t global_chunk(int j) const { return j == 0 ? rank : 2 * size - 1 - rank; }
  // The global position of row i of this rank's local sequence of `local_len` rows.
  int64_t global_row(int64_t i, int64_t local_len) const;
};

// The layout for `context_parallel_size` ranks: parallel_state's context-parallel group when it
// is larger than 1 (its size must match), otherwise size 1.
ContextParallelLayout context_parallel_layout(int64_t context_parallel_size);

// This rank's chunks of `t` along `dim` (its length a multiple of 2 * size), as one contiguous
// tensor. Not differentiable: for batches and position tables.
Tensor slice_for_context_parallel_rank(const Tensor& t, int64_t dim,
                                       const ContextParallelLayout& cp);

// Every rank's [s_local, ...] gathered into the whole sequence [size * s_local, ...] in sequence
// order. Backward: the gradient of the whole sequence summed over the group, this rank's chunks
// kept (a reduce-scatter).
Tensor gather_sequence_from_context_parallel_region(const Tensor& x,
                                                    const ContextParallelLayout& cp);

// Dropout of an activation [rows, ...] holding rows [first_row, first_row + rows) of this rank's
// local sequence of `local_len` rows (under sequence parallelism, a tensor-parallel rank holds
// only such a slice): each element keyed by its index in the global [s, ...] tensor.
Tensor sequence_dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream,
                        int64_t first_row, int64_t local_len, const ContextParallelLayout& cp);

}  // namespace mcore::transformer
