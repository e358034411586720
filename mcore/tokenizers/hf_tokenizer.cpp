#include "mcore/tokenizers/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mcore/base/error.h"
#include "mcore/tokenizers/unicode.h"

namespace mcore::tokenizers {
namespace {

using nlohmann::json;

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  MCORE_CHECK(in.good()) << what << ": cannot open '" << path << "'";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// \w of Rust's regex crate, approximated by letters, marks, numbers and '_'.
bool is_word_char(uint32_t cp) {
  return cp == '_' || (char_class(cp) & (kClassLetter | kClassMark | kClassNumber));
}
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t p = s.size() - 1;
  while (p > 0 && (uint8_t(s[p]) & 0xC0) == 0x80) --p;
  return is_word_char(utf8_at(s, p).cp);
}
bool starts_with_word(std::string_view s) {
  return !s.empty() && is_word_char(utf8_at(s, 0).cp);
}

std::optional<std::string> token_name(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j.at("content").get<std::string>();
  return std::nullopt;
}

}  // namespace

// Leftmost-longest search (Hugging Face uses an Aho-Corasick automaton with that match kind).
// Added tokens are few, so candidates are bucketed by first byte and tried longest first.
struct HuggingFaceTokenizer::Matcher {
  std::vector<std::vector<size_t>> by_first_byte = std::vector<std::vector<size_t>>(256);
  std::vector<std::string> patterns;
  std::vector<size_t> token_index;

  void add(std::string pattern, size_t index) {
    if (pattern.empty()) return;
    by_first_byte[uint8_t(pattern[0])].push_back(patterns.size());
    patterns.push_back(std::move(pattern));
    token_index.push_back(index);
  }
  void finish() {
    for (auto& b : by_first_byte) {
      std::stable_sort(b.begin(), b.end(),
                       [&](size_t x, size_t y) { return patterns[x].size() > patterns[y].size(); });
    }
  }
  // First match at or after from: (begin, pattern number), or begin == npos.
  std::pair<size_t, size_t> find(std::string_view text, size_t from) const {
    for (size_t i = from; i < text.size(); ++i) {
      for (size_t k : by_first_byte[uint8_t(text[i])]) {
        const std::string& p = patterns[k];
        if (text.size() - i >= p.size() && text.compare(i, p.size(), p) == 0) return {i, k};
      }
    }
    return {std::string_view::npos, 0};
  }
};

namespace {

// Hugging Face's AddedVocabulary::find_matches: cuts text into (token index or npos, range).
template <class Fn>
void split_on_added(std::string_view text, const HuggingFaceTokenizer::Matcher* m,
                    const std::vector<AddedToken>& added, Fn&& emit) {
  size_t start_offset = 0;
  if (m) {
    size_t from = 0;
    for (;;) {
      auto [begin, k] = m->find(text, from);
      if (begin == std::string_view::npos) break;
      size_t start = begin, stop = begin + m->patterns[k].size();
      from = stop;
      const AddedToken& tok = added[m->token_index[k]];
      if (tok.single_word) {
        const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        const bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (tok.lstrip) {
        size_t s = start;
        while (s > 0) {
          size_t p = s - 1;
          while (p > 0 && (uint8_t(text[p]) & 0xC0) == 0x80) --p;
          if (!is_white_space(utf8_at(text, p).cp)) break;
          s = p;
        }
        start = std::max(s, start_offset);
      }
      if (tok.rstrip) {
        while (stop < text.size()) {
          const Utf8Char c = utf8_at(text, stop);
          if (!is_white_space(c.cp)) break;
          stop += c.len;
        }
        from = stop;
      }
      if (start_offset < start) emit(std::string_view::npos, start_offset, start);
      emit(m->token_index[k], start, stop);
      start_offset = stop;
    }
  }
  if (start_offset < text.size()) emit(std::string_view::npos, start_offset, text.size());
}

}  // namespace

HuggingFaceTokenizer::HuggingFaceTokenizer(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path))
    file = (std::filesystem::path(path) / "tokenizer.json").string();
  MCORE_CHECK(std::filesystem::exists(file))
      << "HuggingFaceTokenizer: '" << file
      << "' does not exist; pass --tokenizer-model a tokenizer.json or the directory holding it";
  load(read_file(file, "HuggingFaceTokenizer"), file);
  // bos/eos/pad are named in tokenizer_config.json (transformers reads them from there).
  const auto config = std::filesystem::path(file).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config)) {
    json c;
    try {
      c = json::parse(read_file(config.string(), "HuggingFaceTokenizer"));
    } catch (const json::exception& e) {
      MCORE_FAIL() << "HuggingFaceTokenizer: '" << config.string()
                   << "' is not valid JSON: " << e.what();
    }
    auto pick = [&](const char* key, TokenId& id) {
      if (!c.contains(key)) return;
      if (auto name = token_name(c.at(key))) {
        if (auto t = token_to_id(*name)) id = *t;
      } else if (c.at(key).is_null()) {
        id = kNoToken;
      }
    };
    pick("bos_token", bos_);
    pick("eos_token", eos_);
    pick("pad_token", pad_);
  }
}

HuggingFaceTokenizer::HuggingFaceTokenizer(FromJson, const std::string& json_text,
                                           const std::string& origin) {
  load(json_text, origin);
}

std::shared_ptr<HuggingFaceTokenizer> HuggingFaceTokenizer::from_json_string(
    const std::string& text) {
  return std::shared_ptr<HuggingFaceTokenizer>(
      new HuggingFaceTokenizer(FromJson{}, text, "<string>"));
}

HuggingFaceTokenizer::~HuggingFaceTokenizer() = default;

void HuggingFaceTokenizer::load(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    MCORE_FAIL() << "HuggingFaceTokenizer: '" << origin << "' is not valid JSON: " << e.what();
  }
  try {
    const json& m = j.at("model");
    const std::string type = m.value("type", "BPE");
    MCORE_CHECK(type == "BPE") << "HuggingFaceTokenizer: '" << origin << "' has a " << type
                               << " model; only BPE models are supported";
    MCORE_CHECK(!m.contains("dropout") || m.at("dropout").is_null() ||
                m.at("dropout").get<double>() == 0.0)
        << "HuggingFaceTokenizer: BPE dropout is not supported (it makes encoding random)";
    pre_tokenizer_ = hf::parse_pre_tokenizer(j.value("pre_tokenizer", json()));
    normalizer_ = hf::parse_normalizer(j.value("normalizer", json()));
    decoder_ = hf::parse_decoder(j.value("decoder", json()));

    BpeOptions opt;
    opt.byte_level = pre_tokenizer_ && pre_tokenizer_->byte_level();
    opt.byte_fallback = m.value("byte_fallback", false);
    opt.fuse_unk = m.value("fuse_unk", false);
    opt.ignore_merges = m.value("ignore_merges", false);
    if (m.contains("unk_token") && !m.at("unk_token").is_null())
      opt.unk_token = m.at("unk_token").get<std::string>();
    if (m.contains("continuing_subword_prefix") && !m.at("continuing_subword_prefix").is_null()) {
      opt.continuing_subword_prefix = m.at("continuing_subword_prefix").get<std::string>();
    }
    if (m.contains("end_of_word_suffix") && !m.at("end_of_word_suffix").is_null()) {
      opt.end_of_word_suffix = m.at("end_of_word_suffix").get<std::string>();
    }
    std::vector<std::pair<std::string, TokenId>> vocab;
    vocab.reserve(m.at("vocab").size());
    for (const auto& [tok, id] : m.at("vocab").items()) vocab.emplace_back(tok, id.get<TokenId>());
    std::vector<std::pair<std::string, std::string>> merges;
    for (const auto& mg : m.value("merges", json::array())) {
      if (mg.is_array()) {
        merges.emplace_back(mg.at(0).get<std::string>(), mg.at(1).get<std::string>());
      } else {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ');
        MCORE_CHECK(sp != std::string::npos)
            << "HuggingFaceTokenizer: merge '" << s << "' has no space";
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      }
    }
    std::unordered_map<std::string, TokenId> all;  // every token text, for vocab_size
    for (const auto& [tok, id] : vocab) all.emplace(tok, id);
    model_ = std::make_unique<BpeModel>(vocab, merges, opt);

    raw_matcher_ = std::make_unique<Matcher>();
    normalized_matcher_ = std::make_unique<Matcher>();
    for (const auto& a : j.value("added_tokens", json::array())) {
      AddedToken t;
      t.id = a.at("id").get<TokenId>();
      t.content = a.at("content").get<std::string>();
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.normalized = a.value("normalized", true);
      t.special = a.value("special", false);
      added_by_id_[t.id] = added_.size();
      all.emplace(t.content, t.id);
      added_.push_back(std::move(t));
    }
    for (size_t i = 0; i < added_.size(); ++i) {
      if (!added_[i].normalized) {
        raw_matcher_->add(added_[i].content, i);
      } else {
        std::string p = added_[i].content;
        if (normalizer_) normalizer_->normalize(p);
        normalized_matcher_->add(std::move(p), i);
      }
    }
    raw_matcher_->finish();
    normalized_matcher_->finish();
    if (raw_matcher_->patterns.empty()) raw_matcher_.reset();
    if (normalized_matcher_->patterns.empty()) normalized_matcher_.reset();
    vocab_size_ = int64_t(all.size());

    // Post-processor: the tokens around a single sequence.
    std::function<void(const json&)> post = [&](const json& p) {
      if (p.is_null()) return;
      const std::string ptype = p.at("type").get<std::string>();
      std::vector<TokenId> pre, suf;
      if (ptype == "TemplateProcessing") {
        bool seen_seq = false;
        for (const auto& item : p.at("single")) {
          if (item.contains("Sequence")) {
            seen_seq = true;
          } else {
            const std::string name = item.at("SpecialToken").at("id").get<std::string>();
            const json& st = p.at("special_tokens").at(name);
            for (const auto& id : st.at("ids")) (seen_seq ? suf : pre).push_back(id.get<TokenId>());
          }
        }
      } else if (ptype == "RobertaProcessing" || ptype == "BertProcessing") {
        pre.push_back(p.at("cls").at(1).get<TokenId>());
        suf.push_back(p.at("sep").at(1).get<TokenId>());
      } else if (ptype == "Sequence") {
        for (const auto& q : p.at("processors")) post(q);
        return;
      } else if (ptype != "ByteLevel") {
        MCORE_FAIL() << "HuggingFaceTokenizer: post-processor type '" << ptype
                     << "' is not supported (supported: TemplateProcessing, RobertaProcessing, "
                        "BertProcessing, ByteLevel, Sequence)";
      }
      prefix_ids_.insert(prefix_ids_.begin(), pre.begin(), pre.end());
      suffix_ids_.insert(suffix_ids_.end(), suf.begin(), suf.end());
    };
    post(j.value("post_processor", json()));
  } catch (const json::exception& e) {
    MCORE_FAIL() << "HuggingFaceTokenizer: '" << origin << "' is malformed: " << e.what();
  }

  // Without tokenizer_config.json: the usual names of the special tokens.
  auto guess = [&](std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (auto id = token_to_id(n)) return *id;
    }
    return kNoToken;
  };
  bos_ = guess({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
  eos_ = guess({"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|im_end|>"});
  pad_ = guess({"<pad>", "<|pad|>", "[PAD]"});
}

std::optional<TokenId> HuggingFaceTokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : added_) {
    if (a.content == token) return a.id;
  }
  return model_->token_to_id(token);
}

void HuggingFaceTokenizer::encode_normalized(std::string_view text, bool at_origin,
                                             std::vector<TokenId>& out) const {
  thread_local std::vector<hf::Piece> pieces;
  hf::PieceStorage storage;
  pieces.assign(1, {text, at_origin});
  if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces, storage);
  for (const auto& p : pieces) model_->encode_word(p.text, out);
}

void HuggingFaceTokenizer::encode_piece(std::string_view text, bool at_origin,
                                        std::vector<TokenId>& out) const {
  if (!normalizer_ && !normalized_matcher_) {
    encode_normalized(text, at_origin, out);
    return;
  }
  std::string n(text);
  if (normalizer_) normalizer_->normalize(n);
  split_on_added(n, normalized_matcher_.get(), added_, [&](size_t k, size_t b, size_t e) {
    if (k != std::string_view::npos) {
      out.push_back(added_[k].id);
    } else {
      encode_normalized(std::string_view(n).substr(b, e - b), at_origin && b == 0, out);
    }
  });
}

std::vector<TokenId> HuggingFaceTokenizer::encode(std::string_view text,
                                                  bool add_special_tokens) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out = prefix_ids_;
  split_on_added(text, raw_matcher_.get(), added_, [&](size_t k, size_t b, size_t e) {
    if (k != std::string_view::npos) {
      out.push_back(added_[k].id);
    } else {
      encode_piece(text.substr(b, e - b), b == 0, out);
    }
  });
  if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::string HuggingFaceTokenizer::decode(const std::vector<TokenId>& ids,
                                         bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (TokenId id : ids) {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      if (skip_special_tokens && added_[it->second].special) continue;
      tokens.push_back(added_[it->second].content);
      continue;
    }
    const std::string* t = model_->id_to_token(id);
    MCORE_CHECK(t) << "HuggingFaceTokenizer::decode: id " << id
                   << " is not in the vocabulary (size " << vocab_size_ << ")";
    tokens.push_back(*t);
  }
  if (!decoder_) {
    std::string s;
    for (size_t i = 0; i < tokens.size(); ++i) s += (i ? " " : "") + tokens[i];
    return s;
  }
  decoder_->decode_chain(tokens);
  std::string s;
  for (const auto& t : tokens) s += t;
  return s;
}

}  // namespace mcore::tokenizers
