#include "mcore/tokenizers/byte_level.h"

#include <array>

#include "mcore/tokenizers/unicode.h"

namespace mcore::tokenizers {
namespace {

struct Tables {
  std::array<uint32_t, 256> to_unicode{};
  std::array<int16_t, 512> to_byte{};  // stand-ins are all below U+0200
};

const Tables& tables() {
  static const Tables t = [] {
    Tables t;
    t.to_byte.fill(-1);
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t.to_unicode[b] = printable ? uint32_t(b) : 256 + n++;
      t.to_byte[t.to_unicode[b]] = int16_t(b);
    }
    return t;
  }();
  return t;
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) {
  return tables().to_unicode[b];
}

int unicode_to_byte(uint32_t cp) {
  return cp < 512 ? tables().to_byte[cp] : -1;
}

std::optional<std::string> byte_level_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const Utf8Char c = utf8_at(text, i);
    const int b = unicode_to_byte(c.cp);
    if (b < 0 || (c.cp == 0xFFFD)) return std::nullopt;
    out.push_back(char(b));
    i += c.len;
  }
  return out;
}

}  // namespace mcore::tokenizers
