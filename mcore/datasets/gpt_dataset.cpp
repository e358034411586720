#include "mcore/datasets/gpt_dataset.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "mcore/base/error.h"
#include "mcore/base/logging.h"
#include "mcore/datasets/helpers.h"
#include "mcore/datasets/index_cache.h"
#include "mcore/datasets/md5.h"
#include "mcore/datasets/numpy_random.h"
#include "mcore/tensor/factory.h"

namespace mcore::datasets {

namespace {

// _build_document_index: the documents tiled num_epochs times and shuffled; with
// separate_final_epoch the last epoch is shuffled on its own after the others.
std::vector<int32_t> build_document_index(const std::vector<int32_t>& documents, int32_t num_epochs,
                                          NumpyRandomState& rng, bool separate_final_epoch) {
  if (!separate_final_epoch || num_epochs == 1) {
    std::vector<int32_t> out;
    out.reserve(documents.size() * static_cast<size_t>(num_epochs));
    for (int32_t e = 0; e < num_epochs; ++e)
      out.insert(out.end(), documents.begin(), documents.end());
    rng.shuffle(out);
    return out;
  }
  std::vector<int32_t> first = build_document_index(documents, num_epochs - 1, rng, false);
  std::vector<int32_t> last = build_document_index(documents, 1, rng, false);
  first.insert(first.end(), last.begin(), last.end());
  return first;
}

// _build_shuffle_index: arange(num_samples) shuffled, then arange(num_samples, total) shuffled.
std::vector<int64_t> build_shuffle_index(int64_t num_samples, int64_t total_size,
                                         NumpyRandomState& rng) {
  std::vector<int64_t> out(static_cast<size_t>(total_size));
  std::iota(out.begin(), out.end(), int64_t{0});
  rng.shuffle(out.data(), num_samples);
  if (num_samples != total_size) rng.shuffle(out.data() + num_samples, total_size - num_samples);
  return out;
}

// numpy uses uint32 for the shuffle index unless the sample count approaches 2^32.
std::string shuffle_descr(int64_t total_size) {
  return total_size >= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) - 1 ? "<i8"
                                                                                      : "<u4";
}

}  // namespace

PyJson split_matrix_json(const SplitMatrix& m) {
  if (m.empty()) return PyJson::null();
  PyJson list = PyJson::list();
  for (size_t i = 0; i < m.size(); ++i) {
    if (!m[i]) {
      list.push(PyJson::null());
      continue;
    }
    // Python's bookends start from the int 0 (reduce over [[0], ...]), so the first lower
    // bound prints as "0", every other bound as a float.
    PyJson lo = (i == 0 && m[i]->first == 0.0) ? PyJson::integer(0) : PyJson::real(m[i]->first);
    list.push(PyJson::list({lo, PyJson::real(m[i]->second)}));
  }
  return list;
}

GPTDataset::GPTDataset(std::shared_ptr<const LowLevelDataset> dataset,
                       std::optional<std::string> dataset_path, std::vector<int32_t> indices,
                       std::optional<int64_t> num_samples, Split split,
                       std::shared_ptr<const GPTDatasetConfig> config)
    : GPTDataset(std::move(dataset), std::move(dataset_path), std::move(indices), num_samples,
                 split, std::move(config), "GPTDataset") {}

GPTDataset::GPTDataset(std::shared_ptr<const LowLevelDataset> dataset,
                       std::optional<std::string> dataset_path, std::vector<int32_t> indices,
                       std::optional<int64_t> num_samples, Split split,
                       std::shared_ptr<const GPTDatasetConfig> config, std::string class_name)
    : dataset_(std::move(dataset)),
      dataset_path_(std::move(dataset_path)),
      indices_(std::move(indices)),
      num_samples_(num_samples),
      split_(split),
      config_(std::move(config)),
      class_name_(std::move(class_name)) {
  init();
}

void GPTDataset::init() {
  MCORE_CHECK(dataset_ && config_) << class_name_ << ": dataset and config are required";
  MCORE_CHECK(config_->finalized())
      << class_name_ << ": call config.finalize() before building datasets";
  MCORE_CHECK(config_->sequence_length > 1 &&
              config_->sequence_length <= std::numeric_limits<int32_t>::max())
      << class_name_ << ": sequence_length must be in [2, 2^31), got " << config_->sequence_length;
  MCORE_CHECK(!num_samples_ || *num_samples_ >= 0)
      << class_name_ << ": negative num_samples " << *num_samples_;
  const int64_t n_seq = dataset_->num_sequences();
  for (int32_t i : indices_)
    MCORE_CHECK(i >= 0 && i < n_seq) << class_name_ << ": document id " << i
                                     << " out of range for a dataset of " << n_seq << " sequences";

  // MegatronDataset.__init__: the description that names the caches.
  unique_identifiers_ = PyJson::object();
  unique_identifiers_.set("class", PyJson::string(class_name_));
  unique_identifiers_.set("dataset_path",
                          dataset_path_ ? PyJson::string(*dataset_path_) : PyJson::null());
  unique_identifiers_.set("num_samples",
                          num_samples_ ? PyJson::integer(*num_samples_) : PyJson::null());
  unique_identifiers_.set("index_split", PyJson::string(split_name(split_)));
  unique_identifiers_.set("random_seed", PyJson::integer(config_->random_seed));
  unique_identifiers_.set("sequence_length", PyJson::integer(config_->sequence_length));
  unique_identifiers_.set("split",
                          config_->split ? PyJson::string(*config_->split) : PyJson::null());
  unique_identifiers_.set("split_matrix", split_matrix_json(config_->split_matrix));
  unique_identifiers_.set("tokenizer", config_->tokenizer_identifiers);
  unique_description_ = unique_identifiers_.dumps(4);
  unique_description_hash_ = md5_hex(unique_description_);

  // The pad id, unless it collides with another special token (then -1, which no data holds).
  pad_token_id_ = config_->pad_token_id.value_or(-1);
  std::vector<int64_t> specials = config_->special_token_ids;
  if (specials.empty()) specials.push_back(config_->eod_token_id);
  if (config_->pad_token_id &&
      std::find(specials.begin(), specials.end(), pad_token_id_) != specials.end()) {
    if (config_->allow_ambiguous_pad_tokens) {
      MCORE_LOG(WARNING) << "the pad token id " << pad_token_id_
                         << " collides with another special token; pad tokens in the data will "
                            "be masked out of the loss";
    } else {
      MCORE_LOG(WARNING) << "the pad token id " << pad_token_id_
                         << " collides with another special token; not masking pad tokens";
      pad_token_id_ = -1;
    }
  }
  build_indices();
}

int64_t GPTDataset::num_tokens_per_epoch() const {
  const int32_t* lengths = dataset_->sequence_lengths();
  int64_t total = 0;
  for (int32_t i : indices_) total += lengths[i];
  return total;
}

int32_t GPTDataset::num_epochs(int64_t tokens_per_epoch) const {
  if (!num_samples_) return 1;
  const int64_t requested =
      *num_samples_ * config_->sequence_length + (config_->add_extra_token_to_sequence ? 1 : 0);
  // An empty split asked for no samples is an empty dataset (megatron-core would loop forever).
  if (tokens_per_epoch >= requested || (tokens_per_epoch == 0 && *num_samples_ == 0)) return 1;
  MCORE_CHECK(tokens_per_epoch > 0)
      << class_name_ << " " << split_name(split_) << " split of '"
      << dataset_path_.value_or("<mock>") << "' has no tokens but " << *num_samples_
      << " samples were requested (the --split gives this split no documents; change --split or "
         "the sample counts)";
  const int64_t epochs = (requested + tokens_per_epoch - 1) / tokens_per_epoch;
  MCORE_CHECK(epochs <= std::numeric_limits<int32_t>::max())
      << class_name_ << ": " << epochs << " epochs needed, more than the index supports";
  return static_cast<int32_t>(epochs);
}

bool GPTDataset::try_load_cache(const std::string& base) {
  const std::string desc_path = base + "-description.txt";
  const std::string doc_path = base + "-document_index.npy";
  const std::string sample_path = base + "-sample_index.npy";
  const std::string shuffle_path = base + "-shuffle_index.npy";
  if (!file_exists(desc_path) || !file_exists(doc_path) || !file_exists(sample_path) ||
      !file_exists(shuffle_path))
    return false;
  try {
    std::string desc;
    MCORE_CHECK(read_text(desc_path, &desc) && desc == unique_description_)
        << "description differs from this dataset's";
    const int64_t tokens_per_epoch = num_tokens_per_epoch();
    const int32_t epochs = num_epochs(tokens_per_epoch);
    const int extra = config_->add_extra_token_to_sequence ? 1 : 0;
    const bool drop_last =
        split_ != Split::kValid || config_->drop_last_partial_validation_sequence;
    const int64_t total = static_cast<int64_t>(epochs) * tokens_per_epoch - extra;
    int64_t expect_samples =
        drop_last ? total / config_->sequence_length
                  : static_cast<int64_t>(std::ceil(static_cast<float>(total) /
                                                   static_cast<float>(config_->sequence_length)));
    if (expect_samples < 0) expect_samples = 0;

    IndexArray doc = load_index_npy(doc_path);
    const int64_t expect_docs =
        static_cast<int64_t>(epochs) * static_cast<int64_t>(indices_.size());
    MCORE_CHECK(doc.descr == "<i4" && doc.shape.size() == 1 && doc.shape[0] == expect_docs)
        << "document index is not int32 [" << expect_docs << "] (the data changed?)";
    const int64_t n_seq = dataset_->num_sequences();
    for (int64_t v : doc.values) MCORE_CHECK(v >= 0 && v < n_seq) << "document index out of range";

    IndexArray sample = load_index_npy(sample_path);
    MCORE_CHECK((sample.descr == "<i4" || sample.descr == "<i8") && sample.shape.size() == 2 &&
                sample.shape[0] == expect_samples + 1 && sample.shape[1] == 2)
        << "sample index is not [" << expect_samples + 1 << ", 2] (the data changed?)";
    for (int64_t r = 0; r < sample.shape[0]; ++r) {
      const int64_t d = sample.values[2 * r], off = sample.values[2 * r + 1];
      MCORE_CHECK(d >= 0 && d < std::max<int64_t>(expect_docs, 1) && off >= 0 &&
                  (r == 0 || d >= sample.values[2 * r - 2]))
          << "sample index row " << r << " is invalid";
    }

    IndexArray shuffle = load_index_npy(shuffle_path);
    MCORE_CHECK((shuffle.descr == "<u4" || shuffle.descr == "<i8") && shuffle.shape.size() == 1 &&
                shuffle.shape[0] == expect_samples)
        << "shuffle index is not [" << expect_samples << "]";
    for (int64_t v : shuffle.values)
      MCORE_CHECK(v >= 0 && v < expect_samples) << "shuffle index out of range";

    document_index_.assign(doc.values.begin(), doc.values.end());
    sample_index_ = std::move(sample.values);
    shuffle_index_ = std::move(shuffle.values);
    return true;
  } catch (const Error& e) {
    MCORE_LOG(WARNING) << class_name_ << " index cache '" << base
                       << "-*' is stale or corrupt, rebuilding it: " << e.message();
    return false;
  }
}

void GPTDataset::build_indices() {
  std::optional<std::string> cache_dir = config_->path_to_cache;
  if (!cache_dir && !config_->mock && !dataset_->path_prefix().empty())
    cache_dir = dataset_->path_prefix() + "/cache/" + class_name_ + "_indices";
  std::string base;
  if (cache_dir) {
    base =
        *cache_dir + "/" + unique_description_hash_ + "-" + class_name_ + "-" + split_name(split_);
    if (try_load_cache(base)) {
      loaded_from_cache_ = true;
      return;
    }
  }

  const int64_t sequence_length = config_->sequence_length;
  const int extra = config_->add_extra_token_to_sequence ? 1 : 0;
  const int64_t tokens_per_epoch = num_tokens_per_epoch();
  const int32_t epochs = num_epochs(tokens_per_epoch);

  bool separate_final_epoch = false;
  int64_t num_samples_sans_final_epoch = 0;
  if (epochs > 1) {
    num_samples_sans_final_epoch = ((epochs - 1) * tokens_per_epoch - extra) / sequence_length;
    const int64_t num_samples_from_final_epoch = *num_samples_ - num_samples_sans_final_epoch;
    const int64_t num_samples_per_epoch = (tokens_per_epoch - extra) / sequence_length;
    MCORE_CHECK(num_samples_from_final_epoch >= 0 &&
                num_samples_from_final_epoch <= num_samples_per_epoch + 1)
        << class_name_ << ": inconsistent epoch arithmetic (" << num_samples_from_final_epoch
        << " samples from the final epoch, " << num_samples_per_epoch << " per epoch)";
    // Python: num_samples_from_final_epoch < int(0.80 * num_samples_per_epoch).
    separate_final_epoch = num_samples_from_final_epoch <
                           static_cast<int64_t>(0.80 * static_cast<double>(num_samples_per_epoch));
  }

  NumpyRandomState rng(config_->random_seed);
  document_index_ = build_document_index(indices_, epochs, rng, separate_final_epoch);

  const bool drop_last = split_ != Split::kValid || config_->drop_last_partial_validation_sequence;
  sample_index_ = build_sample_idx(dataset_->sequence_lengths(), document_index_,
                                   static_cast<int32_t>(sequence_length), epochs, tokens_per_epoch,
                                   drop_last, extra);
  const int64_t total = static_cast<int64_t>(sample_index_.size() / 2) - 1;
  shuffle_index_ =
      build_shuffle_index(separate_final_epoch ? num_samples_sans_final_epoch : total, total, rng);

  if (cache_dir) {
    make_dirs(*cache_dir);
    // Same dtypes as Megatron: the sample index is int32 unless its values could overflow it.
    int64_t max_len = 0;
    const int32_t* lengths = dataset_->sequence_lengths();
    for (int64_t i = 0; i < dataset_->num_sequences(); ++i)
      max_len = std::max<int64_t>(max_len, lengths[i]);
    const int64_t sample_max =
        std::max<int64_t>(static_cast<int64_t>(document_index_.size()), max_len);
    const std::string sample_descr =
        sample_max <= std::numeric_limits<int32_t>::max() ? "<i4" : "<i8";
    // Arrays first, description last; a reader needs all four files to take the cache.
    save_index_npy(base + "-document_index.npy", "<i4",
                   {static_cast<int64_t>(document_index_.size())},
                   std::vector<int64_t>(document_index_.begin(), document_index_.end()));
    save_index_npy(base + "-sample_index.npy", sample_descr, {total + 1, 2}, sample_index_);
    save_index_npy(base + "-shuffle_index.npy", shuffle_descr(total), {total}, shuffle_index_);
    write_text_atomic(base + "-description.txt", unique_description_);
  }
}

std::vector<int64_t> GPTDataset::sample_tokens(int64_t idx,
                                               std::vector<int64_t>* document_ids) const {
  MCORE_CHECK(idx >= 0 && idx < size()) << class_name_ << " " << split_name(split_) << ": sample "
                                        << idx << " out of range [0, " << size() << ")";
  const int extra = config_->add_extra_token_to_sequence ? 1 : 0;
  const int64_t want = config_->sequence_length + extra;
  const int64_t s = shuffle_index_[idx];
  const int64_t doc_beg = sample_index_[2 * s], off_beg = sample_index_[2 * s + 1];
  const int64_t doc_end = sample_index_[2 * s + 2], off_end = sample_index_[2 * s + 3];
  const int32_t* lengths = dataset_->sequence_lengths();
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(want));
  auto append = [&](int64_t doc, int64_t offset, int64_t length) {
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(length));
    dataset_->read_tokens(doc, offset, length, out.data() + at);
    if (document_ids) document_ids->push_back(doc);
  };
  if (doc_beg == doc_end) {
    append(document_index_[doc_beg], off_beg, off_end - off_beg + extra);
  } else {
    for (int64_t i = doc_beg; i <= doc_end; ++i) {
      const int64_t doc = document_index_[i];
      const int64_t offset = i > doc_beg ? 0 : off_beg;
      const int64_t length = i < doc_end ? lengths[doc] - offset : off_end + extra;
      append(doc, offset, length);
    }
  }
  // The last sample of an undropped partial sequence is padded.
  if (static_cast<int64_t>(out.size()) < want) out.resize(static_cast<size_t>(want), pad_token_id_);
  return out;
}

void get_ltor_masks_and_position_ids(const int64_t* data, int64_t seq, int64_t eod_token,
                                     bool reset_position_ids, bool reset_attention_mask,
                                     bool eod_mask_loss, bool create_attention_mask,
                                     Tensor* attention_mask, Tensor* loss_mask,
                                     Tensor* position_ids) {
  *loss_mask = empty({seq}, DType::F32);
  *position_ids = empty({seq}, DType::I64);
  float* lm = loss_mask->data<float>();
  int64_t* pos = position_ids->data<int64_t>();
  for (int64_t i = 0; i < seq; ++i) {
    lm[i] = (eod_mask_loss && data[i] == eod_token) ? 0.0f : 1.0f;
    pos[i] = i;
  }
  bool* mask = nullptr;
  if (create_attention_mask) {
    // Causal: position q may see k <= q. Stored as "masked" (true where attention is blocked).
    *attention_mask = empty({1, seq, seq}, DType::BOOL);
    mask = attention_mask->data<bool>();
    for (int64_t q = 0; q < seq; ++q)
      for (int64_t k = 0; k < seq; ++k) mask[q * seq + k] = k > q;
  }
  if (reset_position_ids || reset_attention_mask) {
    int64_t prev_index = 0;
    for (int64_t i = 0; i < seq; ++i) {
      if (data[i] != eod_token) continue;
      if (reset_attention_mask && mask) {
        // attention_mask[0, i+1:, :i+1] = 0: later tokens do not see this document.
        for (int64_t q = i + 1; q < seq; ++q)
          for (int64_t k = 0; k <= i; ++k) mask[q * seq + k] = true;
      }
      if (reset_position_ids) {
        for (int64_t j = i + 1; j < seq; ++j) pos[j] -= i + 1 - prev_index;
        prev_index = i + 1;
      }
    }
  }
}

GPTSample GPTDataset::make_sample(int64_t idx, bool padding) const {
  const std::vector<int64_t> text = sample_tokens(idx);
  const int64_t seq = config_->sequence_length;
  GPTSample s;
  s.tokens = empty({seq}, DType::I64);
  s.labels = empty({seq}, DType::I64);
  int64_t* tok = s.tokens.data<int64_t>();
  int64_t* lab = s.labels.data<int64_t>();
  if (config_->add_extra_token_to_sequence) {
    for (int64_t i = 0; i < seq; ++i) {
      tok[i] = text[i];
      lab[i] = text[i + 1];
    }
  } else {
    for (int64_t i = 0; i < seq; ++i) {
      tok[i] = text[i];
      lab[i] = i + 1 < seq ? text[i + 1] : pad_token_id_;
    }
  }
  get_ltor_masks_and_position_ids(tok, seq, config_->eod_token_id, config_->reset_position_ids,
                                  config_->reset_attention_mask, config_->eod_mask_loss,
                                  config_->create_attention_mask, &s.attention_mask, &s.loss_mask,
                                  &s.position_ids);
  float* lm = s.loss_mask.data<float>();
  for (int64_t i = 0; i < seq; ++i) {
    if (lab[i] == pad_token_id_) lm[i] = 0.0f;  // padded positions carry no loss
    if (tok[i] == pad_token_id_) tok[i] = 0;    // keep ids embeddable
    if (lab[i] == pad_token_id_) lab[i] = 0;
    if (padding) lm[i] = 0.0f;
  }
  return s;
}

GPTSample GPTDataset::get(int64_t idx) const {
  return make_sample(idx, false);
}
GPTSample GPTDataset::get_padding() const {
  return make_sample(0, true);
}

}  // namespace mcore::datasets
