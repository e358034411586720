#include "mcore/datasets/helpers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "mcore/base/error.h"

namespace mcore::datasets {

std::vector<int64_t> build_sample_idx(const int32_t* sizes,
                                      const std::vector<int32_t>& document_idx, int32_t seq_length,
                                      int32_t num_epochs, int64_t tokens_per_epoch,
                                      bool drop_last_partial_sequence,
                                      int add_extra_token_to_sequence) {
  MCORE_CHECK(seq_length > 1) << "build_sample_idx: sequence length must be > 1, got "
                              << seq_length;
  MCORE_CHECK(num_epochs > 0) << "build_sample_idx: num_epochs must be > 0";
  int64_t num_samples;
  const int64_t total =
      static_cast<int64_t>(num_epochs) * tokens_per_epoch - add_extra_token_to_sequence;
  if (drop_last_partial_sequence) {
    num_samples = total / seq_length;  // C++ truncation, as in helpers.cpp
  } else {
    // helpers.cpp divides in single precision: ceil(float(x) / seq_length).
    num_samples =
        static_cast<int64_t>(std::ceil(static_cast<float>(total) / static_cast<float>(seq_length)));
  }
  if (num_samples < 0) num_samples = 0;
  std::vector<int64_t> sample_idx(2 * static_cast<size_t>(num_samples + 1));
  int64_t sample_idx_index = 0;
  int64_t document_idx_index = 0;
  int64_t doc_offset = 0;
  sample_idx[0] = 0;
  sample_idx[1] = 0;
  ++sample_idx_index;
  const int64_t n_docs = static_cast<int64_t>(document_idx.size());
  while (sample_idx_index <= num_samples) {
    int64_t remaining_seq_length = seq_length + add_extra_token_to_sequence;
    while (remaining_seq_length != 0) {
      MCORE_CHECK(document_idx_index < n_docs)
          << "build_sample_idx: ran past the document index (" << n_docs
          << " entries) building sample " << sample_idx_index << " of " << num_samples;
      const int64_t document_index = document_idx[document_idx_index];
      const int64_t document_length = sizes[document_index] - doc_offset;
      remaining_seq_length -= document_length;
      if (remaining_seq_length <= 0) {
        doc_offset += (remaining_seq_length + document_length - add_extra_token_to_sequence);
        remaining_seq_length = 0;
      } else {
        if (document_idx_index == n_docs - 1) {
          // The last (partial) sample runs to the end of the last document.
          doc_offset = sizes[document_idx[document_idx_index]] - add_extra_token_to_sequence;
          break;
        }
        ++document_idx_index;
        doc_offset = 0;
      }
    }
    sample_idx[2 * sample_idx_index] = document_idx_index;
    sample_idx[2 * sample_idx_index + 1] = doc_offset;
    ++sample_idx_index;
  }
  return sample_idx;
}

void build_blending_indices(const std::vector<double>& weights, int64_t size,
                            std::vector<int16_t>* dataset_index,
                            std::vector<int64_t>* dataset_sample_index) {
  const size_t num_datasets = weights.size();
  MCORE_CHECK(num_datasets > 0) << "build_blending_indices: no datasets";
  dataset_index->assign(static_cast<size_t>(size), 0);
  dataset_sample_index->assign(static_cast<size_t>(size), 0);
  std::vector<int64_t> current(num_datasets, 0);
  for (int64_t sample_idx = 0; sample_idx < size; ++sample_idx) {
    const double sample_idx_double = std::max(static_cast<double>(sample_idx), 1.0);
    size_t max_error_index = 0;
    double max_error = weights[0] * sample_idx_double - static_cast<double>(current[0]);
    for (size_t d = 1; d < num_datasets; ++d) {
      const double error = weights[d] * sample_idx_double - static_cast<double>(current[d]);
      if (error > max_error) {
        max_error = error;
        max_error_index = d;
      }
    }
    (*dataset_index)[sample_idx] = static_cast<int16_t>(max_error_index);
    (*dataset_sample_index)[sample_idx] = current[max_error_index];
    current[max_error_index] += 1;
  }
}

void build_exhaustive_blending_indices(const std::vector<int64_t>& sizes,
                                       std::vector<int16_t>* dataset_index,
                                       std::vector<int64_t>* dataset_sample_index) {
  const int32_t num_datasets = static_cast<int32_t>(sizes.size());
  int64_t total_size = 0;
  std::vector<int64_t> counts(sizes.size(), 0);
  std::set<int32_t> unspent;
  for (int32_t i = 0; i < num_datasets; ++i) {
    total_size += sizes[i];
    unspent.insert(i);
  }
  dataset_index->assign(static_cast<size_t>(total_size), 0);
  dataset_sample_index->assign(static_cast<size_t>(total_size), 0);
  std::vector<double> weights(sizes.size());
  for (int32_t i = 0; i < num_datasets; ++i)
    weights[i] = static_cast<double>(sizes[i]) / static_cast<double>(total_size);
  // Datasets asked for zero samples are never picked (helpers.cpp would loop past the end).
  for (int32_t i = 0; i < num_datasets; ++i)
    if (sizes[i] == 0) unspent.erase(i);
  int64_t index_sample = 0;
  while (!unspent.empty()) {
    const double index_sample_double = std::max(static_cast<double>(index_sample), 1.0);
    int64_t error_argmax = -1;
    double error_max = std::numeric_limits<double>::lowest();
    for (int32_t d : unspent) {
      const double error = weights[d] * index_sample_double - static_cast<double>(counts[d]);
      if (error > error_max) {
        error_argmax = d;
        error_max = error;
      }
    }
    (*dataset_index)[index_sample] = static_cast<int16_t>(error_argmax);
    (*dataset_sample_index)[index_sample] = counts[error_argmax];
    counts[error_argmax] += 1;
    if (sizes[error_argmax] - static_cast<double>(counts[error_argmax]) == 0)
      unspent.erase(error_argmax);
    ++index_sample;
  }
}

}  // namespace mcore::datasets
