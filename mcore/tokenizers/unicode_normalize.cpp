#include "mcore/tokenizers/unicode_normalize.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "mcore/tokenizers/unicode.h"
#include "mcore/tokenizers/unicode_nfc_tables.h"
#include "mcore/tokenizers/unicode_tables.h"

namespace mcore::tokenizers {
namespace {

// The combining classes come from one header and the decompositions from another: NFC is only
// right when both describe the same Unicode version.
static_assert(std::string_view(unicode_data::kUnicodeVersion) ==
                  std::string_view(unicode_data::kNfcTablesUnicodeVersion),
              "unicode_tables.h and unicode_nfc_tables.h are from different Unicode versions: "
              "rerun scripts/gen_unicode_tables.py");

// Hangul syllables decompose into conjoining jamo and compose back by arithmetic (The Unicode
// Standard, section 3.12), not by table.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// An ill-formed byte b travels through the buffer as kRawByte + b, above every code point: class
// 0, no decomposition, no composition, so it comes out as the same byte at the same place.
constexpr uint32_t kRawByte = 0x110000;

struct Char {
  uint32_t cp;
  uint8_t ccc;
};

const unicode_data::Decomposition* find_decomposition(uint32_t cp) {
  if (cp < 0xC0) return nullptr;  // nothing below U+00C0 decomposes
  const auto& d = unicode_data::kCanonicalDecompositions;
  auto it = std::lower_bound(std::begin(d), std::end(d), cp,
                             [](const auto& e, uint32_t c) { return e.cp < c; });
  return it != std::end(d) && it->cp == cp ? &*it : nullptr;
}

uint64_t pair_key(uint32_t first, uint32_t second) {
  return (uint64_t(first) << 32) | second;
}

// The primary composites by (first, second), sorted for binary search; built once.
const std::vector<std::pair<uint64_t, uint32_t>>& primary_composites() {
  static const auto table = [] {
    std::vector<std::pair<uint64_t, uint32_t>> t;
    for (const auto& d : unicode_data::kCanonicalDecompositions) {
      if (d.composes) t.emplace_back(pair_key(d.first, d.second), d.cp);
    }
    std::sort(t.begin(), t.end());
    return t;
  }();
  return table;
}

// The primary composite of a + b, or 0 when there is none.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a - kLBase < kLCount && b - kVBase < kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a - kSBase < kSCount && (a - kSBase) % kTCount == 0 && b - kTBase - 1 < kTCount - 1) {
    return a + (b - kTBase);
  }
  const auto& t = primary_composites();
  const uint64_t key = pair_key(a, b);
  auto it = std::lower_bound(t.begin(), t.end(), key,
                             [](const auto& e, uint64_t k) { return e.first < k; });
  return it != t.end() && it->first == key ? it->second : 0;
}

// Appends the full canonical decomposition of cp (decomposition mappings applied until none is
// left; a mapping's parts may decompose again, e.g. U+1E08 -> U+00C7 U+0301 -> C U+0327 U+0301).
void decompose(uint32_t cp, std::vector<Char>& out) {
  if (cp - kSBase < kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back({kLBase + s / kNCount, 0});
    out.push_back({kVBase + (s % kNCount) / kTCount, 0});
    if (s % kTCount) out.push_back({kTBase + s % kTCount, 0});
    return;
  }
  if (const auto* d = find_decomposition(cp)) {
    decompose(d->first, out);
    if (d->second) decompose(d->second, out);
    return;
  }
  out.push_back({cp, canonical_combining_class(cp)});
}

// Canonical ordering: each run of non-starters sorted by class, stably. A sort per run rather
// than insertion at each mark keeps a long run of marks (Zalgo text) from going quadratic.
void reorder(std::vector<Char>& buf) {
  for (size_t i = 0; i < buf.size();) {
    if (buf[i].ccc == 0) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < buf.size() && buf[j].ccc != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(buf.begin() + i, buf.begin() + j,
                       [](const Char& x, const Char& y) { return x.ccc < y.ccc; });
    }
    i = j;
  }
}

// Canonical composition (UAX #15 D117): each character C after the last starter L combines with
// it when C is not blocked from L (every character left between them has a class below C's, or
// there is none) and L + C has a primary composite. The buffer is in canonical order, so the
// last character kept after L has the highest class between them.
void compose_in_place(std::vector<Char>& buf) {
  constexpr size_t kNone = size_t(-1);
  size_t starter = kNone, w = 0;
  uint8_t last_ccc = 0;
  for (size_t r = 0; r < buf.size(); ++r) {
    const Char c = buf[r];
    if (starter != kNone && (w == starter + 1 || last_ccc < c.ccc)) {
      if (const uint32_t composite = compose(buf[starter].cp, c.cp)) {
        buf[starter].cp = composite;  // primary composites are starters: the class stays 0
        continue;
      }
    }
    if (c.ccc == 0) starter = w;
    last_ccc = c.ccc;
    buf[w++] = c;
  }
  buf.resize(w);
}

// NFC of text, appended to out.
void normalize_into(std::string_view text, std::string& out) {
  std::vector<Char> buf;
  buf.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    const Utf8Char c = utf8_at(text, i);
    if (c.cp == 0xFFFD && c.len == 1) {  // an ill-formed byte, not a U+FFFD in the text
      buf.push_back({kRawByte + uint8_t(text[i]), 0});
    } else {
      decompose(c.cp, buf);
    }
    i += c.len;
  }
  reorder(buf);
  compose_in_place(buf);
  for (const Char& c : buf) {
    if (c.cp >= kRawByte) {
      out.push_back(char(c.cp - kRawByte));
    } else {
      append_utf8(out, c.cp);
    }
  }
}

// Where normalization must start when the quick check first doubts the character at `where`:
// the last starter before it. Everything before `where` passed the quick check, so such a
// starter has NFC_Quick_Check = Yes: nothing before it can compose with it or be reordered
// past it, and the text before it is already NFC.
size_t stable_start(std::string_view text, size_t where) {
  for (size_t p = where; p > 0;) {
    --p;
    // A byte that is not a continuation byte starts a character (utf8_at's view), valid or not.
    if ((uint8_t(text[p]) & 0xC0) == 0x80) continue;
    if (canonical_combining_class(utf8_at(text, p).cp) == 0) return p;
  }
  return 0;
}

}  // namespace

uint8_t canonical_combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;  // the first nonzero class is U+0300's
  const auto& cr = unicode_data::kCombiningClassRanges;
  auto it = std::upper_bound(std::begin(cr), std::end(cr), cp,
                             [](uint32_t v, const auto& r) { return v < r.first; });
  return it != std::begin(cr) && cp <= std::prev(it)->last ? std::prev(it)->ccc : 0;
}

std::string nfc_normalize(std::string_view text) {
  std::string s(text);
  nfc_normalize_in_place(s);
  return s;
}

void nfc_normalize_in_place(std::string& s) {
  size_t where = 0;
  if (nfc_quick_check(s, &where)) return;
  const size_t start = stable_start(s, where);
  std::string out(s, 0, start);
  out.reserve(s.size() + 16);
  normalize_into(std::string_view(s).substr(start), out);
  s = std::move(out);
}

}  // namespace mcore::tokenizers
