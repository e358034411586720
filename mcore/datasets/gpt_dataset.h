// Megatron-core's GPTDataset: fixed-length next-token samples cut from the documents of one
// split of an indexed dataset. The index construction is Megatron's exactly (document index =
// the split's documents tiled over epochs and shuffled with numpy's RandomState(seed), the last
// epoch shuffled separately when it is under 80% used; the sample index of helpers.cpp; the
// shuffled sample order), so sample i here is sample i of megatron-core for the same data,
// split, seed, sequence length and sample count. The three index arrays are cached as .npy
// files under Megatron's hash-based names and reused when valid, rebuilt when stale or corrupt.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcore/datasets/blended_megatron_dataset_config.h"
#include "mcore/datasets/low_level_dataset.h"
#include "mcore/datasets/py_json.h"
#include "mcore/tensor/tensor.h"

namespace mcore::datasets {

struct GPTDatasetConfig : BlendedMegatronDatasetConfig {
  bool reset_position_ids = false;
  bool reset_attention_mask = false;
  bool eod_mask_loss = false;
  bool create_attention_mask = true;
  bool drop_last_partial_validation_sequence = true;
  // Draw sequence_length + 1 tokens so that tokens and labels both have sequence_length.
  bool add_extra_token_to_sequence = true;
  // Tokenizer facts the samples need. pad_token_id: the tokenizer's pad id if it has one.
  int64_t eod_token_id = 0;
  std::optional<int64_t> pad_token_id;
  // The tokenizer's other special token ids (a pad id equal to one of these is not trusted).
  std::vector<int64_t> special_token_ids;
  int64_t vocab_size = 0;  // used by the mock dataset
};

// One training sample, as GPTDataset.__getitem__ returns it.
struct GPTSample {
  Tensor tokens;            // int64 [seq]
  Tensor labels;            // int64 [seq]
  Tensor loss_mask;         // float32 [seq]
  Tensor position_ids;      // int64 [seq]
  Tensor attention_mask;    // bool [1, seq, seq], true = masked; undefined unless requested
  int64_t dataset_id = -1;  // set by BlendedDataset
};

// What the builder and the data loader see: a sized, indexable source of samples.
class SampleDataset {
 public:
  virtual ~SampleDataset() = default;
  virtual int64_t size() const = 0;
  virtual GPTSample get(int64_t idx) const = 0;
  virtual Split split() const = 0;
  // Megatron's unique_identifiers (an ordered JSON object); part of enclosing cache hashes.
  virtual const PyJson& unique_identifiers() const = 0;
};

class GPTDataset : public SampleDataset {
 public:
  // `indices`: the document (sequence) ids of this split. `num_samples`: how many samples to
  // build at least (none: one epoch). `dataset_path` is recorded in the cache description.
  GPTDataset(std::shared_ptr<const LowLevelDataset> dataset,
             std::optional<std::string> dataset_path, std::vector<int32_t> indices,
             std::optional<int64_t> num_samples, Split split,
             std::shared_ptr<const GPTDatasetConfig> config);

  int64_t size() const override { return static_cast<int64_t>(sample_index_.size() / 2) - 1; }
  GPTSample get(int64_t idx) const override;
  // The batch-padding sample Megatron returns for idx None: sample 0 with a zero loss mask.
  GPTSample get_padding() const;
  Split split() const override { return split_; }
  const PyJson& unique_identifiers() const override { return unique_identifiers_; }

  // The raw sample: sequence_length + add_extra tokens (padded with the pad id) and the ids of
  // the documents it spans (Megatron's _query_document_sample_shuffle_indices).
  std::vector<int64_t> sample_tokens(int64_t idx,
                                     std::vector<int64_t>* document_ids = nullptr) const;

  const std::vector<int32_t>& document_index() const { return document_index_; }
  // [size() + 1, 2] flattened (document_index position, token offset).
  const std::vector<int64_t>& sample_index() const { return sample_index_; }
  const std::vector<int64_t>& shuffle_index() const { return shuffle_index_; }
  const std::string& unique_description() const { return unique_description_; }
  const std::string& unique_description_hash() const { return unique_description_hash_; }
  int64_t pad_token_id() const { return pad_token_id_; }
  // Whether the indices came from a valid cache rather than being built.
  bool loaded_from_cache() const { return loaded_from_cache_; }
  const GPTDatasetConfig& config() const { return *config_; }

 protected:
  GPTDataset(std::shared_ptr<const LowLevelDataset> dataset,
             std::optional<std::string> dataset_path, std::vector<int32_t> indices,
             std::optional<int64_t> num_samples, Split split,
             std::shared_ptr<const GPTDatasetConfig> config, std::string class_name);

 private:
  void init();
  void build_indices();
  bool try_load_cache(const std::string& base);
  int64_t num_tokens_per_epoch() const;
  int32_t num_epochs(int64_t tokens_per_epoch) const;
  GPTSample make_sample(int64_t idx, bool padding) const;

  std::shared_ptr<const LowLevelDataset> dataset_;
  std::optional<std::string> dataset_path_;
  std::vector<int32_t> indices_;
  std::optional<int64_t> num_samples_;
  Split split_;
  std::shared_ptr<const GPTDatasetConfig> config_;
  std::string class_name_;
  PyJson unique_identifiers_;
  std::string unique_description_, unique_description_hash_;
  int64_t pad_token_id_ = -1;
  bool loaded_from_cache_ = false;

  std::vector<int32_t> document_index_;
  std::vector<int64_t> sample_index_;
  std::vector<int64_t> shuffle_index_;
};

// The config entries Megatron's MegatronDataset puts in every description (shared with
// BlendedDataset's description of its parts).
PyJson split_matrix_json(const SplitMatrix& m);

// _get_ltor_masks_and_position_ids for one sequence: loss mask (float32), position ids (int64)
// and, when `create_attention_mask`, the [1, seq, seq] bool mask (true = masked).
void get_ltor_masks_and_position_ids(const int64_t* tokens, int64_t seq, int64_t eod_token,
                                     bool reset_position_ids, bool reset_attention_mask,
                                     bool eod_mask_loss, bool create_attention_mask,
                                     Tensor* attention_mask, Tensor* loss_mask,
                                     Tensor* position_ids);

}  // namespace mcore::datasets
