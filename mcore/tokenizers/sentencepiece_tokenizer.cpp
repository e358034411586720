#include "mcore/tokenizers/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "mcore/base/error.h"

namespace mcore::tokenizers {

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_file, Flavor flavor,
                                               int64_t vocab_extra_ids)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), flavor_(flavor) {
  MCORE_CHECK(std::filesystem::exists(model_file))
      << "SentencePieceTokenizer: --tokenizer-model '" << model_file << "' does not exist";
  const auto status = sp_->Load(model_file);
  MCORE_CHECK(status.ok()) << "SentencePieceTokenizer: cannot load '" << model_file
                           << "': " << status.ToString();
  piece_count_ = sp_->GetPieceSize();
  vocab_size_ = piece_count_;
  bos_ = sp_->bos_id();
  eos_ = sp_->eos_id();
  pad_ = sp_->pad_id();
  eod_ = eos_;
  if (flavor_ != Flavor::kMegatron) return;

  // Megatron's _SentencePieceTokenizer._initalize, in its order.
  add_special("<CLS>");
  add_special("<SEP>");
  add_special("<EOD>");
  eod_ = special_.back().second;
  add_special("<MASK>");
  auto piece_or = [&](int id, const char* fallback) {
    return id >= 0 && id < piece_count_ ? sp_->IdToPiece(id) : std::string(fallback);
  };
  add_special(piece_or(sp_->pad_id(), "<PAD>"));
  pad_ = special_.back().second;
  add_special(piece_or(sp_->bos_id(), "<BOS>"));
  bos_ = special_.back().second;
  add_special(piece_or(sp_->eos_id(), "<EOS>"));
  eos_ = special_.back().second;
  for (int64_t i = 0; i < vocab_extra_ids; ++i) add_special("<extra_id_" + std::to_string(i) + ">");
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::string SentencePieceTokenizer::name() const {
  switch (flavor_) {
    case Flavor::kGpt:
      return "GPTSentencePieceTokenizer";
    case Flavor::kLlama2:
      return "Llama2Tokenizer";
    default:
      return "SentencePieceTokenizer";
  }
}

void SentencePieceTokenizer::add_special(const std::string& token) {
  TokenId id;
  const int piece = sp_->PieceToId(token);
  // PieceToId answers unk for unknown pieces; the piece must really be that token.
  if (piece >= 0 && piece < piece_count_ && sp_->IdToPiece(piece) == token) {
    id = piece;
  } else if (auto it = added_.find(token); it != added_.end()) {
    id = it->second;
  } else {
    id = TokenId(vocab_size_++);
    added_[token] = id;
  }
  for (auto& [t, i] : special_) {
    if (t == token) {
      i = id;
      special_by_id_[id] = token;
      return;
    }
  }
  special_.emplace_back(token, id);
  special_by_id_[id] = token;
}

std::vector<TokenId> SentencePieceTokenizer::encode_plain(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  MCORE_CHECK(status.ok()) << "SentencePieceTokenizer: encoding failed: " << status.ToString();
  return std::vector<TokenId>(ids.begin(), ids.end());
}

std::vector<TokenId> SentencePieceTokenizer::encode(std::string_view text) const {
  if (flavor_ == Flavor::kGpt) return encode_plain(text);
  if (flavor_ == Flavor::kLlama2) {
    std::vector<TokenId> out{bos_};
    auto ids = encode_plain(text);
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }
  std::vector<TokenId> out;
  size_t idx = 0;
  for (;;) {
    size_t best = std::string_view::npos;
    const std::pair<std::string, TokenId>* which = nullptr;
    for (const auto& st : special_) {
      const size_t hit = text.find(st.first, idx);
      if (hit != std::string_view::npos && (best == std::string_view::npos || hit < best)) {
        best = hit;
        which = &st;
      }
    }
    if (!which) break;
    auto ids = encode_plain(text.substr(idx, best - idx));
    out.insert(out.end(), ids.begin(), ids.end());
    out.push_back(which->second);
    idx = best + which->first.size();
  }
  auto ids = encode_plain(text.substr(idx));
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<TokenId>& ids) const {
  auto plain = [&](size_t b, size_t e) {
    std::vector<int> part;
    for (size_t i = b; i < e; ++i) {
      MCORE_CHECK(ids[i] >= 0 && ids[i] < piece_count_)
          << "SentencePieceTokenizer::decode: id " << ids[i] << " is not in the vocabulary (size "
          << vocab_size_ << ")";
      part.push_back(ids[i]);
    }
    std::string s;
    const auto status = sp_->Decode(part, &s);
    MCORE_CHECK(status.ok()) << "SentencePieceTokenizer: decoding failed: " << status.ToString();
    return s;
  };
  if (flavor_ != Flavor::kMegatron) return plain(0, ids.size());
  std::string text;
  size_t last = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = special_by_id_.find(ids[i]);
    if (it == special_by_id_.end()) continue;
    text += plain(last, i) + " " + it->second + " ";
    last = i + 1;
  }
  return text + plain(last, ids.size());
}

}  // namespace mcore::tokenizers
