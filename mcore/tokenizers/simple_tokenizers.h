// The two tokenizers without a vocabulary file:
//  - NullTokenizer (Megatron's): the text is space-separated integer ids; vocab_size is the
//    given size plus one, and eod is that extra id. For data that is already tokenized.
//  - ByteTokenizer: UTF-8 bytes as ids, as megatron-core's ByteLevelTokenizer (vocab_size 512
//    by default, eod = eos = 0, pad = 1, no bos; decoding drops ids at or above the vocabulary
//    size, ignores ill-formed UTF-8 and strips trailing whitespace, as that class does).
#pragma once

#include "mcore/tokenizers/tokenizer.h"

namespace mcore::tokenizers {

class NullTokenizer : public Tokenizer {
 public:
  explicit NullTokenizer(int64_t vocab_size);
  std::vector<TokenId> encode(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_without_eod_ + 1; }
  std::string name() const override { return "NullTokenizer"; }
  TokenId eod() const override { return TokenId(vocab_size_without_eod_); }

 private:
  int64_t vocab_size_without_eod_;
};

class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(int64_t vocab_size = 512);
  std::vector<TokenId> encode(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::string name() const override { return "ByteTokenizer"; }
  TokenId eod() const override { return 0; }
  TokenId eos() const override { return 0; }
  TokenId pad() const override { return 1; }

 private:
  int64_t vocab_size_;
};

}  // namespace mcore::tokenizers
