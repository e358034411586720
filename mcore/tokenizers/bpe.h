// The BPE model shared by GPT2BPETokenizer and HuggingFaceTokenizer: a vocabulary, ranked
// merges, and the merge loop of Hugging Face tokenizers (a heap of candidate pairs, lowest rank
// first, then leftmost), which gives the same tokens as GPT-2's original encoder. Words are
// split into initial symbols either byte by byte (byte-level BPE: the vocabulary's
// bytes_to_unicode spelling is mapped back to raw bytes at load, so no per-word remapping) or
// character by character (SentencePiece-style BPE, with <0xXX> byte fallback and unk fusing).
// Results of short words are cached per thread, as Hugging Face does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mcore/tokenizers/tokenizer.h"

namespace mcore::tokenizers {

struct BpeOptions {
  bool byte_level = false;  // initial symbols are bytes; vocab keys are bytes_to_unicode text
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  // vocab: token text (as in the file) -> id; merges: pairs of token texts in rank order. A merge
  // whose parts or result are not in the vocabulary is an error naming it.
  BpeModel(const std::vector<std::pair<std::string, TokenId>>& vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized word (raw UTF-8 bytes, not remapped).
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  // Token text of an id as written in the vocabulary file, or nullptr.
  const std::string* id_to_token(TokenId id) const;
  std::optional<TokenId> token_to_id(std::string_view token) const;
  // One more than the largest id.
  int64_t size() const { return int64_t(id_to_token_.size()); }
  const BpeOptions& options() const { return options_; }

 private:
  struct MergeValue {
    int32_t rank;
    TokenId new_id;
  };
  static uint64_t pair_key(TokenId a, TokenId b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }
  // Lookup key of a vocabulary entry: raw bytes for byte-level models, the text otherwise.
  std::optional<std::string> key_of(const std::string& token) const;
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;
  struct Symbol {
    TokenId id;
    int32_t prev;
    int32_t next;
    uint32_t len;  // bytes of the word it covers; 0 once merged into its left neighbour
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    TokenId new_id;
    // std heaps are max-heaps: "less" means later: higher rank, then further right.
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  // Hugging Face's merge loop (Word::merge_all): a heap of candidate pairs.
  void merge_with_heap(std::vector<Symbol>& symbols, std::vector<Candidate>& heap) const;

  BpeOptions options_;
  std::unordered_map<std::string, TokenId> vocab_;  // key_of(token) -> id
  std::vector<std::string> id_to_token_;            // as in the file; empty for holes
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, MergeValue> merges_;
  TokenId byte_id_[256];           // byte-level: id of each single byte
  TokenId byte_fallback_id_[256];  // <0xXX> tokens, -1 where missing
  bool all_byte_fallback_ = false;
  TokenId unk_id_ = kNoToken;
  uint64_t cache_id_;
};

}  // namespace mcore::tokenizers
