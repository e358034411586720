// Unicode NFC (mcore/tokenizers/unicode_normalize.h) against Python's unicodedata, on the cases
// of tests/reference/gen_unicode_nfc.py and on every code point, and the Hugging Face
// tokenizer's NFC normalizer against the `tokenizers` library on decomposed text. A few cases
// need no reference data: ill-formed UTF-8, the fast path, long runs of marks.
#include <gtest/gtest.h>

#include <chrono>
#include <unordered_map>

#include "mcore/tokenizers/hf_tokenizer.h"
#include "mcore/tokenizers/unicode.h"
#include "mcore/tokenizers/unicode_normalize.h"
#include "tests/tokenizers/tokenizer_ref.h"

namespace mcore::testing {
namespace {

using namespace mcore::tokenizers;

std::string utf8(std::initializer_list<uint32_t> cps) {
  std::string s;
  for (uint32_t cp : cps) append_utf8(s, cp);
  return s;
}

TEST(UnicodeNfc, HandPickedCases) {
  EXPECT_EQ(nfc_normalize("cafe\xCC\x81"), "caf\xC3\xA9");        // e U+0301 -> é
  EXPECT_EQ(nfc_normalize(utf8({0x212B})), utf8({0xC5}));         // ANGSTROM SIGN -> Å
  EXPECT_EQ(nfc_normalize(utf8({0x2126})), utf8({0x3A9}));        // OHM SIGN -> Ω
  EXPECT_EQ(nfc_normalize(utf8({0x958})), utf8({0x915, 0x93C}));  // excluded: stays decomposed
  EXPECT_EQ(nfc_normalize(utf8({0x915, 0x93C})), utf8({0x915, 0x93C}));
  EXPECT_EQ(nfc_normalize(utf8({'a', 0x302, 0x323})), utf8({0x1EAD}));  // reordered, then ậ
  EXPECT_EQ(nfc_normalize(utf8({'a', 0x305, 0x301})), utf8({'a', 0x305, 0x301}));  // blocked
  EXPECT_EQ(nfc_normalize(utf8({'e', 0x304, 0x301})), utf8({0x1E17}));             // ē, then ḗ
  EXPECT_EQ(nfc_normalize(utf8({0x1100, 0x1161, 0x11A8})), utf8({0xAC01}));        // L V T -> 각
  EXPECT_EQ(nfc_normalize(utf8({0xAC00, 0x11A8})), utf8({0xAC01}));                // LV + T
  EXPECT_EQ(nfc_normalize(utf8({0x1100, 0x301, 0x1161})), utf8({0x1100, 0x301, 0x1161}));
  EXPECT_EQ(nfc_normalize(utf8({0x301, 'a'})), utf8({0x301, 'a'}));  // no starter before
  EXPECT_EQ(canonical_combining_class(0x301), 230);
  EXPECT_EQ(canonical_combining_class(0x316), 220);
  EXPECT_EQ(canonical_combining_class('a'), 0);
  EXPECT_EQ(canonical_combining_class(0x10FFFF), 0);
}

TEST(UnicodeNfc, TextAlreadyInNfcIsReturnedAsIs) {
  const std::string text = "café 中文 한국어 😀👍🏽 Ωmega";
  ASSERT_TRUE(nfc_quick_check(text));
  EXPECT_EQ(nfc_normalize(text), text);
  // Only the part from the last starter before the first doubtful character is rewritten.
  const std::string prefix = "naïve résumé, ";
  EXPECT_EQ(nfc_normalize(prefix + "de\xCC\x81ja\xCC\x80"), prefix + "d\xC3\xA9j\xC3\xA0");
}

TEST(UnicodeNfc, IllFormedBytesPassThroughUnchanged) {
  // The quick check reads an ill-formed byte as U+FFFD and lets such text through untouched;
  // the full algorithm keeps each such byte at its place as a starter that composes with
  // nothing.
  EXPECT_EQ(nfc_normalize("\xFF"
                          "e\xCC\x81"),
            "\xFF\xC3\xA9");
  EXPECT_EQ(nfc_normalize("e\xFF\xCC\x81"), "e\xFF\xCC\x81");
  EXPECT_EQ(nfc_normalize("\xE4\xB8"
                          "e\xCC\x81\x80"),
            "\xE4\xB8\xC3\xA9\x80");  // truncated, stray
  EXPECT_EQ(nfc_normalize("\xED\xA0\x80"
                          "A\xCC\x8A"),
            "\xED\xA0\x80\xC3\x85");                                 // a surrogate
  EXPECT_EQ(nfc_normalize("\xC0\xAF\xCC\x81"), "\xC0\xAF\xCC\x81");  // overlong
  EXPECT_EQ(nfc_normalize(std::string("e\0\xCC\x81", 4)), std::string("e\0\xCC\x81", 4));
}

TEST(UnicodeNfc, LongRunOfMarksIsNotQuadratic) {
  // 200k marks alternating classes 230 and 220, the worst order for insertion sorting.
  std::string text = "a";
  const size_t n = 100000;
  for (size_t i = 0; i < n; ++i) text += "\xCC\x81\xCC\x96";  // U+0301 (230), U+0316 (220)
  const auto t0 = std::chrono::steady_clock::now();
  const std::string got = nfc_normalize(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Sorted: a, n x U+0316, n x U+0301; the first U+0301 is not blocked (U+0316 has a lower
  // class) and composes with a; the others are blocked by it.
  std::string expected = "\xC3\xA1";
  for (size_t i = 0; i < n; ++i) expected += "\xCC\x96";
  for (size_t i = 1; i < n; ++i) expected += "\xCC\x81";
  EXPECT_EQ(got, expected);
  EXPECT_LT(seconds, 5.0);
}

TEST(UnicodeNfcReference, MatchesUnicodedata) {
  const auto inputs = load_texts("nfc_inputs");
  const auto expected = load_texts("nfc_expected");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GT(inputs.size(), 15000u);
  int failures = 0;
  for (size_t i = 0; i < inputs.size() && failures < 10; ++i) {
    const std::string got = nfc_normalize(inputs[i]);
    if (got != expected[i]) {
      ++failures;
      ADD_FAILURE() << "NFC of case " << i << " '" << escaped(inputs[i]) << "'\n  got      '"
                    << escaped(got) << "'\n  expected '" << escaped(expected[i]) << "'";
    }
  }
}

TEST(UnicodeNfcReference, EveryCodePoint) {
  const Tensor cps = load_ref("tokenizers", "nfc_changed_cps");
  const auto outs = load_texts("nfc_changed_out");
  ASSERT_EQ(size_t(cps.numel()), outs.size());
  ASSERT_GT(outs.size(), 1000u);  // singletons, exclusions: the full composition exclusion
  std::unordered_map<uint32_t, std::string> changed;
  for (int64_t i = 0; i < cps.numel(); ++i) changed[uint32_t(cps.data<int32_t>()[i])] = outs[i];
  int failures = 0;
  for (uint32_t cp = 0; cp < 0x110000 && failures < 10; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string c = utf8({cp});
    const auto it = changed.find(cp);
    const std::string& expected = it == changed.end() ? c : it->second;
    const std::string got = nfc_normalize(c);
    if (got != expected) {
      ++failures;
      ADD_FAILURE() << "NFC of U+" << std::hex << cp << ": got '" << escaped(got) << "', expected '"
                    << escaped(expected) << "'";
    }
  }
}

TEST(UnicodeNfcReference, HuggingFaceTokenizerMatchesTokenizersLibrary) {
  // A Qwen2-style tokenizer.json with an NFC normalizer, on decomposed and scrambled text.
  HuggingFaceTokenizer tok(tok_path("hf_nfc/tokenizer.json"));
  expect_matches_reference(tok, "hf_nfc", "hf_nfc_texts");
}

}  // namespace
}  // namespace mcore::testing
