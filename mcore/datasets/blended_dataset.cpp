#include "mcore/datasets/blended_dataset.h"

#include <cmath>

#include "mcore/base/error.h"
#include "mcore/base/logging.h"
#include "mcore/datasets/helpers.h"
#include "mcore/datasets/index_cache.h"
#include "mcore/datasets/md5.h"

namespace mcore::datasets {

BlendedDataset::BlendedDataset(std::vector<std::shared_ptr<const SampleDataset>> datasets,
                               std::vector<double> weights, std::optional<int64_t> size,
                               std::shared_ptr<const BlendedMegatronDatasetConfig> config,
                               bool weights_are_counts)
    : datasets_(std::move(datasets)),
      weights_(std::move(weights)),
      size_(size),
      config_(std::move(config)) {
  MCORE_CHECK(!datasets_.empty()) << "BlendedDataset: no datasets to blend";
  MCORE_CHECK(datasets_.size() == weights_.size())
      << "BlendedDataset: " << datasets_.size() << " datasets but " << weights_.size()
      << " weights";
  MCORE_CHECK(datasets_.size() < 32767) << "BlendedDataset: at most 32766 datasets";
  split_ = datasets_[0]->split();
  for (const auto& d : datasets_)
    MCORE_CHECK(d->split() == split_) << "BlendedDataset: datasets of different splits";
  for (double w : weights_) MCORE_CHECK(w > 0) << "BlendedDataset: weight " << w << " is not > 0";
  if (!size_)
    for (double w : weights_)
      MCORE_CHECK(w == std::floor(w))
          << "BlendedDataset: without a size the weights are sample counts; got " << w;
  if (size_) {
    weights_ = normalize(weights_);
    weights_are_counts = false;
  }

  unique_identifiers_ = PyJson::object();
  unique_identifiers_.set("class", PyJson::string("BlendedDataset"));
  PyJson parts = PyJson::list();
  for (const auto& d : datasets_) parts.push(d->unique_identifiers());
  unique_identifiers_.set("datasets", parts);
  unique_identifiers_.set("split", PyJson::string(split_name(split_)));
  PyJson w = PyJson::list();
  for (double x : weights_)
    w.push(weights_are_counts ? PyJson::integer(static_cast<int64_t>(x)) : PyJson::real(x));
  unique_identifiers_.set("weights", w);
  unique_identifiers_.set("size", size_ ? PyJson::integer(*size_) : PyJson::null());
  unique_description_ = unique_identifiers_.dumps(4);
  unique_description_hash_ = md5_hex(unique_description_);

  std::string base;
  if (config_->path_to_cache) {
    base = *config_->path_to_cache + "/" + unique_description_hash_ + "-BlendedDataset-" +
           split_name(split_);
    if (try_load_cache(base)) {
      loaded_from_cache_ = true;
      return;
    }
  }
  if (size_) {
    build_blending_indices(weights_, *size_, &dataset_index_, &dataset_sample_index_);
  } else {
    std::vector<int64_t> counts;
    for (double x : weights_) counts.push_back(static_cast<int64_t>(x));
    build_exhaustive_blending_indices(counts, &dataset_index_, &dataset_sample_index_);
  }
  // The blend must not ask a dataset for more samples than it has.
  std::vector<int64_t> used(datasets_.size(), 0);
  for (int16_t d : dataset_index_) ++used[static_cast<size_t>(d)];
  for (size_t d = 0; d < datasets_.size(); ++d)
    MCORE_CHECK(used[d] <= datasets_[d]->size())
        << "The " << split_name(split_) << " blend oversamples the contributing datasets and, "
        << "for example, requests " << used[d] << " samples from dataset number " << d
        << " in excess of its size " << datasets_[d]->size()
        << ". Increase --mid-level-dataset-surplus (mid_level_dataset_surplus, currently "
        << config_->mid_level_dataset_surplus << "), e.g. two- or ten-fold.";
  if (config_->path_to_cache) {
    make_dirs(*config_->path_to_cache);
    const int64_t n = static_cast<int64_t>(dataset_index_.size());
    save_index_npy(base + "-dataset_index.npy", "<i2", {n},
                   std::vector<int64_t>(dataset_index_.begin(), dataset_index_.end()));
    save_index_npy(base + "-dataset_sample_index.npy", "<i8", {n}, dataset_sample_index_);
    write_text_atomic(base + "-description.txt", unique_description_);
  }
}

bool BlendedDataset::try_load_cache(const std::string& base) {
  const std::string desc_path = base + "-description.txt";
  const std::string di_path = base + "-dataset_index.npy";
  const std::string dsi_path = base + "-dataset_sample_index.npy";
  if (!file_exists(desc_path) || !file_exists(di_path) || !file_exists(dsi_path)) return false;
  try {
    std::string desc;
    MCORE_CHECK(read_text(desc_path, &desc) && desc == unique_description_)
        << "description differs from this dataset's";
    IndexArray di = load_index_npy(di_path);
    IndexArray dsi = load_index_npy(dsi_path);
    int64_t expect = -1;
    if (size_) {
      expect = *size_;
    } else {
      expect = 0;
      for (double x : weights_) expect += static_cast<int64_t>(x);
    }
    MCORE_CHECK(di.descr == "<i2" && di.shape.size() == 1 && di.shape[0] == expect)
        << "dataset index is not int16 [" << expect << "]";
    MCORE_CHECK(dsi.descr == "<i8" && dsi.shape.size() == 1 && dsi.shape[0] == expect)
        << "dataset sample index is not int64 [" << expect << "]";
    for (int64_t i = 0; i < expect; ++i) {
      const int64_t d = di.values[i];
      MCORE_CHECK(d >= 0 && d < static_cast<int64_t>(datasets_.size()) && dsi.values[i] >= 0 &&
                  dsi.values[i] < datasets_[d]->size())
          << "entry " << i << " is out of range";
    }
    dataset_index_.assign(di.values.begin(), di.values.end());
    dataset_sample_index_ = std::move(dsi.values);
    return true;
  } catch (const Error& e) {
    MCORE_LOG(WARNING) << "BlendedDataset index cache '" << base
                       << "-*' is stale or corrupt, rebuilding it: " << e.message();
    return false;
  }
}

GPTSample BlendedDataset::get(int64_t idx) const {
  MCORE_CHECK(idx >= 0 && idx < size()) << "BlendedDataset " << split_name(split_) << ": sample "
                                        << idx << " out of range [0, " << size() << ")";
  const int16_t d = dataset_index_[static_cast<size_t>(idx)];
  GPTSample s =
      datasets_[static_cast<size_t>(d)]->get(dataset_sample_index_[static_cast<size_t>(idx)]);
  s.dataset_id = d;
  return s;
}

}  // namespace mcore::datasets
