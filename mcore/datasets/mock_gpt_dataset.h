// Megatron's MockGPTDataset: a GPTDataset over generated documents, for runs without data
// (--mock-data). Document i has a length drawn once from numpy.random.default_rng(0) in
// [1, 4096) and holds the tokens 1, 2, ... (mod vocab size) ending with the EOD token, so the
// samples equal megatron-core's mock samples for the same config.
#pragma once

#include <memory>
#include <vector>

#include "mcore/datasets/gpt_dataset.h"

namespace mcore::datasets {

class MockGPTLowLevelDataset : public LowLevelDataset {
 public:
  static constexpr uint64_t kSeed = 0;
  static constexpr int64_t kSize = 100000;
  static constexpr int32_t kMaxSequenceLength = 4096;

  MockGPTLowLevelDataset(int64_t vocab_size, int64_t eod_token);
  int64_t num_sequences() const override { return kSize; }
  const int32_t* sequence_lengths() const override { return lengths_.data(); }
  void read_tokens(int64_t idx, int64_t offset, int64_t length, int64_t* out) const override;

 private:
  int64_t vocab_size_, eod_;
  std::vector<int32_t> lengths_;
};

class MockGPTDataset : public GPTDataset {
 public:
  MockGPTDataset(std::shared_ptr<const MockGPTLowLevelDataset> dataset,
                 std::vector<int32_t> indices, std::optional<int64_t> num_samples, Split split,
                 std::shared_ptr<const GPTDatasetConfig> config);
};

}  // namespace mcore::datasets
