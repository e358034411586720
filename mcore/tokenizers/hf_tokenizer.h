// HuggingFaceTokenizer: a Hugging Face tokenizer.json with a BPE model, byte-level (GPT-2,
// Llama-3, Qwen2) or SentencePiece-style (Llama-2, Mistral: Metaspace or Prepend/Replace
// normalizers, <0xXX> byte fallback). Encoding follows the Rust `tokenizers` pipeline: added
// tokens are cut out first (leftmost-longest, with lstrip/rstrip), the rest is normalized,
// pre-tokenized and BPE-encoded, and the post-processor's template adds BOS/EOS as
// transformers' tokenizer(text) does (Megatron's HuggingFaceTokenizer.tokenize). Decoding keeps
// special tokens (transformers' default, skip_special_tokens=False).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mcore/tokenizers/bpe.h"
#include "mcore/tokenizers/hf_components.h"
#include "mcore/tokenizers/tokenizer.h"

namespace mcore::tokenizers {

struct AddedToken {
  std::string content;
  TokenId id = kNoToken;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class HuggingFaceTokenizer : public Tokenizer {
 public:
  // path: a tokenizer.json, or a directory holding one.
  explicit HuggingFaceTokenizer(const std::string& path);
  static std::shared_ptr<HuggingFaceTokenizer> from_json_string(const std::string& json);
  ~HuggingFaceTokenizer() override;

  std::vector<TokenId> encode(std::string_view text) const override { return encode(text, true); }
  // add_special_tokens: apply the post-processor's template (BOS etc.).
  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens) const;
  std::string decode(const std::vector<TokenId>& ids) const override { return decode(ids, false); }
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const;

  int64_t vocab_size() const override { return vocab_size_; }
  std::string name() const override { return "HuggingFaceTokenizer"; }
  TokenId eod() const override { return eos_; }
  TokenId bos() const override { return bos_; }
  TokenId eos() const override { return eos_; }
  TokenId pad() const override { return pad_; }

  std::optional<TokenId> token_to_id(std::string_view token) const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }

  struct Matcher;  // implementation detail: leftmost-longest search over added tokens

 private:
  struct FromJson {};
  HuggingFaceTokenizer(FromJson, const std::string& json_text, const std::string& origin);
  void load(const std::string& json_text, const std::string& origin);

  void encode_piece(std::string_view text, bool at_origin, std::vector<TokenId>& out) const;
  void encode_normalized(std::string_view text, bool at_origin, std::vector<TokenId>& out) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<hf::Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<TokenId, size_t> added_by_id_;
  std::unique_ptr<Matcher> raw_matcher_;          // tokens with normalized = false
  std::unique_ptr<Matcher> normalized_matcher_;   // tokens with normalized = true
  std::vector<TokenId> prefix_ids_, suffix_ids_;  // post-processor template around $A
  int64_t vocab_size_ = 0;
  TokenId bos_ = kNoToken, eos_ = kNoToken, pad_ = kNoToken;
};

}  // namespace mcore::tokenizers
