#include "mcore/tokenizers/unicode.h"

#include <algorithm>
#include <array>
#include <span>

#include "mcore/tokenizers/unicode_tables.h"

namespace mcore::tokenizers {
namespace {

using unicode_data::CodeRange;

// Unicode's White_Space property (PropList.txt), which is what \s means in Oniguruma and in
// Rust's regex crate. It has not changed since Unicode 6.3.
constexpr uint32_t kWhiteSpace[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,
                                    0xA0,   0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
                                    0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028,
                                    0x2029, 0x202F, 0x205F, 0x3000};

bool in_ranges(std::span<const CodeRange> ranges, uint32_t cp) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                             [](uint32_t c, const CodeRange& r) { return c < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}

uint8_t slow_class(uint32_t cp) {
  if (in_ranges(unicode_data::kLetterRanges, cp)) return kClassLetter;
  if (in_ranges(unicode_data::kNumberRanges, cp)) return kClassNumber;
  if (in_ranges(unicode_data::kMarkRanges, cp)) return kClassMark;
  return kClassOther;
}

// 64 KiB, built once: the BMP holds nearly all text, so a class is one load.
const std::array<uint8_t, 0x10000>& bmp_table() {
  static const auto table = [] {
    std::array<uint8_t, 0x10000> t{};
    auto fill = [&](std::span<const CodeRange> ranges, uint8_t cls) {
      for (const auto& r : ranges) {
        for (uint32_t c = r.first; c <= r.last && c < 0x10000; ++c) t[c] = cls;
      }
    };
    fill(unicode_data::kLetterRanges, kClassLetter);
    fill(unicode_data::kNumberRanges, kClassNumber);
    fill(unicode_data::kMarkRanges, kClassMark);
    for (uint32_t c : kWhiteSpace) t[c] = kClassSpace;
    return t;
  }();
  return table;
}

}  // namespace

uint8_t char_class(uint32_t cp) {
  if (cp < 0x10000) return bmp_table()[cp];
  return slow_class(cp);
}

bool nfc_quick_check(std::string_view text, size_t* where) {
  uint8_t last_ccc = 0;
  for (size_t i = 0; i < text.size();) {
    const Utf8Char c = utf8_at(text, i);
    if (c.cp >= 0x300) {  // everything below U+0300 is NFC_QC=Yes with class 0
      const auto& cr = unicode_data::kCombiningClassRanges;
      auto it = std::upper_bound(std::begin(cr), std::end(cr), c.cp,
                                 [](uint32_t v, const auto& r) { return v < r.first; });
      const uint8_t ccc =
          (it != std::begin(cr) && c.cp <= std::prev(it)->last) ? std::prev(it)->ccc : 0;
      if ((ccc && last_ccc > ccc) || in_ranges(unicode_data::kNfcQuickCheckNotYes, c.cp)) {
        if (where) *where = i;
        return false;
      }
      last_ccc = ccc;
    } else {
      last_ccc = 0;
    }
    i += c.len;
  }
  return true;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Length of the well-formed sequence at s[i], or 0 after storing in *bad how many bytes form
// the maximal ill-formed subpart (Unicode Table 3-7: the second byte's range depends on the
// lead byte; later bytes are 80..BF).
size_t well_formed_len(const unsigned char* s, size_t n, size_t i, size_t* bad) {
  const unsigned char b0 = s[i];
  if (b0 < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    const unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
    if (i + k >= n || s[i + k] < lo_k || s[i + k] > hi_k) {
      *bad = k;
      return 0;
    }
  }
  return len;
}

}  // namespace

std::string utf8_lossy(std::string_view bytes, std::string_view replacement) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    size_t bad = 0;
    const size_t len = well_formed_len(s, n, i, &bad);
    if (len) {
      out.append(bytes.data() + i, len);
      i += len;
    } else {
      out.append(replacement);
      i += bad;
    }
  }
  return out;
}

bool is_valid_utf8(std::string_view bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0, bad = 0;
  while (i < bytes.size()) {
    const size_t len = well_formed_len(s, bytes.size(), i, &bad);
    if (!len) return false;
    i += len;
  }
  return true;
}

}  // namespace mcore::tokenizers
