// SentencePiece tokenizers over Debian's libsentencepiece, in Megatron's three flavours:
//  - SentencePieceTokenizer: Megatron's _SentencePieceTokenizer. <CLS> <SEP> <EOD> <MASK>, the
//    pad/bos/eos pieces (<PAD>/<BOS>/<EOS> when the model has none) and <extra_id_N> are
//    special tokens, appended after the model's pieces when missing; text is cut at their
//    occurrences (earliest first) and each special token becomes its id.
//  - GPTSentencePieceTokenizer: plain SentencePiece encoding, eod = eos.
//  - Llama2Tokenizer: BOS followed by the plain encoding, eod = eos.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mcore/tokenizers/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace mcore::tokenizers {

class SentencePieceTokenizer : public Tokenizer {
 public:
  enum class Flavor { kMegatron, kGpt, kLlama2 };
  SentencePieceTokenizer(const std::string& model_file, Flavor flavor = Flavor::kMegatron,
                         int64_t vocab_extra_ids = 0);
  ~SentencePieceTokenizer() override;

  std::vector<TokenId> encode(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::string name() const override;
  TokenId eod() const override { return eod_; }
  TokenId bos() const override { return bos_; }
  TokenId eos() const override { return eos_; }
  TokenId pad() const override { return pad_; }

  // The plain SentencePiece encoding (no special-token handling).
  std::vector<TokenId> encode_plain(std::string_view text) const;

 private:
  void add_special(const std::string& token);

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  Flavor flavor_;
  int64_t piece_count_ = 0;
  int64_t vocab_size_ = 0;
  std::vector<std::pair<std::string, TokenId>> special_;  // insertion order decides ties
  std::unordered_map<TokenId, std::string> special_by_id_;
  std::unordered_map<std::string, TokenId> added_;  // specials beyond the model's pieces
  TokenId eod_ = kNoToken, bos_ = kNoToken, eos_ = kNoToken, pad_ = kNoToken;
};

}  // namespace mcore::tokenizers
