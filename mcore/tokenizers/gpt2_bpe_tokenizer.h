// GPT2BPETokenizer: GPT-2's byte-level BPE from a vocab.json + merges.txt pair, as Megatron's
// GPT2BPETokenizer (OpenAI's encoder): the GPT-2 split regex, byte-level BPE, no special-token
// parsing in text (an "<|endoftext|>" in text is encoded as ordinary characters), eod =
// <|endoftext|>, decoding with U+FFFD for ill-formed UTF-8 (errors="replace").
#pragma once

#include <memory>
#include <string>

#include "mcore/tokenizers/bpe.h"
#include "mcore/tokenizers/tokenizer.h"

namespace mcore::tokenizers {

class GPT2BPETokenizer : public Tokenizer {
 public:
  GPT2BPETokenizer(const std::string& vocab_file, const std::string& merge_file);

  std::vector<TokenId> encode(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::string name() const override { return "GPT2BPETokenizer"; }
  TokenId eod() const override { return eod_; }
  TokenId bos() const override { return eod_; }
  TokenId eos() const override { return eod_; }

 private:
  std::unique_ptr<BpeModel> model_;
  std::vector<std::string> id_bytes_;  // raw bytes of each token
  int64_t vocab_size_ = 0;
  TokenId eod_ = kNoToken;
};

}  // namespace mcore::tokenizers
