#include "mcore/tokenizers/hf_components.h"

#include <nlohmann/json.hpp>

#include "mcore/base/error.h"
#include "mcore/tokenizers/byte_level.h"
#include "mcore/tokenizers/split_pattern.h"
#include "mcore/tokenizers/unicode.h"
#include "mcore/tokenizers/unicode_normalize.h"

namespace mcore::tokenizers::hf {
namespace {

using nlohmann::json;

std::string type_of(const json& j) {
  MCORE_CHECK(j.is_object() && j.contains("type"))
      << "tokenizer.json: component without a \"type\": " << j.dump().substr(0, 200);
  return j.at("type").get<std::string>();
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos);
  s = std::move(out);
}

// Replace's "pattern" is {"String": s} or {"Regex": r}; only literal strings are supported.
std::string string_pattern(const json& j, const char* what) {
  const json& p = j.at("pattern");
  MCORE_CHECK(p.contains("String"))
      << "tokenizer.json: " << what << " with a Regex pattern is not supported (pattern "
      << p.dump() << "); only String patterns are";
  return p.at("String").get<std::string>();
}

// ---- normalizers ----

struct SequenceNormalizer : Normalizer {
  std::vector<std::unique_ptr<Normalizer>> items;
  void normalize(std::string& s) const override {
    for (const auto& n : items) n->normalize(s);
  }
};

struct PrependNormalizer : Normalizer {
  std::string prepend;
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend);
  }
};

struct ReplaceNormalizer : Normalizer {
  std::string from, to;
  void normalize(std::string& s) const override { replace_all(s, from, to); }
};

// Strips Unicode White_Space from either end.
struct StripNormalizer : Normalizer {
  bool left, right;
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left) {
      while (b < e) {
        const Utf8Char c = utf8_at(s, b);
        if (!is_white_space(c.cp)) break;
        b += c.len;
      }
    }
    if (right) {
      while (e > b) {
        size_t p = e - 1;
        while (p > b && (uint8_t(s[p]) & 0xC0) == 0x80) --p;
        if (!is_white_space(utf8_at(s, p).cp)) break;
        e = p;
      }
    }
    s = s.substr(b, e - b);
  }
};

// Unicode NFC (UAX #15), as the `tokenizers` crate applies it: decomposed and non-canonically
// ordered text is composed. Text already in NFC passes the quick check and is left untouched.
struct NfcNormalizer : Normalizer {
  void normalize(std::string& s) const override { nfc_normalize_in_place(s); }
};

// ---- pre-tokenizers ----

struct SequencePreTokenizer : PreTokenizer {
  std::vector<std::unique_ptr<PreTokenizer>> items;
  void pre_tokenize(std::vector<Piece>& pieces, PieceStorage& storage) const override {
    for (const auto& p : items) p->pre_tokenize(pieces, storage);
  }
  bool byte_level() const override {
    for (const auto& p : items) {
      if (p->byte_level()) return true;
    }
    return false;
  }
};

void split_pieces(std::vector<Piece>& pieces, SplitPattern pattern) {
  thread_local std::vector<Piece> out;
  thread_local std::vector<std::pair<uint32_t, uint32_t>> ranges;
  out.clear();
  for (const Piece& p : pieces) {
    ranges.clear();
    split_by_pattern(p.text, pattern, ranges);
    for (auto [b, e] : ranges) out.push_back({p.text.substr(b, e - b), p.at_origin && b == 0});
  }
  pieces.swap(out);
}

struct ByteLevelPreTokenizer : PreTokenizer {
  bool add_prefix_space = true;
  bool use_regex = true;
  void pre_tokenize(std::vector<Piece>& pieces, PieceStorage& storage) const override {
    if (add_prefix_space) {
      for (Piece& p : pieces) {
        if (!p.text.empty() && p.text[0] != ' ') {
          storage.push_back(" " + std::string(p.text));
          p.text = storage.back();
        }
      }
    }
    if (use_regex) split_pieces(pieces, SplitPattern::kGpt2);
  }
  bool byte_level() const override { return true; }
};

struct SplitPreTokenizer : PreTokenizer {
  SplitPattern pattern;
  void pre_tokenize(std::vector<Piece>& pieces, PieceStorage&) const override {
    split_pieces(pieces, pattern);
  }
};

struct MetaspacePreTokenizer : PreTokenizer {
  std::string replacement;
  enum class Prepend { kAlways, kFirst, kNever } scheme = Prepend::kAlways;
  bool split = true;
  void pre_tokenize(std::vector<Piece>& pieces, PieceStorage& storage) const override {
    thread_local std::vector<Piece> out;
    out.clear();
    for (const Piece& p : pieces) {
      if (p.text.empty()) continue;
      std::string s(p.text);
      replace_all(s, " ", replacement);
      const bool starts = s.compare(0, replacement.size(), replacement) == 0;
      if (!starts && (scheme == Prepend::kAlways || (scheme == Prepend::kFirst && p.at_origin))) {
        s.insert(0, replacement);
      }
      storage.push_back(std::move(s));
      std::string_view t = storage.back();
      if (!split) {
        out.push_back({t, p.at_origin});
        continue;
      }
      // MergedWithNext: each replacement character starts a new piece.
      size_t start = 0;
      for (size_t hit = t.find(replacement, 1); hit != std::string_view::npos;
           hit = t.find(replacement, hit + replacement.size())) {
        if (hit > start) out.push_back({t.substr(start, hit - start), p.at_origin && start == 0});
        start = hit;
      }
      if (start < t.size()) out.push_back({t.substr(start), p.at_origin && start == 0});
    }
    pieces.swap(out);
  }
};

// ---- decoders ----

struct SequenceDecoder : Decoder {
  std::vector<std::unique_ptr<Decoder>> items;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : items) d->decode_chain(tokens);
  }
};

struct ByteLevelDecoder : Decoder {
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      if (auto b = byte_level_decode(t)) {
        bytes += *b;
      } else {
        bytes += t;  // not byte-level text (an added token): its own bytes
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

struct MetaspaceDecoder : Decoder {
  std::string replacement;
  bool prepend_never = false;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      replace_all(tokens[i], replacement, (i == 0 && !prepend_never) ? "" : " ");
    }
  }
};

struct ReplaceDecoder : Decoder {
  std::string from, to;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) replace_all(t, from, to);
  }
};

struct ByteFallbackDecoder : Decoder {
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (is_valid_utf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending.size(); ++k) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[3]) >= 0 &&
          hex(t[4]) >= 0) {
        pending.push_back(char(hex(t[3]) * 16 + hex(t[4])));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

struct FuseDecoder : Decoder {
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Strips up to `start` leading and `stop` trailing copies of one character from each token.
struct StripDecoder : Decoder {
  std::string content;
  size_t start = 0, stop = 0;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start && t.compare(b, content.size(), content) == 0 && b < e; ++k) {
        b += content.size();
      }
      for (size_t k = 0; k < stop && e >= b + content.size() &&
                         t.compare(e - content.size(), content.size(), content) == 0;
           ++k) {
        e -= content.size();
      }
      t = t.substr(b, e - b);
    }
  }
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    auto n = std::make_unique<SequenceNormalizer>();
    for (const auto& item : j.at("normalizers")) {
      if (auto c = parse_normalizer(item)) n->items.push_back(std::move(c));
    }
    return n;
  }
  if (type == "Prepend") {
    auto n = std::make_unique<PrependNormalizer>();
    n->prepend = j.at("prepend").get<std::string>();
    return n;
  }
  if (type == "Replace") {
    auto n = std::make_unique<ReplaceNormalizer>();
    n->from = string_pattern(j, "Replace normalizer");
    n->to = j.at("content").get<std::string>();
    return n;
  }
  if (type == "Strip") {
    auto n = std::make_unique<StripNormalizer>();
    n->left = j.value("strip_left", true);
    n->right = j.value("strip_right", true);
    return n;
  }
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  MCORE_FAIL() << "HuggingFaceTokenizer: normalizer type '" << type
               << "' is not supported (supported: Sequence, Prepend, Replace, Strip, NFC)";
  return nullptr;
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    auto p = std::make_unique<SequencePreTokenizer>();
    for (const auto& item : j.at("pretokenizers")) {
      if (auto c = parse_pre_tokenizer(item)) p->items.push_back(std::move(c));
    }
    return p;
  }
  if (type == "ByteLevel") {
    auto p = std::make_unique<ByteLevelPreTokenizer>();
    p->add_prefix_space = j.value("add_prefix_space", true);
    p->use_regex = j.value("use_regex", true);
    return p;
  }
  if (type == "Split") {
    const json& pat = j.at("pattern");
    MCORE_CHECK(pat.contains("Regex"))
        << "HuggingFaceTokenizer: Split pre-tokenizer with pattern " << pat.dump()
        << " is not supported; only the GPT-2, Llama-3 and Qwen2 regexes are";
    const std::string regex = pat.at("Regex").get<std::string>();
    auto known = split_pattern_from_regex(regex);
    MCORE_CHECK(known.has_value()) << "HuggingFaceTokenizer: Split regex '" << regex
                                   << "' is not one of the implemented patterns (GPT-2, Llama-3, "
                                      "Qwen2)";
    const std::string behavior = j.value("behavior", "Isolated");
    MCORE_CHECK(behavior == "Isolated" && !j.value("invert", false))
        << "HuggingFaceTokenizer: Split behavior '" << behavior
        << "' / invert is not supported; only Isolated without invert is";
    auto p = std::make_unique<SplitPreTokenizer>();
    p->pattern = *known;
    return p;
  }
  if (type == "Metaspace") {
    auto p = std::make_unique<MetaspacePreTokenizer>();
    p->replacement = j.value("replacement", "\xE2\x96\x81");
    p->split = j.value("split", true);
    const std::string scheme = j.value("prepend_scheme", "always");
    if (scheme == "first")
      p->scheme = MetaspacePreTokenizer::Prepend::kFirst;
    else if (scheme == "never")
      p->scheme = MetaspacePreTokenizer::Prepend::kNever;
    return p;
  }
  MCORE_FAIL() << "HuggingFaceTokenizer: pre-tokenizer type '" << type
               << "' is not supported (supported: Sequence, ByteLevel, Split, Metaspace)";
  return nullptr;
}

std::unique_ptr<Decoder> parse_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    auto d = std::make_unique<SequenceDecoder>();
    for (const auto& item : j.at("decoders")) {
      if (auto c = parse_decoder(item)) d->items.push_back(std::move(c));
    }
    return d;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    auto d = std::make_unique<MetaspaceDecoder>();
    d->replacement = j.value("replacement", "\xE2\x96\x81");
    d->prepend_never = j.value("prepend_scheme", "always") == "never";
    return d;
  }
  if (type == "Replace") {
    auto d = std::make_unique<ReplaceDecoder>();
    d->from = string_pattern(j, "Replace decoder");
    d->to = j.at("content").get<std::string>();
    return d;
  }
  if (type == "Strip") {
    auto d = std::make_unique<StripDecoder>();
    d->content = j.at("content").get<std::string>();
    d->start = j.value("start", 0);
    d->stop = j.value("stop", 0);
    return d;
  }
  MCORE_FAIL() << "HuggingFaceTokenizer: decoder type '" << type
               << "' is not supported (supported: Sequence, ByteLevel, ByteFallback, Fuse, "
                  "Metaspace, Replace, Strip)";
  return nullptr;
}

}  // namespace mcore::tokenizers::hf
