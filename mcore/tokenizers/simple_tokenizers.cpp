#include "mcore/tokenizers/simple_tokenizers.h"

#include <charconv>

#include "mcore/base/error.h"
#include "mcore/tokenizers/unicode.h"

namespace mcore::tokenizers {

NullTokenizer::NullTokenizer(int64_t vocab_size) : vocab_size_without_eod_(vocab_size) {
  MCORE_CHECK(vocab_size > 0 && vocab_size < (int64_t(1) << 31))
      << "NullTokenizer: --vocab-size must be in [1, 2^31), got " << vocab_size;
}

std::vector<TokenId> NullTokenizer::encode(std::string_view text) const {
  // Megatron: [int(x) for x in text.split(' ')]; int() ignores surrounding whitespace.
  std::vector<TokenId> out;
  size_t pos = 0;
  for (;;) {
    const size_t sp = text.find(' ', pos);
    std::string_view part = text.substr(pos, sp == std::string_view::npos ? sp : sp - pos);
    while (!part.empty() && (part.front() == '\t' || part.front() == '\n' || part.front() == '\r'))
      part.remove_prefix(1);
    while (!part.empty() && (part.back() == '\t' || part.back() == '\n' || part.back() == '\r'))
      part.remove_suffix(1);
    if (!part.empty() && part.front() == '+') part.remove_prefix(1);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    MCORE_CHECK(!part.empty() && ec == std::errc() && end == part.data() + part.size() &&
                v >= INT32_MIN && v <= INT32_MAX)
        << "NullTokenizer: '" << std::string(part.substr(0, 40))
        << "' is not an integer id; NullTokenizer input is ids separated by single spaces";
    out.push_back(TokenId(v));
    if (sp == std::string_view::npos) break;
    pos = sp + 1;
  }
  return out;
}

std::string NullTokenizer::decode(const std::vector<TokenId>& ids) const {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

ByteTokenizer::ByteTokenizer(int64_t vocab_size) : vocab_size_(vocab_size) {
  MCORE_CHECK(vocab_size >= 256) << "ByteTokenizer: vocab_size must be at least 256, got "
                                 << vocab_size;
}

std::vector<TokenId> ByteTokenizer::encode(std::string_view text) const {
  std::vector<TokenId> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = uint8_t(text[i]);
  return out;
}

std::string ByteTokenizer::decode(const std::vector<TokenId>& ids) const {
  std::string bytes;
  bytes.reserve(ids.size());
  for (TokenId id : ids) {
    if (id >= vocab_size_) continue;  // special tokens
    MCORE_CHECK(id >= 0 && id < 256)
        << "ByteTokenizer::decode: id " << id << " is neither a byte nor a special token";
    bytes.push_back(char(id));
  }
  std::string s = utf8_lossy(bytes, "");
  // Python's str.rstrip(): str.isspace() is White_Space plus U+001C..U+001F.
  while (!s.empty()) {
    size_t p = s.size() - 1;
    while (p > 0 && (uint8_t(s[p]) & 0xC0) == 0x80) --p;
    const uint32_t cp = utf8_at(s, p).cp;
    if (!is_white_space(cp) && !(cp >= 0x1C && cp <= 0x1F)) break;
    s.resize(p);
  }
  return s;
}

}  // namespace mcore::tokenizers
