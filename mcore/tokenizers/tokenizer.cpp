#include "mcore/tokenizers/tokenizer.h"

#include "mcore/base/error.h"
#include "mcore/tokenizers/gpt2_bpe_tokenizer.h"
#include "mcore/tokenizers/hf_tokenizer.h"
#include "mcore/tokenizers/sentencepiece_tokenizer.h"
#include "mcore/tokenizers/simple_tokenizers.h"

namespace mcore::tokenizers {

std::shared_ptr<const Tokenizer> build_tokenizer(const TokenizerOptions& o) {
  const std::string& t = o.tokenizer_type;
  auto need = [&](const std::string& value, const char* flag) {
    MCORE_CHECK(!value.empty()) << "--tokenizer-type " << t << " needs " << flag;
  };
  if (t == "GPT2BPETokenizer") {
    need(o.vocab_file, "--vocab-file (vocab.json)");
    need(o.merge_file, "--merge-file (merges.txt)");
    return std::make_shared<GPT2BPETokenizer>(o.vocab_file, o.merge_file);
  }
  if (t == "HuggingFaceTokenizer") {
    need(o.tokenizer_model, "--tokenizer-model (tokenizer.json or its directory)");
    return std::make_shared<HuggingFaceTokenizer>(o.tokenizer_model);
  }
  if (t == "SentencePieceTokenizer" || t == "GPTSentencePieceTokenizer" || t == "Llama2Tokenizer") {
    need(o.tokenizer_model, "--tokenizer-model (the SentencePiece .model file)");
    auto flavor = t == "SentencePieceTokenizer"      ? SentencePieceTokenizer::Flavor::kMegatron
                  : t == "GPTSentencePieceTokenizer" ? SentencePieceTokenizer::Flavor::kGpt
                                                     : SentencePieceTokenizer::Flavor::kLlama2;
    return std::make_shared<SentencePieceTokenizer>(o.tokenizer_model, flavor, o.vocab_extra_ids);
  }
  if (t == "NullTokenizer") {
    MCORE_CHECK(o.vocab_size > 0) << "--tokenizer-type NullTokenizer needs --vocab-size";
    return std::make_shared<NullTokenizer>(o.vocab_size);
  }
  if (t == "ByteTokenizer" || t == "ByteLevelTokenizer") {
    return std::make_shared<ByteTokenizer>(o.vocab_size > 0 ? o.vocab_size : 512);
  }
  MCORE_FAIL() << "unknown --tokenizer-type '" << t
               << "'; known: GPT2BPETokenizer, HuggingFaceTokenizer, SentencePieceTokenizer, "
                  "GPTSentencePieceTokenizer, Llama2Tokenizer, NullTokenizer, ByteTokenizer";
  return nullptr;
}

}  // namespace mcore::tokenizers
