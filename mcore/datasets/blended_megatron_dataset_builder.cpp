#include "mcore/datasets/blended_megatron_dataset_builder.h"

#include <cmath>

#include "mcore/base/error.h"
#include "mcore/datasets/indexed_dataset.h"
#include "mcore/datasets/mock_gpt_dataset.h"

namespace mcore::datasets {

std::vector<std::array<int64_t, kNumSplits>> get_size_per_split_per_dataset(
    const std::vector<double>& normalized_weights,
    const std::array<std::optional<int64_t>, kNumSplits>& target_size_per_split, double surplus) {
  double total = 0;
  for (double w : normalized_weights) total += w;
  MCORE_CHECK(std::fabs(total - 1.0) <= 1e-8 + 1e-5)
      << "blend weights must be normalized (they sum to " << total << ")";
  std::vector<std::array<int64_t, kNumSplits>> out;
  for (double w : normalized_weights) {
    std::array<int64_t, kNumSplits> row{};
    for (int s = 0; s < kNumSplits; ++s) {
      MCORE_CHECK(target_size_per_split[s].has_value())
          << "weighted blends need a sample count for every split (the " << split_name(Split(s))
          << " split has none)";
      const double target = static_cast<double>(*target_size_per_split[s]);
      row[s] = static_cast<int64_t>(std::ceil(std::ceil(target * w) * (1 + surplus)));
    }
    out.push_back(row);
  }
  return out;
}

BlendedMegatronDatasetBuilder::BlendedMegatronDatasetBuilder(
    std::array<std::optional<int64_t>, kNumSplits> sizes, GPTDatasetConfig config)
    : sizes_(sizes), config_(std::make_shared<GPTDatasetConfig>(std::move(config))) {
  if (!config_->finalized()) config_->finalize();
  if (!config_->mock) {
    for (int s = 0; s < kNumSplits; ++s) {
      if (sizes_[s]) continue;
      bool weights_none;
      if (!config_->blend_per_split) {
        weights_none = !config_->blend->weights.has_value();
      } else {
        if (!(*config_->blend_per_split)[s]) continue;
        weights_none = !(*config_->blend_per_split)[s]->weights.has_value();
      }
      MCORE_CHECK(weights_none) << "the " << split_name(Split(s))
                                << " split has blend weights but no sample count; weighted "
                                   "blends need a size";
    }
  }
}

std::shared_ptr<const LowLevelDataset> BlendedMegatronDatasetBuilder::low_level(
    const std::optional<std::string>& prefix) {
  if (config_->mock)
    return std::make_shared<MockGPTLowLevelDataset>(config_->vocab_size, config_->eod_token_id);
  MCORE_CHECK(prefix.has_value()) << "dataset builder: no data path";
  return std::make_shared<IndexedDataset>(*prefix, false, config_->mmap_bin_files);
}

BlendedMegatronDatasetBuilder::MidLevel
BlendedMegatronDatasetBuilder::build_megatron_dataset_splits(
    const std::optional<std::string>& prefix, const SplitMatrix& split,
    const std::array<std::optional<int64_t>, kNumSplits>& sizes) {
  std::shared_ptr<const LowLevelDataset> ll = low_level(prefix);
  const double num_elements = static_cast<double>(ll->num_sequences());
  MidLevel out{};
  for (int s = 0; s < kNumSplits; ++s) {
    if (!split[s]) continue;
    // int(round(x)): Python rounds halves to even, as nearbyint does in the default mode.
    const int64_t beg = static_cast<int64_t>(std::nearbyint(split[s]->first * num_elements));
    const int64_t end = static_cast<int64_t>(std::nearbyint(split[s]->second * num_elements));
    std::vector<int32_t> indices;
    for (int64_t i = beg; i < end; ++i) indices.push_back(static_cast<int32_t>(i));
    if (config_->mock) {
      out[s] = std::make_shared<MockGPTDataset>(
          std::static_pointer_cast<const MockGPTLowLevelDataset>(ll), std::move(indices), sizes[s],
          Split(s), config_);
    } else {
      out[s] =
          std::make_shared<GPTDataset>(ll, prefix, std::move(indices), sizes[s], Split(s), config_);
    }
  }
  return out;
}

SplitDatasets BlendedMegatronDatasetBuilder::build_blends(
    const std::vector<std::string>& prefixes, const std::optional<std::vector<double>>& weights_in,
    const SplitMatrix& split, const std::array<std::optional<int64_t>, kNumSplits>& sizes) {
  std::optional<std::vector<double>> weights;
  if (weights_in) weights = normalize(*weights_in);
  std::vector<std::array<int64_t, kNumSplits>> target, buffer;
  if (weights) {
    target = get_size_per_split_per_dataset(*weights, sizes);
    buffer = get_size_per_split_per_dataset(*weights, sizes, config_->mid_level_dataset_surplus);
  }
  // Each prefix's mid-level datasets, all splits at once (as _build_megatron_datasets_parallel).
  std::vector<MidLevel> mids;
  for (size_t p = 0; p < prefixes.size(); ++p) {
    std::array<std::optional<int64_t>, kNumSplits> want{};
    if (weights)
      for (int k = 0; k < kNumSplits; ++k) want[k] = buffer[p][k];
    mids.push_back(build_megatron_dataset_splits(prefixes[p], split, want));
  }
  SplitDatasets out{};
  for (int s = 0; s < kNumSplits; ++s) {
    if (!split[s]) continue;
    std::vector<std::shared_ptr<const SampleDataset>> parts;
    for (const auto& m : mids) parts.push_back(m[s]);
    std::vector<double> w;
    std::optional<int64_t> size;
    bool counts = false;
    if (weights && sizes[s]) {
      w = *weights;
      int64_t total = 0;
      for (const auto& row : target) total += row[s];
      size = total;
    } else if (!weights) {
      // Blend by dataset size; the weights are the (integer) dataset lengths.
      int64_t total = 0;
      for (const auto& d : parts) {
        w.push_back(static_cast<double>(d->size()));
        total += d->size();
      }
      counts = true;
      if (sizes[s]) size = std::min(*sizes[s], total);
    } else {
      MCORE_FAIL() << "Using client-specified weights requires client-specified size";
    }
    out[s] =
        std::make_shared<BlendedDataset>(std::move(parts), std::move(w), size, config_, counts);
  }
  return out;
}

SplitDatasets BlendedMegatronDatasetBuilder::build() {
  SplitDatasets out{};
  if (config_->mock) {
    MidLevel mid = build_megatron_dataset_splits(std::nullopt, config_->split_matrix, sizes_);
    for (int s = 0; s < kNumSplits; ++s) out[s] = mid[s];
    return out;
  }
  if (config_->blend) {
    const Blend& blend = *config_->blend;
    const SplitMatrix& split = config_->split_matrix;
    if (blend.prefixes.size() == 1 && !blend.weights) {
      MidLevel mid = build_megatron_dataset_splits(blend.prefixes[0], split, sizes_);
      for (int s = 0; s < kNumSplits; ++s) out[s] = mid[s];
      return out;
    }
    return build_blends(blend.prefixes, blend.weights, split, sizes_);
  }
  for (int s = 0; s < kNumSplits; ++s) {
    const auto& blend = (*config_->blend_per_split)[s];
    if (!blend) continue;
    SplitMatrix spoof(kNumSplits);
    spoof[s] = std::make_pair(0.0, 1.0);
    std::array<std::optional<int64_t>, kNumSplits> sizes_spoof{0, 0, 0};
    sizes_spoof[s] = sizes_[s];
    if (blend->prefixes.size() == 1) {
      out[s] = build_megatron_dataset_splits(blend->prefixes[0], spoof, sizes_spoof)[s];
      continue;
    }
    out[s] = build_blends(blend->prefixes, blend->weights, spoof, sizes_spoof)[s];
  }
  return out;
}

}  // namespace mcore::datasets
