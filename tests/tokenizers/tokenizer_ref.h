// Access to the tokenizer reference data of tests/reference/gen_tokenizers.py: ragged arrays
// (flat values + offsets) of texts and ids, and the paths of the trained tokenizer files.
#pragma once

#include <string>
#include <vector>

#include "mcore/tokenizers/tokenizer.h"
#include "tests/common/test_util.h"

namespace mcore::testing {

inline std::string tok_path(const std::string& rel) {
  return ref_dir() + "/tokenizers/" + rel;
}

inline std::vector<std::string> load_texts(const std::string& name) {
  Tensor bytes = load_ref("tokenizers", name);
  Tensor off = load_ref("tokenizers", name + "_offsets");
  std::vector<std::string> out;
  const char* b = static_cast<const char*>(bytes.data_ptr());
  const int64_t* o = off.data<int64_t>();
  for (int64_t i = 0; i + 1 < off.numel(); ++i) out.emplace_back(b + o[i], size_t(o[i + 1] - o[i]));
  return out;
}

inline std::vector<std::vector<tokenizers::TokenId>> load_ids(const std::string& name) {
  Tensor ids = load_ref("tokenizers", name);
  Tensor off = load_ref("tokenizers", name + "_offsets");
  std::vector<std::vector<tokenizers::TokenId>> out;
  const int32_t* v = ids.data<int32_t>();
  const int64_t* o = off.data<int64_t>();
  for (int64_t i = 0; i + 1 < off.numel(); ++i) out.emplace_back(v + o[i], v + o[i + 1]);
  return out;
}

// Prints a text with its non-ASCII bytes escaped, for failure messages.
inline std::string escaped(const std::string& s, size_t max = 160) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c >= 0x20 && c < 0x7F) {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return s.size() > max ? out + "..." : out;
}

inline std::string ids_str(const std::vector<tokenizers::TokenId>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s.push_back(' ');
    s.append(std::to_string(ids[i]));
  }
  s.push_back(']');
  return s;
}

// encode(text) == expected ids and decode(ids) == expected text for every reference text; stops
// reporting after a few mismatches.
inline void expect_matches_reference(const tokenizers::Tokenizer& tok, const std::string& name,
                                     const std::string& texts_name = "texts") {
  const auto texts = load_texts(texts_name);
  const auto ids = load_ids(name + "_ids");
  const auto decoded = load_texts(name + "_decoded");
  ASSERT_EQ(texts.size(), ids.size());
  int failures = 0;
  size_t tokens = 0;
  for (size_t i = 0; i < texts.size() && failures < 5; ++i) {
    const auto got = tok.encode(texts[i]);
    tokens += got.size();
    if (got != ids[i]) {
      ++failures;
      ADD_FAILURE() << name << ": encode of text " << i << " '" << escaped(texts[i])
                    << "'\n  got      " << ids_str(got) << "\n  expected " << ids_str(ids[i]);
      continue;
    }
    const std::string back = tok.decode(ids[i]);
    if (back != decoded[i]) {
      ++failures;
      ADD_FAILURE() << name << ": decode of text " << i << "\n  got      '" << escaped(back)
                    << "'\n  expected '" << escaped(decoded[i]) << "'";
    }
  }
  EXPECT_GT(tokens, 1000u) << "the reference corpus should exercise the tokenizer";
  if (has_ref("tokenizers", name + "_rand_ids")) {
    const auto rand = load_ids(name + "_rand_ids");
    const auto rand_dec = load_texts(name + "_rand_decoded");
    for (size_t i = 0; i < rand.size() && failures < 10; ++i) {
      const std::string got = tok.decode(rand[i]);
      if (got != rand_dec[i]) {
        ++failures;
        ADD_FAILURE() << name << ": decode of random ids " << ids_str(rand[i]) << "\n  got      '"
                      << escaped(got) << "'\n  expected '" << escaped(rand_dec[i]) << "'";
      }
    }
  }
}

}  // namespace mcore::testing
