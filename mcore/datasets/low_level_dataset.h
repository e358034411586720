// The interface GPTDataset draws tokens from: Megatron's "low level dataset" (an
// IndexedDataset on disk, or the mock generator). It exposes the sequence lengths, which the
// index construction needs in full, and reads a token range of one sequence widened to int64.
#pragma once

#include <cstdint>
#include <string>

namespace mcore::datasets {

class LowLevelDataset {
 public:
  virtual ~LowLevelDataset() = default;
  virtual int64_t num_sequences() const = 0;
  // num_sequences() lengths, in tokens.
  virtual const int32_t* sequence_lengths() const = 0;
  // Tokens [offset, offset + length) of sequence `idx`, converted to int64, into `out`.
  virtual void read_tokens(int64_t idx, int64_t offset, int64_t length, int64_t* out) const = 0;
  // The on-disk prefix; empty for generated data. Used for the default cache folder.
  virtual std::string path_prefix() const { return {}; }
};

}  // namespace mcore::datasets
