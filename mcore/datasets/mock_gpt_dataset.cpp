#include "mcore/datasets/mock_gpt_dataset.h"

#include "mcore/base/error.h"
#include "mcore/datasets/numpy_random.h"

namespace mcore::datasets {

MockGPTLowLevelDataset::MockGPTLowLevelDataset(int64_t vocab_size, int64_t eod_token)
    : vocab_size_(vocab_size), eod_(eod_token) {
  MCORE_CHECK(vocab_size > 0) << "MockGPTLowLevelDataset: vocab_size must be positive (set it in "
                                 "the GPTDatasetConfig from the tokenizer)";
  NumpyGenerator rng(kSeed);
  lengths_ = rng.integers_int32(1, kMaxSequenceLength, kSize);
}

void MockGPTLowLevelDataset::read_tokens(int64_t idx, int64_t offset, int64_t length,
                                         int64_t* out) const {
  MCORE_CHECK(idx >= 0 && idx < kSize) << "mock dataset: sequence " << idx << " out of range";
  const int64_t len = lengths_[idx];
  MCORE_CHECK(offset >= 0 && length >= 0 && offset + length <= len)
      << "mock dataset: tokens [" << offset << ", " << offset + length
      << ") out of range for sequence " << idx << " of length " << len;
  // Sequence = (arange(len - 1) + 1) % vocab_size, then EOD.
  for (int64_t i = 0; i < length; ++i) {
    const int64_t p = offset + i;
    out[i] = p == len - 1 ? eod_ : (p + 1) % vocab_size_;
  }
}

MockGPTDataset::MockGPTDataset(std::shared_ptr<const MockGPTLowLevelDataset> dataset,
                               std::vector<int32_t> indices, std::optional<int64_t> num_samples,
                               Split split, std::shared_ptr<const GPTDatasetConfig> config)
    : GPTDataset(std::move(dataset), std::nullopt, std::move(indices), num_samples, split,
                 std::move(config), "MockGPTDataset") {
  MCORE_CHECK(this->config().mock) << "MockGPTDataset needs a config without data paths (mock)";
}

}  // namespace mcore::datasets
