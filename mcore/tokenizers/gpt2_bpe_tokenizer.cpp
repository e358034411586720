#include "mcore/tokenizers/gpt2_bpe_tokenizer.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mcore/base/error.h"
#include "mcore/tokenizers/byte_level.h"
#include "mcore/tokenizers/split_pattern.h"
#include "mcore/tokenizers/unicode.h"

namespace mcore::tokenizers {

GPT2BPETokenizer::GPT2BPETokenizer(const std::string& vocab_file, const std::string& merge_file) {
  std::ifstream vin(vocab_file, std::ios::binary);
  MCORE_CHECK(vin.good()) << "GPT2BPETokenizer: cannot open --vocab-file '" << vocab_file << "'";
  nlohmann::json vj;
  try {
    vj = nlohmann::json::parse(vin);
  } catch (const nlohmann::json::exception& e) {
    MCORE_FAIL() << "GPT2BPETokenizer: --vocab-file '" << vocab_file
                 << "' is not valid JSON: " << e.what();
  }
  MCORE_CHECK(vj.is_object()) << "GPT2BPETokenizer: --vocab-file '" << vocab_file
                              << "' must be a JSON object {token: id}";
  std::vector<std::pair<std::string, TokenId>> vocab;
  vocab.reserve(vj.size());
  for (const auto& [tok, id] : vj.items()) {
    MCORE_CHECK(id.is_number_integer())
        << "GPT2BPETokenizer: '" << vocab_file << "': token '" << tok << "' has a non-integer id";
    vocab.emplace_back(tok, id.get<TokenId>());
  }

  std::ifstream min(merge_file, std::ios::binary);
  MCORE_CHECK(min.good()) << "GPT2BPETokenizer: cannot open --merge-file '" << merge_file << "'";
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  size_t line_no = 0;
  while (std::getline(min, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    std::istringstream ls(line);
    std::string a, b, extra;
    ls >> a >> b;
    MCORE_CHECK(!a.empty() && !b.empty() && !(ls >> extra))
        << "GPT2BPETokenizer: --merge-file '" << merge_file << "' line " << line_no
        << " is not a pair of tokens: '" << line << "'";
    merges.emplace_back(std::move(a), std::move(b));
  }
  BpeOptions opt;
  opt.byte_level = true;
  model_ = std::make_unique<BpeModel>(vocab, merges, opt);
  vocab_size_ = int64_t(vocab.size());
  id_bytes_.resize(size_t(model_->size()));
  for (const auto& [tok, id] : vocab) {
    auto bytes = byte_level_decode(tok);
    MCORE_CHECK(bytes.has_value()) << "GPT2BPETokenizer: '" << vocab_file << "': token '" << tok
                                   << "' is not byte-level text (GPT-2's bytes_to_unicode)";
    id_bytes_[id] = *bytes;
  }
  auto eod = model_->token_to_id("<|endoftext|>");
  MCORE_CHECK(eod.has_value()) << "GPT2BPETokenizer: '" << vocab_file
                               << "' has no <|endoftext|> token (Megatron's eod)";
  eod_ = *eod;
}

std::vector<TokenId> GPT2BPETokenizer::encode(std::string_view text) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 1);
  thread_local std::vector<std::pair<uint32_t, uint32_t>> words;
  words.clear();
  split_by_pattern(text, SplitPattern::kGpt2, words);
  for (auto [b, e] : words) model_->encode_word(text.substr(b, e - b), out);
  return out;
}

std::string GPT2BPETokenizer::decode(const std::vector<TokenId>& ids) const {
  std::string bytes;
  for (TokenId id : ids) {
    MCORE_CHECK(model_->id_to_token(id))
        << "GPT2BPETokenizer::decode: id " << id << " is not in the vocabulary (size "
        << vocab_size_ << ")";
    bytes += id_bytes_[id];
  }
  return utf8_lossy(bytes);
}

}  // namespace mcore::tokenizers
