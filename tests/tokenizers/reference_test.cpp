// Token-for-token equality with the real libraries (Hugging Face tokenizers, sentencepiece,
// Megatron's tokenizer logic) on the reference corpus of tests/reference/gen_tokenizers.py:
// English, German, Russian, Chinese, Japanese, Korean, Hindi, Arabic, code, emoji, whitespace
// runs, contractions, special tokens in text. Exact equality, no tolerance: a tokenizer either
// produces the same ids or it does not.
#include <gtest/gtest.h>

#include "mcore/tokenizers/gpt2_bpe_tokenizer.h"
#include "mcore/tokenizers/hf_tokenizer.h"
#include "mcore/tokenizers/sentencepiece_tokenizer.h"
#include "mcore/tokenizers/simple_tokenizers.h"
#include "tests/tokenizers/tokenizer_ref.h"

namespace mcore::testing {
namespace {

using namespace mcore::tokenizers;

int64_t ref_scalar(const std::string& name, int64_t k = 0) {
  return load_ref("tokenizers", name).data<int64_t>()[k];
}

TEST(TokenizerReference, GPT2BPE) {
  GPT2BPETokenizer tok(tok_path("gpt2/vocab.json"), tok_path("gpt2/merges.txt"));
  expect_matches_reference(tok, "gpt2bpe");
  EXPECT_EQ(tok.vocab_size(), ref_scalar("gpt2bpe_vocab_size"));
  EXPECT_EQ(tok.decode({tok.eod()}), "<|endoftext|>");
}

TEST(TokenizerReference, HuggingFaceGpt2WithAddedTokens) {
  HuggingFaceTokenizer tok(tok_path("hf_gpt2/tokenizer.json"));
  expect_matches_reference(tok, "hf_gpt2");
  EXPECT_EQ(tok.vocab_size(), ref_scalar("hf_gpt2_vocab_size"));
}

TEST(TokenizerReference, HuggingFaceLlama3Style) {
  HuggingFaceTokenizer tok(tok_path("hf_llama3/tokenizer.json"));
  expect_matches_reference(tok, "hf_llama3");
  EXPECT_EQ(tok.vocab_size(), ref_scalar("hf_llama3_vocab_size"));
  EXPECT_EQ(tok.bos(), *tok.token_to_id("<|begin_of_text|>"));
  EXPECT_EQ(tok.eod(), *tok.token_to_id("<|end_of_text|>"));
}

TEST(TokenizerReference, HuggingFaceQwen2Style) {
  HuggingFaceTokenizer tok(tok_path("hf_qwen2/tokenizer.json"));
  expect_matches_reference(tok, "hf_qwen2");
  EXPECT_EQ(tok.vocab_size(), ref_scalar("hf_qwen2_vocab_size"));
  // The NFC normalizer composes: decomposed text gets the ids of the composed text
  // (unicode_normalize_test.cpp compares with the `tokenizers` library on decomposed text).
  EXPECT_EQ(tok.encode("cafe\xCC\x81 de\xCC\x81ja\xCC\x80"),
            tok.encode("caf\xC3\xA9 d\xC3\xA9j\xC3\xA0"));
}

TEST(TokenizerReference, HuggingFaceSentencePieceLegacy) {
  HuggingFaceTokenizer tok(tok_path("hf_spm_legacy/tokenizer.json"));
  expect_matches_reference(tok, "hf_spm_legacy");
  EXPECT_EQ(tok.vocab_size(), ref_scalar("hf_spm_legacy_vocab_size"));
  EXPECT_EQ(tok.bos(), *tok.token_to_id("<s>"));
  EXPECT_EQ(tok.eod(), *tok.token_to_id("</s>"));
}

TEST(TokenizerReference, HuggingFaceMetaspace) {
  HuggingFaceTokenizer tok(tok_path("hf_metaspace/tokenizer.json"));
  expect_matches_reference(tok, "hf_metaspace");
}

class SentencePieceReference : public ::testing::TestWithParam<std::string> {};

TEST_P(SentencePieceReference, Plain) {
  SentencePieceTokenizer tok(tok_path("spm_" + GetParam() + ".model"),
                             SentencePieceTokenizer::Flavor::kGpt);
  expect_matches_reference(tok, "spm_" + GetParam());
  EXPECT_EQ(tok.eod(), tok.eos());
}

TEST_P(SentencePieceReference, MegatronSpecialTokens) {
  SentencePieceTokenizer tok(tok_path("spm_" + GetParam() + ".model"),
                             SentencePieceTokenizer::Flavor::kMegatron, 3);
  const std::string name = "spm_" + GetParam() + "_megatron";
  const auto texts = load_texts("texts");
  const auto ids = load_ids(name + "_ids");
  const auto decoded = load_texts(name + "_decoded");
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_EQ(tok.encode(texts[i]), ids[i]) << "text " << i << " '" << escaped(texts[i]) << "'";
    ASSERT_EQ(tok.decode(ids[i]), decoded[i]) << "text " << i;
  }
  EXPECT_EQ(tok.vocab_size(), ref_scalar(name + "_meta", 0));
  EXPECT_EQ(tok.eod(), ref_scalar(name + "_meta", 1));
  EXPECT_GT(tok.vocab_size(), ref_scalar(name + "_meta", 2));  // <CLS> etc. were appended
}

TEST_P(SentencePieceReference, Llama2AddsBos) {
  SentencePieceTokenizer tok(tok_path("spm_" + GetParam() + ".model"),
                             SentencePieceTokenizer::Flavor::kLlama2);
  SentencePieceTokenizer plain(tok_path("spm_" + GetParam() + ".model"),
                               SentencePieceTokenizer::Flavor::kGpt);
  auto ids = tok.encode("Hello world");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], tok.bos());
  EXPECT_EQ(std::vector<TokenId>(ids.begin() + 1, ids.end()), plain.encode("Hello world"));
}

INSTANTIATE_TEST_SUITE_P(Models, SentencePieceReference, ::testing::Values("unigram", "bpe"));

TEST(TokenizerReference, ByteTokenizerMatchesMegatronCore) {
  ByteTokenizer tok;
  const auto texts = load_texts("texts");
  const auto decoded = load_texts("byte_decoded");
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok.encode(texts[i]);
    ASSERT_EQ(ids.size(), texts[i].size());
    ASSERT_EQ(tok.decode(ids), decoded[i]) << "text " << i;
  }
  const auto rand = load_ids("byte_rand_ids");
  const auto rand_dec = load_texts("byte_rand_decoded");
  for (size_t i = 0; i < rand.size(); ++i)
    ASSERT_EQ(tok.decode(rand[i]), rand_dec[i]) << ids_str(rand[i]);
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.eod(), 0);
  EXPECT_EQ(tok.pad(), 1);
}

}  // namespace
}  // namespace mcore::testing
