// Megatron's BlendedDataset: interleaves several datasets of one split by weight. Sample i
// comes from dataset dataset_index[i], as that dataset's sample dataset_sample_index[i]; the
// two arrays are built like helpers.cpp's build_blending_indices (or the exhaustive variant when
// no size is given) and cached as .npy files under Megatron's hash-based names.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcore/datasets/gpt_dataset.h"

namespace mcore::datasets {

class BlendedDataset : public SampleDataset {
 public:
  // `weights`: relative weights (normalized here when `size` is given); with no `size`, whole
  // numbers giving exactly how many samples to take from each dataset. `weights_are_counts`
  // records that the weights were integers in Python (they print without ".0" in the hash).
  BlendedDataset(std::vector<std::shared_ptr<const SampleDataset>> datasets,
                 std::vector<double> weights, std::optional<int64_t> size,
                 std::shared_ptr<const BlendedMegatronDatasetConfig> config,
                 bool weights_are_counts = false);

  int64_t size() const override { return static_cast<int64_t>(dataset_index_.size()); }
  GPTSample get(int64_t idx) const override;
  Split split() const override { return split_; }
  const PyJson& unique_identifiers() const override { return unique_identifiers_; }

  const std::vector<int16_t>& dataset_index() const { return dataset_index_; }
  const std::vector<int64_t>& dataset_sample_index() const { return dataset_sample_index_; }
  const std::vector<double>& weights() const { return weights_; }
  const std::string& unique_description() const { return unique_description_; }
  const std::string& unique_description_hash() const { return unique_description_hash_; }
  bool loaded_from_cache() const { return loaded_from_cache_; }

 private:
  bool try_load_cache(const std::string& base);

  std::vector<std::shared_ptr<const SampleDataset>> datasets_;
  std::vector<double> weights_;
  std::optional<int64_t> size_;
  std::shared_ptr<const BlendedMegatronDatasetConfig> config_;
  Split split_;
  PyJson unique_identifiers_;
  std::string unique_description_, unique_description_hash_;
  bool loaded_from_cache_ = false;
  std::vector<int16_t> dataset_index_;
  std::vector<int64_t> dataset_sample_index_;
};

}  // namespace mcore::datasets
