// The tokenizer interface every tokenizer implements, shaped like Megatron's MegatronTokenizer:
// text -> ids and back, the vocabulary size, and the ids of the special tokens the data pipeline
// needs (eod above all: preprocess_data appends it to every document). Megatron calls the two
// directions tokenize/detokenize; mcore names them encode/decode and keeps the Megatron names
// as aliases. Implementations are immutable after construction, so one instance may be shared
// by any number of threads (preprocess_data's workers do).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcore::tokenizers {

using TokenId = int32_t;
// Megatron returns None / -1 for a special token a tokenizer lacks; mcore uses -1.
inline constexpr TokenId kNoToken = -1;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text (UTF-8) to token ids, with the special-token handling of the Megatron tokenizer of
  // the same name (e.g. HuggingFaceTokenizer adds the template's BOS like transformers does).
  virtual std::vector<TokenId> encode(std::string_view text) const = 0;
  // Ids back to text. Throws mcore::Error naming the id when one is outside the vocabulary.
  virtual std::string decode(const std::vector<TokenId>& ids) const = 0;

  // Number of ids, special tokens included (what the embedding must cover before padding).
  virtual int64_t vocab_size() const = 0;
  // The name of the --tokenizer-type that builds this tokenizer.
  virtual std::string name() const = 0;

  virtual TokenId eod() const = 0;
  virtual TokenId bos() const { return kNoToken; }
  virtual TokenId eos() const { return kNoToken; }
  virtual TokenId pad() const { return kNoToken; }

  // Megatron's names.
  std::vector<TokenId> tokenize(std::string_view text) const { return encode(text); }
  std::string detokenize(const std::vector<TokenId>& ids) const { return decode(ids); }
};

// What build_tokenizer needs; the fields are Megatron-LM's flags (--tokenizer-type, ...).
struct TokenizerOptions {
  std::string tokenizer_type;   // GPT2BPETokenizer, HuggingFaceTokenizer, SentencePieceTokenizer,
                                // GPTSentencePieceTokenizer, Llama2Tokenizer, NullTokenizer,
                                // ByteTokenizer
  std::string vocab_file;       // GPT2BPETokenizer: vocab.json
  std::string merge_file;       // GPT2BPETokenizer: merges.txt
  std::string tokenizer_model;  // HuggingFaceTokenizer: tokenizer.json or its directory;
                                // SentencePiece*: the .model file
  int64_t vocab_size = -1;      // NullTokenizer: ids are < vocab_size, eod == vocab_size
  int64_t vocab_extra_ids = 0;  // SentencePieceTokenizer: <extra_id_N> tokens (T5)
};

// Megatron's build_tokenizer: the tokenizer named by options.tokenizer_type. Unknown types and
// missing files are errors that name the flag to set.
std::shared_ptr<const Tokenizer> build_tokenizer(const TokenizerOptions& options);

}  // namespace mcore::tokenizers
