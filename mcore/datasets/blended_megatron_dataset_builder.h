// Megatron's BlendedMegatronDatasetBuilder: turns a GPTDatasetConfig (blend or per-split
// blends, --split, or mock) and the sample count wanted per split into the train/valid/test
// datasets, following megatron-core case by case: one prefix gives a GPTDataset per split;
// several (or a weighted single one) give GPTDatasets asked for
// ceil(ceil(size * weight) * (1 + surplus)) samples each under a BlendedDataset of
// sum(ceil(size * weight)) samples; no weights blend by dataset size.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcore/datasets/blended_dataset.h"
#include "mcore/datasets/gpt_dataset.h"
#include "mcore/datasets/low_level_dataset.h"

namespace mcore::datasets {

using SplitDatasets = std::array<std::shared_ptr<const SampleDataset>, kNumSplits>;

class BlendedMegatronDatasetBuilder {
 public:
  // `sizes`: samples wanted for train, valid, test (none: one epoch / exhaustive).
  BlendedMegatronDatasetBuilder(std::array<std::optional<int64_t>, kNumSplits> sizes,
                                GPTDatasetConfig config);

  // The dataset of each split, or null where the split is empty (no bookend / no blend).
  SplitDatasets build();

  const GPTDatasetConfig& config() const { return *config_; }

 private:
  using MidLevel = std::array<std::shared_ptr<const GPTDataset>, kNumSplits>;
  MidLevel build_megatron_dataset_splits(
      const std::optional<std::string>& prefix, const SplitMatrix& split,
      const std::array<std::optional<int64_t>, kNumSplits>& sizes);
  std::shared_ptr<const LowLevelDataset> low_level(const std::optional<std::string>& prefix);
  SplitDatasets build_blends(const std::vector<std::string>& prefixes,
                             const std::optional<std::vector<double>>& weights,
                             const SplitMatrix& split,
                             const std::array<std::optional<int64_t>, kNumSplits>& sizes);

  std::array<std::optional<int64_t>, kNumSplits> sizes_;
  std::shared_ptr<GPTDatasetConfig> config_;
};

// _get_size_per_split_per_dataset: [dataset][split] sample counts
// int(ceil(ceil(target * weight) * (1 + surplus))).
std::vector<std::array<int64_t, kNumSplits>> get_size_per_split_per_dataset(
    const std::vector<double>& normalized_weights,
    const std::array<std::optional<int64_t>, kNumSplits>& target_size_per_split,
    double surplus = 0.0);

}  // namespace mcore::datasets
