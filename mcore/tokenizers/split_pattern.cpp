#include "mcore/tokenizers/split_pattern.h"

#include "mcore/tokenizers/unicode.h"

namespace mcore::tokenizers {
namespace {

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Ch {
  uint32_t cp;
  uint32_t len;  // 0 past the end
  uint8_t cls;
};

class Cursor {
 public:
  explicit Cursor(std::string_view t) : t_(t) {}
  Ch at(size_t pos) const {
    const Utf8Char c = utf8_at(t_, pos);
    if (!c.len) return {0, 0, kClassOther};
    return {c.cp, c.len, c.cp < 0x80 ? ascii_class(c.cp) : char_class(c.cp)};
  }
  size_t size() const { return t_.size(); }
  // End of the run of characters whose class has any bit of mask, starting at pos.
  size_t run(size_t pos, uint8_t mask) const {
    for (;;) {
      const Ch c = at(pos);
      if (!c.len || !(c.cls & mask)) return pos;
      pos += c.len;
    }
  }
  // End of the run of "other" characters: [^\s\p{L}\p{N}] (marks count as other).
  size_t run_other(size_t pos) const {
    for (;;) {
      const Ch c = at(pos);
      if (!c.len || !is_other(c)) return pos;
      pos += c.len;
    }
  }
  static bool is_other(const Ch& c) {
    return c.len && !(c.cls & (kClassLetter | kClassNumber | kClassSpace));
  }

 private:
  static uint8_t ascii_class(uint32_t c) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return kClassLetter;
    if (c >= '0' && c <= '9') return kClassNumber;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return kClassSpace;
    return kClassOther;
  }
  std::string_view t_;
};

// Length of a contraction ('s 't 're 've 'm 'll 'd) at pos, or 0. Case-insensitive matching
// follows Unicode simple case folding, under which only 's' has an extra form: U+017F (ſ).
size_t contraction(const Cursor& c, size_t pos, bool ignore_case) {
  if (c.at(pos).cp != '\'') return 0;
  const Ch a = c.at(pos + 1);
  if (!a.len) return 0;
  auto is = [&](const Ch& ch, char lower) {
    if (ch.cp == uint32_t(lower)) return true;
    if (!ignore_case) return false;
    if (ch.cp == uint32_t(lower - 32)) return true;
    return lower == 's' && ch.cp == 0x17F;
  };
  if (is(a, 's') || is(a, 't') || is(a, 'm') || is(a, 'd')) return 1 + a.len;
  const Ch b = c.at(pos + 1 + a.len);
  if (!b.len) return 0;
  if ((is(a, 'r') && is(b, 'e')) || (is(a, 'v') && is(b, 'e')) || (is(a, 'l') && is(b, 'l'))) {
    return 1 + a.len + b.len;
  }
  return 0;
}

// \s+(?!\S)|\s+ at pos (pos is whitespace): the run, less its last character when the run
// has more than one character and a non-space follows (that character then starts the next
// word, e.g. " world").
size_t whitespace_tail(const Cursor& c, size_t pos) {
  const size_t end = c.run(pos, kClassSpace);
  if (end == c.size()) return end;
  size_t last = pos, p = pos;
  while (p < end) {
    last = p;
    p += c.at(p).len;
  }
  return last > pos ? last : end;
}

size_t match_gpt2(const Cursor& c, size_t pos) {
  if (size_t n = contraction(c, pos, false)) return pos + n;
  const Ch first = c.at(pos);
  const size_t j = first.cp == ' ' ? pos + 1 : pos;
  const Ch d = c.at(j);
  if (d.len) {
    if (d.cls & kClassLetter) return c.run(j, kClassLetter);
    if (d.cls & kClassNumber) return c.run(j, kClassNumber);
    if (Cursor::is_other(d)) return c.run_other(j);
  }
  return whitespace_tail(c, pos);
}

size_t match_cl100k(const Cursor& c, size_t pos, size_t max_digits) {
  if (size_t n = contraction(c, pos, true)) return pos + n;
  const Ch first = c.at(pos);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (first.cls & kClassLetter) return c.run(pos, kClassLetter);
  if (first.cp != '\r' && first.cp != '\n' && !(first.cls & kClassNumber)) {
    const Ch d = c.at(pos + first.len);
    if (d.len && (d.cls & kClassLetter)) return c.run(pos + first.len, kClassLetter);
  }
  // \p{N}{1,max}
  if (first.cls & kClassNumber) {
    size_t p = pos;
    for (size_t k = 0; k < max_digits; ++k) {
      const Ch d = c.at(p);
      if (!d.len || !(d.cls & kClassNumber)) break;
      p += d.len;
    }
    return p;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t j = first.cp == ' ' ? pos + 1 : pos;
  if (Cursor::is_other(c.at(j))) {
    size_t p = c.run_other(j);
    for (Ch d = c.at(p); d.len && (d.cp == '\r' || d.cp == '\n'); d = c.at(p)) p += d.len;
    return p;
  }
  // \s*[\r\n]+ : the whitespace run up to and including its last line break.
  const size_t end = c.run(pos, kClassSpace);
  size_t after_newline = 0;
  for (size_t p = pos; p < end;) {
    const Ch d = c.at(p);
    p += d.len;
    if (d.cp == '\r' || d.cp == '\n') after_newline = p;
  }
  if (after_newline) return after_newline;
  return whitespace_tail(c, pos);
}

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

const char* split_pattern_regex(SplitPattern p) {
  switch (p) {
    case SplitPattern::kGpt2:
      return kGpt2Regex;
    case SplitPattern::kLlama3:
      return kLlama3Regex;
    case SplitPattern::kQwen2:
      return kQwen2Regex;
  }
  return "";
}

void split_by_pattern(std::string_view text, SplitPattern p,
                      std::vector<std::pair<uint32_t, uint32_t>>& out) {
  const Cursor c(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end;
    switch (p) {
      case SplitPattern::kGpt2:
        end = match_gpt2(c, pos);
        break;
      case SplitPattern::kLlama3:
        end = match_cl100k(c, pos, 3);
        break;
      default:
        end = match_cl100k(c, pos, 1);
        break;
    }
    if (end <= pos) end = pos + c.at(pos).len;  // cannot happen; guarantees progress
    out.emplace_back(uint32_t(pos), uint32_t(end));
    pos = end;
  }
}

}  // namespace mcore::tokenizers
