// The index builders of Megatron's datasets/helpers.cpp, reimplemented: the GPT sample index
// (where each sample starts in the shuffled document order) and the blending indices (which
// dataset, and which of its samples, each blended sample comes from). Integer and float
// arithmetic follows the original step for step, since any difference moves sample boundaries.
#pragma once

#include <cstdint>
#include <vector>

namespace mcore::datasets {

// build_sample_idx: [num_samples + 1, 2] rows of (index into document_index, token offset),
// flattened. `sizes` are the sequence lengths of the whole low-level dataset.
std::vector<int64_t> build_sample_idx(const int32_t* sizes,
                                      const std::vector<int32_t>& document_index,
                                      int32_t seq_length, int32_t num_epochs,
                                      int64_t tokens_per_epoch, bool drop_last_partial_sequence,
                                      int add_extra_token_to_sequence);

// build_blending_indices: for each sample pick the dataset whose achieved share lags its weight
// most (first one on ties).
void build_blending_indices(const std::vector<double>& weights, int64_t size,
                            std::vector<int16_t>* dataset_index,
                            std::vector<int64_t>* dataset_sample_index);

// build_exhaustive_blending_indices: take exactly sizes[i] samples from dataset i.
void build_exhaustive_blending_indices(const std::vector<int64_t>& sizes,
                                       std::vector<int16_t>* dataset_index,
                                       std::vector<int64_t>* dataset_sample_index);

}  // namespace mcore::datasets
