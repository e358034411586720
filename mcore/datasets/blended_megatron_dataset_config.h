// Megatron's BlendedMegatronDatasetConfig: which data (a blend of dataset prefixes with
// weights, one per split or shared with a --split string), the sequence length and seed, and
// where index caches live. finalize() does what the Python __post_init__ does (mock detection,
// split parsing into the split matrix), with the same floating-point arithmetic, because the
// split bookends decide which documents each split gets and also enter the cache hash.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mcore/datasets/py_json.h"

namespace mcore::datasets {

enum class Split { kTrain = 0, kValid = 1, kTest = 2 };
constexpr int kNumSplits = 3;
const char* split_name(Split s);  // "train", "valid", "test"

// A blend: dataset prefixes and optional weights (None: weigh by dataset size).
struct Blend {
  std::vector<std::string> prefixes;
  std::optional<std::vector<double>> weights;
};

// Per split, the [begin, end) fraction of the documents, or none for an empty split.
using SplitMatrix = std::vector<std::optional<std::pair<double, double>>>;

// numpy.sum of a float64 array (pairwise summation, bit-identical to numpy).
double numpy_sum(const std::vector<double>& v);
// Megatron's utils.normalize: w / numpy.sum(w). Negative, non-finite or all-zero weights are an
// error (Megatron would divide by zero).
std::vector<double> normalize(const std::vector<double>& weights);
// parse_and_normalize_split("969,30,1") -> [0.969, 0.03, 0.001].
std::vector<double> parse_and_normalize_split(const std::string& split);
// convert_split_vector_to_split_matrix (the optional second vector constrains the first).
SplitMatrix convert_split_vector_to_split_matrix(
    const std::vector<double>& a, const std::optional<std::vector<double>>& b = std::nullopt);
// get_blend_from_list: ["30", "p1", "70", "p2"] or ["p1", "p2"] (the --data-path syntax).
std::optional<Blend> get_blend_from_list(const std::vector<std::string>& blend);

struct BlendedMegatronDatasetConfig {
  uint32_t random_seed = 1234;
  int64_t sequence_length = 0;
  std::optional<Blend> blend;
  // train, valid, test; not together with `blend`.
  std::optional<std::array<std::optional<Blend>, kNumSplits>> blend_per_split;
  std::optional<std::string> split;  // e.g. "969,30,1"; required with `blend`
  std::optional<std::string> path_to_cache;
  bool mmap_bin_files = true;
  double mid_level_dataset_surplus = 0.005;
  bool allow_ambiguous_pad_tokens = false;
  // The tokenizer's Megatron `unique_identifiers` (an ordered JSON object); it is part of the
  // cache hash, so give what Megatron's tokenizer reports to share caches with Megatron-LM.
  PyJson tokenizer_identifiers;

  // Set by finalize().
  SplitMatrix split_matrix;
  bool mock = false;

  // __post_init__: checks, mock detection (no blend at all), split matrix.
  void finalize();
  bool finalized() const { return finalized_; }

 private:
  bool finalized_ = false;
};

}  // namespace mcore::datasets
