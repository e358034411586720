// Unit tests of the tokenizer pieces that need no reference data: the split patterns on
// hand-checked cases, UTF-8 repair, NullTokenizer, thread safety, and the errors for bad
// files, unknown types and out-of-vocabulary ids (each must name the thing and the fix).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "mcore/base/error.h"
#include "mcore/tokenizers/gpt2_bpe_tokenizer.h"
#include "mcore/tokenizers/hf_tokenizer.h"
#include "mcore/tokenizers/simple_tokenizers.h"
#include "mcore/tokenizers/split_pattern.h"
#include "mcore/tokenizers/unicode.h"
#include "tests/tokenizers/tokenizer_ref.h"

namespace mcore::testing {
namespace {

using namespace mcore::tokenizers;
namespace fs = std::filesystem;

std::vector<std::string> split(const std::string& s, SplitPattern p) {
  std::vector<std::pair<uint32_t, uint32_t>> r;
  split_by_pattern(s, p, r);
  std::vector<std::string> out;
  for (auto [b, e] : r) out.push_back(s.substr(b, e - b));
  return out;
}

using V = std::vector<std::string>;

TokenizerOptions options(const std::string& type) {
  TokenizerOptions o;
  o.tokenizer_type = type;
  return o;
}

TEST(SplitPattern, Gpt2) {
  EXPECT_EQ(split("Hello  world", SplitPattern::kGpt2), (V{"Hello", " ", " world"}));
  EXPECT_EQ(split("I'm fine, isn't it?", SplitPattern::kGpt2),
            (V{"I", "'m", " fine", ",", " isn", "'t", " it", "?"}));
  EXPECT_EQ(split("x\n\ny  ", SplitPattern::kGpt2),
            (V{"x", "\n", "\n", "y", "  "}));  // \s+(?!\S) leaves one
  EXPECT_EQ(split("a 123 b4", SplitPattern::kGpt2), (V{"a", " 123", " b", "4"}));
  EXPECT_EQ(split("I'M", SplitPattern::kGpt2), (V{"I", "'", "M"}));  // case-sensitive
  EXPECT_EQ(split("中文 😀!", SplitPattern::kGpt2), (V{"中文", " 😀!"}));
}

TEST(SplitPattern, Llama3AndQwen2) {
  EXPECT_EQ(split("12345 (hello", SplitPattern::kLlama3), (V{"123", "45", " (", "hello"}));
  EXPECT_EQ(split("12345", SplitPattern::kQwen2), (V{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(split("I'M \n\n  x", SplitPattern::kLlama3), (V{"I", "'M", " \n\n", " ", " x"}));
  EXPECT_EQ(split(" .\n\nz", SplitPattern::kLlama3), (V{" .\n\n", "z"}));
  EXPECT_EQ(split("\tword", SplitPattern::kLlama3), (V{"\tword"}));
}

TEST(SplitPattern, KnowsTheRegexStrings) {
  for (auto p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    EXPECT_EQ(split_pattern_from_regex(split_pattern_regex(p)), p);
  }
  EXPECT_FALSE(split_pattern_from_regex("\\w+").has_value());
}

TEST(Unicode, LossyUtf8ReplacesMaximalSubparts) {
  EXPECT_EQ(utf8_lossy("ok"), "ok");
  EXPECT_EQ(utf8_lossy("a\xE2\x82"), "a\xEF\xBF\xBD");  // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xF0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // F0 80: 80 is no valid 2nd byte
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8_lossy("x\xFFy", ""), "xy");
  EXPECT_TRUE(is_valid_utf8("中文😀"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));
}

TEST(Unicode, Classes) {
  EXPECT_EQ(char_class('a'), kClassLetter);
  EXPECT_EQ(char_class(0x4E2D), kClassLetter);  // 中
  EXPECT_EQ(char_class(0x00B2), kClassNumber);  // ²
  EXPECT_EQ(char_class(0x0301), kClassMark);
  EXPECT_EQ(char_class(0x3000), kClassSpace);
  EXPECT_EQ(char_class(0x1F600), kClassOther);   // 😀
  EXPECT_EQ(char_class(0x20000), kClassLetter);  // CJK extension B, above the BMP table
  EXPECT_TRUE(nfc_quick_check("café"));
  EXPECT_FALSE(nfc_quick_check("cafe\xCC\x81"));
}

TEST(NullTokenizer, IdsRoundTrip) {
  NullTokenizer tok(100);
  EXPECT_EQ(tok.encode("1 2 99"), (std::vector<TokenId>{1, 2, 99}));
  EXPECT_EQ(tok.decode({1, 2, 100}), "1 2 100");
  EXPECT_EQ(tok.vocab_size(), 101);
  EXPECT_EQ(tok.eod(), 100);
  EXPECT_THROW(tok.encode("1 two"), mcore::Error);
  EXPECT_THROW(tok.encode("1  2"), mcore::Error);  // Megatron splits on single spaces
}

TEST(TokenizerErrors, NameTheProblem) {
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const mcore::Error& e) {
      return e.message();
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { build_tokenizer(options("Foo")); }).find("unknown --tokenizer-type 'Foo'"),
            std::string::npos);
  EXPECT_NE(message([] { build_tokenizer(options("GPT2BPETokenizer")); }).find("--vocab-file"),
            std::string::npos);
  EXPECT_NE(message([] {
              GPT2BPETokenizer("/nonexistent/vocab.json", "/nonexistent/merges.txt");
            }).find("/nonexistent/vocab.json"),
            std::string::npos);
  EXPECT_NE(message([] { HuggingFaceTokenizer("/nonexistent"); }).find("does not exist"),
            std::string::npos);

  const fs::path dir = fs::temp_directory_path() / ("mcore_tok_" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "vocab.json") << R"({"a": 0, "b": 1, "<|endoftext|>": 2})";
    std::ofstream(dir / "merges.txt") << "#version: 0.2\na b\n";
  }
  EXPECT_NE(message([&] {
              GPT2BPETokenizer((dir / "vocab.json").string(), (dir / "merges.txt").string());
            }).find("'ab' of merge 0 is not in the vocabulary"),
            std::string::npos);
  { std::ofstream(dir / "vocab.json") << R"({"a": 0, "b": 1, "ab": 3, "<|endoftext|>": 2})"; }
  GPT2BPETokenizer ok((dir / "vocab.json").string(), (dir / "merges.txt").string());
  EXPECT_EQ(ok.encode("abba"), (std::vector<TokenId>{3, 1, 0}));
  EXPECT_NE(message([&] { ok.decode({7}); }).find("id 7 is not in the vocabulary"),
            std::string::npos);
  EXPECT_NE(
      message([] {
        HuggingFaceTokenizer::from_json_string(R"({"model": {"type": "WordPiece", "vocab": {}}})");
      }).find("WordPiece model; only BPE"),
      std::string::npos);
  EXPECT_NE(message([] {
              HuggingFaceTokenizer::from_json_string(
                  R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                      "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}})");
            }).find("Split regex '\\w+' is not one of the implemented patterns"),
            std::string::npos);
  EXPECT_NE(
      message([] { HuggingFaceTokenizer::from_json_string("{not json"); }).find("not valid JSON"),
      std::string::npos);
  fs::remove_all(dir);
}

TEST(TokenizerThreads, ConcurrentEncodingGivesTheSameIds) {
  if (!has_ref("tokenizers", "texts")) FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  HuggingFaceTokenizer tok(tok_path("hf_llama3/tokenizer.json"));
  const auto texts = load_texts("texts");
  std::vector<std::vector<TokenId>> want;
  for (const auto& t : texts) want.push_back(tok.encode(t));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i)
          bad[k] +=
              tok.encode(texts[(i * 7 + k) % texts.size()]) != want[(i * 7 + k) % texts.size()];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace mcore::testing
