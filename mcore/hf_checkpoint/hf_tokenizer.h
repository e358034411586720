// The tokenizer side of an mcore-to-hf export: the tokenizer a checkpoint's saved arguments name
// (--tokenizer-type with its --vocab-file/--merge-file/--tokenizer-model), the vocabulary size
// the Hugging Face model gets, its special token ids, and the files transformers'
// AutoTokenizer reads.
//
// Exactly the files the arguments name are exported, renamed to what transformers expects:
//   GPT2BPETokenizer        --vocab-file -> vocab.json, --merge-file -> merges.txt, and a
//                           tokenizer_config.json naming GPT2Tokenizer (Megatron's
//                           gpt2-vocab.json / gpt2-merges.txt included)
//   HuggingFaceTokenizer    --tokenizer-model (tokenizer.json or its directory) -> tokenizer.json,
//                           with tokenizer_config.json and special_tokens_map.json when the file
//                           is a tokenizer.json whose directory holds them (a Hugging Face
//                           tokenizer directory); else a tokenizer_config.json naming
//                           PreTrainedTokenizerFast, which runs tokenizer.json as is
//   SentencePiece types     --tokenizer-model -> tokenizer.model
// Never a file merely found beside them: a directory may hold another tokenizer's files.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mcore/hf_checkpoint/checkpoint_model.h"
#include "mcore/tokenizers/tokenizer.h"

namespace mcore::hf_checkpoint {

struct TokenizerExport {
  std::shared_ptr<const tokenizers::Tokenizer> tokenizer;   // null when it cannot be built
  std::string build_error;                                  // why not
  std::vector<std::pair<std::string, std::string>> copies;  // source path, name in the output
  std::map<std::string, nlohmann::json> json_files;         // e.g. a written tokenizer_config.json
  std::vector<std::string> warnings;                        // e.g. "no tokenizer is exported: ..."
};
TokenizerExport export_tokenizer(const training::Arguments& args);

// The Hugging Face vocabulary (rows kept) of the checkpoint: `requested` (--vocab-size) when
// given; else the rows the Hugging Face model had when hf-to-mcore wrote the checkpoint; else the
// tokenizer's size (NullTokenizer's count includes its end-of-document id), or the saved
// --vocab-size when that is larger and within the padded rows (Hugging Face configs such as
// Qwen2's have more rows than their tokenizer's ids; a preset's --vocab-size, which file-based
// tokenizers ignore, is smaller or beyond the rows). An error naming --vocab-size when the
// tokenizer cannot be built, and when the tokenizer's ids exceed the checkpoint's rows.
int64_t export_vocab_size(const CheckpointModel& cm, const TokenizerExport& tok,
                          std::optional<int64_t> requested, std::vector<std::string>& warnings);

// bos/eos/pad token ids for config.json and generation_config.json: those the import kept, else
// the tokenizer's below `vocab_size` (none for NullTokenizer, whose end-of-document id is no
// token the Hugging Face model knows as such).
nlohmann::json export_special_tokens(const CheckpointModel& cm, const TokenizerExport& tok,
                                     int64_t vocab_size);

}  // namespace mcore::hf_checkpoint
