// UTF-8 and Unicode helpers for the tokenizers: decoding one code point, the character classes
// the split patterns use (\p{L}, \p{N}, \p{M}, \s), and the lossy UTF-8 repair that Python's
// bytes.decode(errors="replace") and Rust's String::from_utf8_lossy both perform (one U+FFFD
// per maximal ill-formed subpart), so decoded text matches the reference libraries exactly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mcore::tokenizers {

// Class bits of a code point. A code point is in at most one of L, N, M; White_Space
// characters are in none of them.
enum CharClass : uint8_t {
  kClassOther = 0,
  kClassLetter = 1,
  kClassNumber = 2,
  kClassMark = 4,
  kClassSpace = 8,
};

// Class of a code point: one table load for the BMP, a binary search above it.
uint8_t char_class(uint32_t cp);

inline bool is_white_space(uint32_t cp) {
  return char_class(cp) & kClassSpace;
}

struct Utf8Char {
  uint32_t cp;   // U+FFFD for an ill-formed byte
  uint32_t len;  // bytes consumed: 1..4, 0 at the end of the text
};

// The code point at text[pos]. An ill-formed sequence yields U+FFFD of length 1, so callers
// always make progress (inputs from JSON are well formed; this only guards against garbage).
inline Utf8Char utf8_at(std::string_view text, size_t pos) {
  if (pos >= text.size()) return {0, 0};
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char b0 = s[pos];
  if (b0 < 0x80) return {b0, 1};
  const size_t left = text.size() - pos;
  auto cont = [&](size_t k) { return k < left && (s[pos + k] & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 < 0xE0 && cont(1))
    return {(uint32_t(b0 & 0x1F) << 6) | (s[pos + 1] & 0x3F), 2};
  if (b0 >= 0xE0 && b0 < 0xF0 && cont(1) && cont(2)) {
    uint32_t cp =
        (uint32_t(b0 & 0x0F) << 12) | (uint32_t(s[pos + 1] & 0x3F) << 6) | (s[pos + 2] & 0x3F);
    if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) return {cp, 3};
  } else if (b0 >= 0xF0 && b0 < 0xF5 && cont(1) && cont(2) && cont(3)) {
    uint32_t cp = (uint32_t(b0 & 0x07) << 18) | (uint32_t(s[pos + 1] & 0x3F) << 12) |
                  (uint32_t(s[pos + 2] & 0x3F) << 6) | (s[pos + 3] & 0x3F);
    if (cp >= 0x10000 && cp <= 0x10FFFF) return {cp, 4};
  }
  return {0xFFFD, 1};
}

// Number of bytes of the UTF-8 sequence starting with lead byte b (1 for stray bytes).
inline int utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xF0 && b < 0xF8) return 4;
  if (b >= 0xE0) return 3;
  if (b >= 0xC0) return 2;
  return 1;
}

void append_utf8(std::string& out, uint32_t cp);

// UAX #15 quick check for NFC: true when text is certainly in NFC (every character has
// NFC_Quick_Check = Yes and combining classes are in canonical order). False means "maybe
// not"; *where receives the byte offset of the first doubtful character.
bool nfc_quick_check(std::string_view text, size_t* where = nullptr);

// bytes as text, each maximal ill-formed subpart replaced by `replacement` (U+FFFD, as
// errors="replace"; an empty replacement is Python's errors="ignore").
std::string utf8_lossy(std::string_view bytes, std::string_view replacement = "\xEF\xBF\xBD");
bool is_valid_utf8(std::string_view bytes);

}  // namespace mcore::tokenizers
